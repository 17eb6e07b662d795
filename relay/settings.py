"""TokenHub settings: every value from the environment, its default on the same line.

Embedded defaults (no environment at all) give SQLite under ./var, an in-process cache and
in-process limits: what `make run` uses. Set DATABASE_URL (PostgreSQL) and REDIS_URL to scale.
"""

import os
import secrets
from pathlib import Path

import environ

from observability.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

VAR_DIR = Path(env.str("TOKENHUB_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment; otherwise one generated once and kept in VAR_DIR, so a
    fresh clone runs without a hard-coded secret and restarts keep sessions valid."""
    value = env.str("SECRET_KEY", default="")
    if value:
        return value
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "accounts",
    "billing",
    "routing",
    "observability",
    "vault",
    # observability (issue 13): Django-side Prometheus metrics; Channels for the live view
    "django_prometheus",
    "channels",
]

# The /v1 API does not go through this stack: relay.asgi sends it to routing's lean app.
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # first: times the whole stack
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",  # last
]

ROOT_URLCONF = "relay.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
ASGI_APPLICATION = "relay.asgi.application"
WSGI_APPLICATION = "relay.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'tokenhub.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets the log writer and request threads read while one writes; IMMEDIATE
            # takes the write lock at BEGIN so two money transactions never deadlock.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # a file, not memory: the relay under test reads it from other threads. One per process,
    # so two test runs on one machine never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
# Connections are kept (per thread) and recycled by relay.db.run_db; reconnecting per query cost
# the /v1 path about a millisecond (bench/).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Query counts and latencies for /metrics: django-prometheus's wrappers of the same backends.
# They cost about 25-35 us of CPU per query (docs/observability.md); off: plain backends.
DATABASE_METRICS = env.bool("DATABASE_METRICS", default=True)
if DATABASE_METRICS:
    DATABASES["default"]["ENGINE"] = {
        "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
        "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
    }.get(DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"])

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TIMEZONE = "UTC"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))  # `collectstatic` fills it

# Structured logs (docs/observability.md): JSON lines, or readable ones with LOG_FORMAT=console (make run).
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env.str("LOG_LEVEL", default="INFO"))

# --- TokenHub ---------------------------------------------------------------------------
UPSTREAM_CONNECT_TIMEOUT_S = env.float("UPSTREAM_CONNECT_TIMEOUT_S", default=5.0)
UPSTREAM_FIRST_BYTE_TIMEOUT_S = env.float("UPSTREAM_FIRST_BYTE_TIMEOUT_S", default=60.0)
UPSTREAM_IDLE_TIMEOUT_S = env.float("UPSTREAM_IDLE_TIMEOUT_S", default=60.0)
UPSTREAM_MAX_CONNECTIONS = env.int("UPSTREAM_MAX_CONNECTIONS", default=512)
ROUTING_MAX_ATTEMPTS = env.int("ROUTING_MAX_ATTEMPTS", default=3)
ROUTING_DEADLINE_S = env.float("ROUTING_DEADLINE_S", default=120.0)  # all attempts until first byte
ROUTING_DEFAULT_COOLDOWN_S = env.float("ROUTING_DEFAULT_COOLDOWN_S", default=30.0)
ROUTING_TRANSIENT_COOLDOWN_S = env.float("ROUTING_TRANSIENT_COOLDOWN_S", default=5.0)
ROUTING_AUTH_COOLDOWN_S = env.float("ROUTING_AUTH_COOLDOWN_S", default=600.0)
ROUTING_TABLE_TTL_S = env.float("ROUTING_TABLE_TTL_S", default=2.0)
KEY_CACHE_TTL_S = env.float("KEY_CACHE_TTL_S", default=10.0)
REQUEST_MAX_BYTES = env.int("REQUEST_MAX_BYTES", default=20 * 1024 * 1024)
REQUEST_LOG_FLUSH_S = env.float("REQUEST_LOG_FLUSH_S", default=0.5)
DEFAULT_MAX_OUTPUT_TOKENS = env.int("DEFAULT_MAX_OUTPUT_TOKENS", default=4096)
HOLD_RECONCILE_AFTER_S = env.float("HOLD_RECONCILE_AFTER_S", default=900.0)  # longer than any stream may last
TOKENHUB_UPSTREAM_ALLOW_CIDRS = env.list("TOKENHUB_UPSTREAM_ALLOW_CIDRS", default=[])
TOKENHUB_VAULT_PASSWORD = env.str("TOKENHUB_VAULT_PASSWORD", default="")
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# --- observability (docs/observability.md) ---
# The live view's channel layer: Redis when REDIS_URL is set (every web process sees every
# decision), in-process otherwise.
if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
LIVE_EVENTS_ENABLED = env.bool("LIVE_EVENTS_ENABLED", default=True)
LIVE_EVENTS_QUEUE_SIZE = env.int("LIVE_EVENTS_QUEUE_SIZE", default=1000)  # past this, decisions are dropped and counted
LIVE_EVENTS_INTERVAL_S = env.float("LIVE_EVENTS_INTERVAL_S", default=0.1)  # decisions are sent in batches this often at most
STATS_WINDOWS = ("1m", "5m", "1h", "24h")  # the rolling statistics' windows (observability.selectors)
# --- routing intelligence, health and background jobs (docs/routing.md, docs/operations.md) ---
ROUTING_DEFAULT_MODE = env.str("ROUTING_DEFAULT_MODE", default="weighted")  # see routing.strategies.MODES
ROUTING_MODE_WEIGHTS = env.json("ROUTING_MODE_WEIGHTS", default={})  # {"cheap": {"cost": 0.8, ...}} overrides
ROUTING_RANDOM_SEED = env.int("ROUTING_RANDOM_SEED", default=None)  # fixed: reproducible routing (tests, drills)
ROUTING_MAX_COOLDOWN_S = env.float("ROUTING_MAX_COOLDOWN_S", default=600.0)  # exponential backoff stops here
ROUTING_STRIKE_MEMORY_S = env.float("ROUTING_STRIKE_MEMORY_S", default=900.0)  # a failure streak is forgotten after this
ROUTING_HEALTH_WINDOW_S = env.float("ROUTING_HEALTH_WINDOW_S", default=300.0)  # latency / failure-rate window
ROUTING_HEALTH_CACHE_S = env.float("ROUTING_HEALTH_CACHE_S", default=0.25)  # a process reuses its health read this long
ROUTING_HEALTH_FLUSH_S = env.float("ROUTING_HEALTH_FLUSH_S", default=1.0)  # successes reach Redis this often
ROUTING_DEGRADED_FAILURE_RATE = env.float("ROUTING_DEGRADED_FAILURE_RATE", default=0.2)
ROUTING_ERROR_WINDOW_S = env.float("ROUTING_ERROR_WINDOW_S", default=600.0)  # the error-rate sweep looks this far back
ROUTING_DISABLE_ERROR_RATE = env.float("ROUTING_DISABLE_ERROR_RATE", default=0.8)  # ... and disables at this rate
ROUTING_DISABLE_MIN_ATTEMPTS = env.int("ROUTING_DISABLE_MIN_ATTEMPTS", default=5)  # ... over at least this many attempts
ROUTING_PROBE_TIMEOUT_S = env.float("ROUTING_PROBE_TIMEOUT_S", default=15.0)
ROUTING_THOMPSON_CACHE_S = env.float("ROUTING_THOMPSON_CACHE_S", default=60.0)  # web processes re-read arms this often
ROUTING_THOMPSON_WINDOW_S = env.float("ROUTING_THOMPSON_WINDOW_S", default=86400.0)
ROUTING_THOMPSON_HALF_LIFE_S = env.float("ROUTING_THOMPSON_HALF_LIFE_S", default=3600.0)
BALANCE_WARN_BELOW = env.str("BALANCE_WARN_BELOW", default="5")  # upstream balance warning, in its currency
PRICING_SYNC_SOURCE = env.str("PRICING_SYNC_SOURCE", default="")  # URL or file of a per-model price document; empty: off
PRICING_SYNC_MARKUP = env.str("PRICING_SYNC_MARKUP", default="1")  # our list price = source price x markup
PRICING_SYNC_APPLY = env.bool("PRICING_SYNC_APPLY", default=False)  # False: propose only, an operator accepts
REQUEST_LOG_RETENTION_DAYS = env.int("REQUEST_LOG_RETENTION_DAYS", default=90)  # request and reward logs
BALANCE_SNAPSHOT_RETENTION_DAYS = env.int("BALANCE_SNAPSHOT_RETENTION_DAYS", default=180)
EMBEDDED_JOBS = env.bool("EMBEDDED_JOBS", default=True)  # without a broker, web runs the periodic jobs itself
JOBS_PROBE_EVERY_S = env.float("JOBS_PROBE_EVERY_S", default=60.0)  # health sweep + active probes
JOBS_THOMPSON_EVERY_S = env.float("JOBS_THOMPSON_EVERY_S", default=300.0)
JOBS_BALANCE_EVERY_S = env.float("JOBS_BALANCE_EVERY_S", default=900.0)
JOBS_PRICING_EVERY_S = env.float("JOBS_PRICING_EVERY_S", default=86400.0)
JOBS_RETENTION_EVERY_S = env.float("JOBS_RETENTION_EVERY_S", default=3600.0)
JOBS_RECONCILE_EVERY_S = env.float("JOBS_RECONCILE_EVERY_S", default=300.0)
