"""Production is the default: Django's deployment checks pass with production settings (CI runs
the same command), and say so when the vault key would derive from SECRET_KEY."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TOKENHUB_ENV", "TOKENHUB_VAULT_PASSWORD")}
    environment.update(ALLOWED_HOSTS="tokenhub.example.com", SECRET_KEY=secrets.token_urlsafe(50), **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


SMTP = {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "mail.example.com"}


def test_check_deploy_passes_with_production_settings():
    done = _manage("check", "--deploy", "--fail-level", "WARNING", TOKENHUB_VAULT_PASSWORD=secrets.token_urlsafe(24), **SMTP)
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_deploy_warns_when_the_portal_mail_would_go_to_the_server_output():
    done = _manage("check", "--deploy", "--fail-level", "WARNING", TOKENHUB_VAULT_PASSWORD=secrets.token_urlsafe(24))
    assert done.returncode != 0
    assert "accounts.W001" in done.stdout + done.stderr and "vault.W001" not in done.stdout + done.stderr


def test_production_is_the_default_and_warns_about_a_vault_key_from_secret_key():
    done = _manage("check", "--deploy", "--fail-level", "WARNING", **SMTP)
    assert done.returncode != 0
    assert "vault.W001" in done.stdout + done.stderr and "accounts.W001" not in done.stdout + done.stderr
    shown = _manage(
        "shell", "-c",
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)",
    )
    assert shown.stdout.strip().splitlines()[-1].split() == ["True", "31536000", "True", "True"], shown.stderr
