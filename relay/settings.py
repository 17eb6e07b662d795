"""TokenHub settings: every value from the environment, its default on the same line.

Embedded defaults (no environment at all) give SQLite under ./var, an in-process cache and
in-process limits: what `make run` uses. Set DATABASE_URL (PostgreSQL) and REDIS_URL to scale.
"""

import os
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

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
    "channels",
    "routing",
    "observability",
    "vault",
    # the management API's docs page serves Swagger UI from ninja's own static files (no CDN)
    "ninja",
    # observability (issue 13): Django-side Prometheus metrics
    "django_prometheus",
]

# The /v1 API does not go through this stack: relay.asgi sends it to routing's lean app.
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # first: times the whole stack
    "observability.request_ids.RequestIdMiddleware",  # x-request-id on every answer, its errors too
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "observability.api_audit.ApiAuditMiddleware",  # every management-API write leaves an audit record
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
# Connections are kept (per thread) and recycled by common.db.run_db; reconnecting per query cost
# the /v1 path about a millisecond (bench/).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Query counts and latencies for /metrics: django-prometheus's wrappers of the same backends.
# They cost about 25-35 us of CPU per query (docs/observability.md); off: plain backends.
DATABASE_METRICS = env.bool("DATABASE_METRICS", default=True)
# On PostgreSQL, the /v1 money calls run on the event loop over this many connections per loop
# (common.db.pg_row); 0 sends them through the database threads like every other query.
DATABASE_LOOP_CONNECTIONS = env.int("DATABASE_LOOP_CONNECTIONS", default=4)
if DATABASE_METRICS:
    DATABASES["default"]["ENGINE"] = {
        # the same series as django-prometheus's SQLite backend, without a class made per cursor
        "django.db.backends.sqlite3": "common.sqlite_metrics",
        "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
    }.get(DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"])

REDIS_URL = env.str("REDIS_URL", default="")
# Connections each event loop's Redis client may open; past it a command waits (common.redis).
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=100)
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

# --- edges (issue 9): request schemas and token counting ---
REQUEST_MAX_N = env.int("REQUEST_MAX_N", default=16)  # most choices (`n`, `best_of`) one request may ask for
TOKEN_COUNT_EXACT_MAX_BYTES = env.int("TOKEN_COUNT_EXACT_MAX_BYTES", default=256 * 1024)  # larger bodies: tokens estimated by length (routing.counting)
TOKEN_COUNT_THREADS = env.int("TOKEN_COUNT_THREADS", default=2)  # the tokenizer's own pool, apart from the database's
# --- end edges ---
REQUEST_LOG_FLUSH_S = env.float("REQUEST_LOG_FLUSH_S", default=0.5)
DEFAULT_MAX_OUTPUT_TOKENS = env.int("DEFAULT_MAX_OUTPUT_TOKENS", default=4096)
HOLD_RECONCILE_AFTER_S = env.float("HOLD_RECONCILE_AFTER_S", default=900.0)  # longer than any stream may last
# --- money bounds (docs/billing.md, docs/decisions/005-hold-leases.md) ---
HOLD_LEASE_RENEW_S = env.float("HOLD_LEASE_RENEW_S", default=60.0)  # a live stream renews its hold's lease this often
USAGE_PROMPT_SLACK_RATIO = env.float("USAGE_PROMPT_SLACK_RATIO", default=2.0)  # reported prompt tokens billed up to
USAGE_PROMPT_SLACK_TOKENS = env.int("USAGE_PROMPT_SLACK_TOKENS", default=1024)  # ratio x our count + these
if HOLD_LEASE_RENEW_S * 2 > HOLD_RECONCILE_AFTER_S:
    raise ImproperlyConfigured("HOLD_LEASE_RENEW_S must be at most half of HOLD_RECONCILE_AFTER_S")
if USAGE_PROMPT_SLACK_RATIO < 1 or USAGE_PROMPT_SLACK_TOKENS < 0:
    raise ImproperlyConfigured("USAGE_PROMPT_SLACK_RATIO must be >= 1 and USAGE_PROMPT_SLACK_TOKENS >= 0")
