from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from providers.openai import OpenAIAdapter
from providers.registry import get_adapter, provider_types, register_adapter
from providers.simulated import SimulatedAdapter

ROOT = Path(__file__).resolve().parents[2]


def test_get_adapter_gives_one_shared_adapter_per_type():
    assert isinstance(get_adapter("openai"), OpenAIAdapter)
    assert isinstance(get_adapter("simulated"), SimulatedAdapter)
    assert get_adapter("openai") is get_adapter("openai")
    assert get_adapter("openai").name == "openai" and get_adapter("simulated").name == "simulated"


def test_get_adapter_refuses_an_unknown_type():
    with pytest.raises(LookupError):
        get_adapter("carrier-pigeon")


def test_register_adapter_adds_a_type():
    register_adapter("openai-alias", get_adapter("openai"))

    assert "openai-alias" in provider_types()


def test_every_providers_module_imports_without_django_or_our_other_apps():
    script = """
import importlib, pkgutil, sys
import providers
names = [f"providers.{m.name}" for m in pkgutil.iter_modules(providers.__path__)]
for name in names:
    importlib.import_module(name)
ours = ("django", "relay", "common", "accounts", "billing", "routing", "channels", "observability", "vault")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ours)
assert not leaked, leaked
print(len(names))
"""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 6