TOKENHUB_UPSTREAM_ALLOW_CIDRS = env.list("TOKENHUB_UPSTREAM_ALLOW_CIDRS", default=[])
TOKENHUB_VAULT_PASSWORD = env.str("TOKENHUB_VAULT_PASSWORD", default="")
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
IDEMPOTENCY_TTL_S = env.int("IDEMPOTENCY_TTL_S", default=86400)  # an Idempotency-Key's answer is replayed this long
IDEMPOTENCY_WAIT_S = env.float("IDEMPOTENCY_WAIT_S", default=30.0)  # a duplicate waits this long for the first, then 409
IDEMPOTENCY_MAX_BYTES = env.int("IDEMPOTENCY_MAX_BYTES", default=8 * 1024 * 1024)  # larger answers are not kept
ORCHESTRATION_DEADLINE_S = env.float("ORCHESTRATION_DEADLINE_S", default=300.0)  # a tokenhub/* run ends by then
ORCHESTRATION_STEP_MAX_TOKENS = env.int("ORCHESTRATION_STEP_MAX_TOKENS", default=1024)  # each step's output limit unless max_tokens
RESPONSES_STORE_TTL_S = env.int("RESPONSES_STORE_TTL_S", default=30 * 86400)  # previous_response_id reaches back this far
CORS_ALLOW_ORIGINS = env.list("CORS_ALLOW_ORIGINS", default=["*"])  # /v1 only; keys are bearer tokens, no cookies
CORS_EXPOSE_HEADERS = [
    "x-request-id", "x-tokenhub-overhead-ms", "retry-after", "idempotent-replayed",
    *(f"x-ratelimit-{kind}-{unit}" for kind in ("limit", "remaining", "reset") for unit in ("requests", "tokens")),
]
# --- media endpoints (docs/protocols.md) ---
TRANSCRIPTION_MAX_SECONDS = env.int("TRANSCRIPTION_MAX_SECONDS", default=1800)  # the hold covers this long an upload; longer reports are not billed
# --- observability (docs/observability.md) ---
LIVE_EVENTS_ENABLED = env.bool("LIVE_EVENTS_ENABLED", default=True)
LIVE_EVENTS_QUEUE_SIZE = env.int("LIVE_EVENTS_QUEUE_SIZE", default=1000)  # past this, decisions are dropped and counted
LIVE_EVENTS_INTERVAL_S = env.float("LIVE_EVENTS_INTERVAL_S", default=0.1)  # decisions are sent in batches this often at most
STATS_WINDOWS = ("1m", "5m", "1h", "24h")  # the rolling statistics' windows (observability.selectors)
# --- routing intelligence, health and background jobs (docs/routing.md, docs/operations.md) ---
ROUTING_DEFAULT_MODE = env.str("ROUTING_DEFAULT_MODE", default="weighted")  # see channels.strategies.MODES
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
# --- customer portal (issue 11; docs/portal.md) ---
SIGNUP_CREDIT_USD = env.str("SIGNUP_CREDIT_USD", default="0")  # on a new tenant's Credit balance
KEY_ROTATION_MAX_OVERLAP_S = env.int("KEY_ROTATION_MAX_OVERLAP_S", default=7 * 86400)  # longest rotation window
INVITATION_TTL_S = env.int("INVITATION_TTL_S", default=7 * 86400)  # an invitation link works this long
PORTAL_BASE_URL = env.str("PORTAL_BASE_URL", default="")  # shown in the quickstart; empty: the request's host
PORTAL_PAGE_SIZE = env.int("PORTAL_PAGE_SIZE", default=50)  # request logs per page
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="TokenHub <noreply@localhost>")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")  # SMTP, with EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
INSTALLED_APPS += ["allauth", "allauth.account", "django_htmx"]
MIDDLEWARE += ["allauth.account.middleware.AccountMiddleware", "django_htmx.middleware.HtmxMiddleware"]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",  # the admin's username login
    "allauth.account.auth_backends.AuthenticationBackend",  # the portal's email login
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False  # a link preview must not confirm: the page asks for a click
ACCOUNT_LOGOUT_REDIRECT_URL = "/login/"
ACCOUNT_ADAPTER = "accounts.adapter.PortalAccountAdapter"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[TokenHub] "
TEMPLATES[0]["OPTIONS"]["context_processors"] += ["accounts.portal.portal_context"]

# --- operator input checks (issue 14) ---
CHANNEL_CHECK_TIMEOUT_S = env.float("CHANNEL_CHECK_TIMEOUT_S", default=5.0)  # add_channel/import_config probe of GET <base>/models
# --- payments: Stripe top-ups, redemption codes, alerts (docs/payments.md) ---------------------
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")  # empty: top-up is off, redemption codes only
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")  # whsec_...: webhooks refused without it
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")  # where the SDK sends its calls; empty: Stripe's own
STRIPE_WEBHOOK_TOLERANCE_S = env.int("STRIPE_WEBHOOK_TOLERANCE_S", default=300)  # the SDK's default
# methods offered per currency: card for USD; Alipay / WeChat Pay for CNY once enabled in Stripe
TOPUP_METHODS = env.json("TOPUP_METHODS", default={"USD": ["card"], "CNY": []})
TOPUP_BOUNDS = env.json("TOPUP_BOUNDS", default={"USD": ["5", "10000"], "CNY": ["20", "70000"]})  # min, max per currency
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="")  # success/cancel links; empty: the request's own host
REDEEM_MAX_ATTEMPTS = env.int("REDEEM_MAX_ATTEMPTS", default=10)  # per user and per address ...
REDEEM_WINDOW_S = env.int("REDEEM_WINDOW_S", default=900)  # ... within this window, then 429
ALERT_FROM_EMAIL = env.str("ALERT_FROM_EMAIL", default="tokenhub@localhost")
OPERATOR_ALERT_EMAILS = env.list("OPERATOR_ALERT_EMAILS", default=[])  # channel auto-disable / low balance
OPERATOR_ALERT_WEBHOOK_URL = env.str("OPERATOR_ALERT_WEBHOOK_URL", default="")
OPERATOR_ALERT_WEBHOOK_SECRET = env.str("OPERATOR_ALERT_WEBHOOK_SECRET", default="")
JOBS_ALERTS_EVERY_S = env.float("JOBS_ALERTS_EVERY_S", default=60.0)  # low-balance check and alert delivery

# --- deployment security (docs/security.md) ---------------------------------------------
# "production" unless told otherwise: HTTPS-only cookies, HSTS and the HTTPS redirect are on.
# `make run` and the test suite set TOKENHUB_ENV=dev (plain HTTP on loopback).
TOKENHUB_ENV = env.str("TOKENHUB_ENV", default="production")
if TOKENHUB_ENV not in ("production", "dev"):
    raise ValueError(f"TOKENHUB_ENV must be 'production' or 'dev', not {TOKENHUB_ENV!r}")
_IS_PRODUCTION = TOKENHUB_ENV == "production"
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_IS_PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes from the load balancer speak HTTP
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _IS_PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_IS_PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_IS_PRODUCTION)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_IS_PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_IS_PRODUCTION)
# Behind a TLS-terminating proxy: "HTTP_X_FORWARDED_PROTO,https". Only set it when the proxy
# always overwrites that header, or a client could claim HTTPS.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise ValueError("SECURE_PROXY_SSL_HEADER must be 'HEADER_NAME,value', e.g. HTTP_X_FORWARDED_PROTO,https")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) or None

# --- logins (docs/security.md) -----------------------------------------------------------
# django-axes sits in front of every authenticate() call (admin, portal, any backend added after
# it): after AXES_FAILURE_LIMIT failures the username, and the address, are refused without
# hashing anything until the cool-off ends.
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", *AUTHENTICATION_BACKENDS]  # then the portal's
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one reaching the limit locks
AXES_RESET_ON_SUCCESS = True
AXES_SENSITIVE_PARAMETERS = ["password"]
AXES_VERBOSE = False  # no banner on stderr: commands print one line there
AXES_ENABLE_ADMIN = False  # accounts.admin registers them, with permissions on their action
# Argon2 with OWASP's 19 MiB / 2 passes / 1 lane, and at most PASSWORD_HASH_CONCURRENCY hashes at
# once per process: a login storm waits in line instead of taking 100 MiB per attempt.
# It replaces Django's: the last hasher of an algorithm is the one that verifies its hashes.
PASSWORD_HASHERS = ["accounts.hashers.BoundedArgon2PasswordHasher", *(h for h in PASSWORD_HASHERS if not h.endswith(".Argon2PasswordHasher"))]
PASSWORD_HASH_CONCURRENCY = env.int("PASSWORD_HASH_CONCURRENCY", default=2)

# --- vault at run time (docs/security.md) ------------------------------------------------
VAULT_STATE_CHECK_S = env.float("VAULT_STATE_CHECK_S", default=1.0)  # a lock/unlock/rotation reaches every process this fast

# --- research workspace (issue 15); see docs/research.md ---
INSTALLED_APPS += ["research"]
RESEARCH_RELAY_URL = env.str("RESEARCH_RELAY_URL", default=f"http://127.0.0.1:{env.int('PORT', default=8000)}/v1")  # runs call /v1 here
RESEARCH_DISPATCH = env.str("RESEARCH_DISPATCH", default="auto")  # auto (Celery with a broker, else a thread), celery, thread
if RESEARCH_DISPATCH not in ("auto", "celery", "thread"):
    raise ImproperlyConfigured("RESEARCH_DISPATCH must be auto, celery or thread")
RESEARCH_CALL_TIMEOUT_S = env.float("RESEARCH_CALL_TIMEOUT_S", default=330.0)  # one call of a run; above ORCHESTRATION_DEADLINE_S
RESEARCH_STALE_AFTER_S = env.float("RESEARCH_STALE_AFTER_S", default=900.0)  # no heartbeat this long: the run is failed
RESEARCH_MAX_TOKENS = env.int("RESEARCH_MAX_TOKENS", default=1024)  # output limit of each call (and so its hold)
RESEARCH_MAX_COST_MICROS = env.int("RESEARCH_MAX_COST_MICROS", default=50_000_000)  # highest ceiling a customer may set
RESEARCH_SEARCH_URL = env.str("RESEARCH_SEARCH_URL", default="")  # SearXNG-style JSON search API; empty: web search off
RESEARCH_SEARCH_API_KEY = env.str("RESEARCH_SEARCH_API_KEY", default="")  # sent as Bearer when set
RESEARCH_SEARCH_RESULTS = env.int("RESEARCH_SEARCH_RESULTS", default=5)
RESEARCH_MAX_UPLOAD_BYTES = env.int("RESEARCH_MAX_UPLOAD_BYTES", default=5_000_000)  # each uploaded source file
JOBS_RESEARCH_REAP_EVERY_S = env.float("JOBS_RESEARCH_REAP_EVERY_S", default=60.0)  # mark runs of dead workers failed
# WeasyPrint logs every rendering step at INFO (once on import too): commands must print one line
LOGGING["loggers"].update({"weasyprint": {"level": "WARNING"}, "fontTools": {"level": "WARNING"}})
