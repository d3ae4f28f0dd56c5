"""Tandem settings: everything that differs between machines comes from the environment.

The defaults run the demo with no servers (SQLite under var/, Celery on kombu's filesystem
transport); production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY and ALLOWED_HOSTS.
Every variable is listed in the README.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from core.env import envbool, envfloat, envint, envlist, envminutes, envrate, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("TANDEM_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", False)
_secret = envstr("SECRET_KEY", "")
if not _secret:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    _secret = "django-insecure-demo-only-key-never-use-in-production"  # noqa: S105
SECRET_KEY = _secret

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_htmx",
    "template_partials",
    "simple_history",
    "core",
    "masterdata",
    "q2c",
    "orchestration",
    "exceptions",
    "console",
    "tandem",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "console.preferences.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "core.web.HtmxVaryMiddleware",
    "core.audit.AuditContextMiddleware",
    "core.web.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "tandem.urls"
WSGI_APPLICATION = "tandem.wsgi.application"
ASGI_APPLICATION = "tandem.asgi.application"

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
                "console.context_processors.console",
            ],
            "builtins": ["core.templatetags.readable", "console.templatetags.saved_views"],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'tandem.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60, minimum=0))
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # One file shared by the web process and the worker: WAL lets readers run beside the
    # writer, IMMEDIATE takes the write lock at BEGIN so two writers queue instead of failing.
    _db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _db["CONN_MAX_AGE"] = 0
    _db["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    _db["CONN_HEALTH_CHECKS"] = True
    # No JIT: the console's short reads over large tables have high planner costs, and compiling
    # them took 1-2 s per query at a million orders (bench/console.py), longer than running them.
    _db.setdefault("OPTIONS", {})["options"] = "-c jit=off"
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation: time is always timezone-aware, stored in UTC ------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and envbool("STATIC_MANIFEST", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security (safe defaults; the demo relaxes them through DEBUG) -----------------------
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if envbool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API ---------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = ["core.login.ThrottledModelBackend"]
# API request bodies nested deeper are refused (400) before they are parsed.
API_MAX_JSON_DEPTH = envint("API_MAX_JSON_DEPTH", 32, minimum=4)
# Sign-in lockout (core.login): this many wrong passwords per username or per address ...
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
# ... lock it for the rest of this window, counted from the first failure.
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# The cache shared by every process (login counters, API throttling): Redis in production.
CACHE_URL = envstr("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.tokens.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # A service's Refused becomes a 400/404/409 with {"detail", "kind"} (core.api).
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    # Per user (a token is a user's) or per address before authentication: a 429 with
    # Retry-After beyond API_THROTTLE_USER / API_THROTTLE_ANON (core.ratelimit).
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.ClientRateThrottle"],
}
API_THROTTLE_USER = envrate("API_THROTTLE_USER", "1200/min")
API_THROTTLE_ANON = envrate("API_THROTTLE_ANON", "60/min")
SPECTACULAR_SETTINGS = {
    "TITLE": "Tandem API",
    "DESCRIPTION": "Canonical quote-to-cash records and operator actions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is served to signed-in users and token holders only (core.api.SchemaView).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "QuoteStateEnum": "q2c.models.QuoteState",
        "OrderStateEnum": "q2c.models.OrderState",
        "ContractStateEnum": "q2c.models.ContractState",
        "ContractVersionStateEnum": "q2c.models.VersionState",
        "ContractVersionKindEnum": "q2c.models.VersionKind",
        "InvoiceStateEnum": "q2c.models.InvoiceState",
        "CreditNoteStateEnum": "q2c.models.CreditNoteState",
        "PaymentStateEnum": "q2c.models.PaymentState",
        "AccountStatusEnum": "masterdata.models.AccountStatus",
        "LineKindEnum": "core.records.LineKind",
        "BillingPeriodEnum": "core.records.BillingPeriod",
        "ExceptionStateEnum": "exceptions.models.ExceptionState",
        "ReplayStateEnum": "exceptions.models.ReplayState",
        "ReplayKindEnum": "exceptions.models.ReplayKind",
    },
}

# --- Celery -----------------------------------------------------------------------------
_CELERY_DATA_DIR = VAR_DIR / "celery"
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "control", "processed"):
        (_CELERY_DATA_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(_CELERY_DATA_DIR / "queue"),
        "control_folder": str(_CELERY_DATA_DIR / "control"),
        "processed_folder": str(_CELERY_DATA_DIR / "processed"),
        "store_processed": False,
        # The file transport polls; 1 s (its default) would add a second to every hop.
        "polling_interval": 0.1,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Below every countdown we use, so a delayed message is never redelivered while waiting.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)
    }
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
TANDEM_QUEUES = ["default", "crm", "cpq", "billing", "erp", "tax", "payments"]
CELERY_TASK_QUEUES = [Queue(name) for name in TANDEM_QUEUES]
CELERY_TASK_DEFAULT_QUEUE = "default"
# A task whose worker dies is redelivered rather than silently acked; one slow task never
# hoards prefetched others.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A running workflow step holds a lease its worker renews every third of it; the step-sweep
# beat job runs again a step whose lease lapsed (its worker died), so a killed worker's step
# is re-driven within about STEP_LEASE_SECONDS + STEP_SWEEP_SECONDS. A queued step whose
# message was lost (a broker restart) is re-sent after STEP_QUEUED_GRACE_SECONDS.
STEP_LEASE_SECONDS = envint("STEP_LEASE_SECONDS", 15, minimum=2)
STEP_QUEUED_GRACE_SECONDS = envint("STEP_QUEUED_GRACE_SECONDS", 120, minimum=5)
# An inbound event still unprocessed this long after it arrived is sent to a worker again.
INBOUND_RECEIVED_GRACE_SECONDS = envint("INBOUND_RECEIVED_GRACE_SECONDS", 120, minimum=5)
# Days before its term ends that an auto-renewing contract's renewal is recorded and sent.
CONTRACT_RENEWAL_LEAD_DAYS = envint("CONTRACT_RENEWAL_LEAD_DAYS", 0)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {
        "task": "tandem.worker_heartbeat",
        "schedule": 30.0,
        "options": {"queue": "default"},
    },
    "contracts-expire-ended": {
        "task": "q2c.contracts_expire_ended",
        "schedule": crontab(minute=5),
        "options": {"queue": "default"},
    },
    # Contract changes whose date has come go on (future-dated amendments, renewal terms,
    # cancellations at term end); auto-renewing contracts renew at term end.
    "contract-versions-due": {
        "task": "orchestration.contract_versions_due",
        "schedule": crontab(minute="*/15"),
        "options": {"queue": "default"},
    },
    "contracts-auto-renew": {
        "task": "orchestration.contracts_auto_renew",
        "schedule": crontab(minute=10),
        "options": {"queue": "default"},
    },
    # Re-sends workflow steps whose broker message was lost or whose worker died.
    "sweep-steps": {
        "task": "orchestration.sweep_steps",
        "schedule": envfloat("STEP_SWEEP_SECONDS", 5.0),
        "options": {"queue": "default"},
    },
    # Closes ended usage months and re-sends the usage reports billing has not confirmed.
    "usage-reports-sweep": {
        "task": "orchestration.usage_reports_sweep",
        "schedule": 300.0,
        "options": {"queue": "default"},
    },
    # Re-sends inbound events whose processing message was lost.
    "sweep-inbound-events": {
        "task": "orchestration.sweep_inbound_events",
        "schedule": envfloat("INBOUND_SWEEP_SECONDS", 60.0),
        "options": {"queue": "default"},
    },
    # Reads the changes of systems without webhooks (e.g. Tryton) from their poll cursors.
    "poll-systems": {
        "task": "orchestration.poll_systems",
        "schedule": envfloat("POLL_INTERVAL_SECONDS", 30.0),
        "options": {"queue": "default"},
    },
    # Re-sends the execution of approved replays whose message was lost.
    "sweep-replays": {
        "task": "exceptions.sweep_replays",
        "schedule": 60.0,
        "options": {"queue": "default"},
    },
    # Reconciliation: what changed since the last run every quarter of an hour, everything
    # at night (an incremental run cannot see a Tandem change against an unchanged record).
    "reconcile-incremental": {
        "task": "orchestration.reconcile",
        "schedule": crontab(minute="*/15"),
        "kwargs": {"system": "all", "full": False},
        "options": {"queue": "default"},
    },
    "reconcile-full": {
        "task": "orchestration.reconcile",
        "schedule": crontab(minute=30, hour=2),
        "kwargs": {"system": "all", "full": True},
        "options": {"queue": "default"},
    },
    # Empties inbound and outbound bodies older than TANDEM_RETENTION_DAYS.
    "retention-purge": {
        "task": "orchestration.retention_purge",
        "schedule": crontab(minute=45, hour=3),
        "options": {"queue": "default"},
    },
    # Duplicate-account candidates for the data stewards' queue.
    "detect-duplicates": {
        "task": "masterdata.detect_duplicates",
        "schedule": crontab(minute=15, hour="*/6"),
        "options": {"queue": "default"},
    },
    # SLA breaches and approvals waiting, by e-mail, batched per person.
    "send-notifications": {
        "task": "console.send_notifications",
        "schedule": envfloat("NOTIFY_INTERVAL_SECONDS", 300.0),
        "options": {"queue": "default"},
    },
}

# --- E-mail (notifications) ---------------------------------------------------------------
# The demo writes each message to a file under var/mail/ instead of sending it.
EMAIL_BACKEND = envstr(
    "EMAIL_BACKEND",
    "django.core.mail.backends.filebased.EmailBackend"
    if envbool("TANDEM_DEMO_MODE", False)
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_FILE_PATH = str(VAR_DIR / "mail")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "tandem@localhost")
TANDEM_BASE_URL = envstr("TANDEM_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# A team chat's incoming webhook (Slack, Mattermost, Teams: JSON {"text": ...}); empty, none.
# The URL is a secret (it lets anyone post): from the environment only, never logged.
TANDEM_CHAT_WEBHOOK_URL = envstr("TANDEM_CHAT_WEBHOOK_URL", "")

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = envstr("LOG_LEVEL", "INFO")
LOG_FORMAT = envstr("LOG_FORMAT", "text" if DEBUG else "json")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be 'text' or 'json'")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "core.logging.CorrelationIdFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["correlation"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Tandem -----------------------------------------------------------------------------
TANDEM_DEMO_MODE = envbool("TANDEM_DEMO_MODE", False)
# How long an order or contract may sit in a non-final state before the console calls it
# stuck (minutes per state); a state without an entry is never stuck. Override some states
# with e.g. ORDER_STATE_SLA_MINUTES="submitted_to_erp=120,on_hold=480".
ORDER_STATE_SLA_MINUTES = envminutes(
    "ORDER_STATE_SLA_MINUTES",
    {"received": 15, "validated": 15, "submitted_to_erp": 60, "accepted": 30,
     "provisioning": 60, "on_hold": 1440},
    keys=["received", "validated", "submitted_to_erp", "accepted", "provisioning", "on_hold"],
)  # fmt: skip
CONTRACT_STATE_SLA_MINUTES = envminutes(
    "CONTRACT_STATE_SLA_MINUTES",
    {"pending_activation": 1440, "renewed": 43200},
    keys=["pending_activation", "renewed"],
)

# --- Master data ------------------------------------------------------------------------
# Pairs whose match probability (Fellegi-Sunter, learned from the accounts) reaches this are
# duplicate candidates: more likely one customer than not (README, "Master data").
TANDEM_DUPLICATE_THRESHOLD = envfloat("TANDEM_DUPLICATE_THRESHOLD", 0.5)
if not 0 < TANDEM_DUPLICATE_THRESHOLD < 1:
    raise ImproperlyConfigured("TANDEM_DUPLICATE_THRESHOLD must be between 0 and 1")
# Maker-checker: a merge is requested by one steward and run when another approves it.
TANDEM_MERGE_REQUIRES_APPROVAL = envbool("TANDEM_MERGE_REQUIRES_APPROVAL", False)
# Survivorship: per account field, the systems whose value is trusted most, best first ("*"
# for any other field); without a trusted system the most recent non-empty value wins.
TANDEM_SURVIVORSHIP: dict[str, list[str]] = {
    "legal_name": ["erp", "billing", "crm"],
    "tax_id": ["erp", "tax", "billing", "crm"],
    "address_line1": ["billing", "erp", "crm"],
    "address_line2": ["billing", "erp", "crm"],
    "city": ["billing", "erp", "crm"],
    "postcode": ["billing", "erp", "crm"],
    "email": ["billing", "crm"],
    "*": ["crm", "erp", "billing", "cpq"],
}

# --- Connectors and webhooks ------------------------------------------------------------
# Every system is reached over HTTP through orchestration.connectors.transport. The defaults
# point at the built-in sandbox; credentials are named here and read from the environment
# (or <NAME>_FILE) at call time, so they never sit in settings.
CONNECTOR_SYSTEMS = ["crm", "cpq", "billing", "erp", "tax", "payments"]
CONNECTOR_SANDBOX_URL = envstr("CONNECTOR_SANDBOX_URL", "http://127.0.0.1:8100").rstrip("/")
# The sandbox's control API (faults, state, reset) asks for this shared secret; the demo's
# default matches the sandbox's own.
SANDBOX_CONTROL_TOKEN = envstr("SANDBOX_CONTROL_TOKEN", "ctl_sandbox_local")
CONNECTOR_ALLOWED_HOSTS = envlist("CONNECTOR_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
TANDEM_CONNECTORS: dict[str, dict[str, object]] = {
    _system: {
        "base_url": envstr(
            f"CONNECTOR_{_system.upper()}_BASE_URL", f"{CONNECTOR_SANDBOX_URL}/{_system}/"
        ),
        "credential_env": f"CONNECTOR_{_system.upper()}_API_KEY",
        "connect_timeout": envfloat(f"CONNECTOR_{_system.upper()}_CONNECT_TIMEOUT", 3.05),
        "read_timeout": envfloat(f"CONNECTOR_{_system.upper()}_READ_TIMEOUT", 10.0),
        "rate_limit_per_second": envfloat(f"CONNECTOR_{_system.upper()}_RATE_LIMIT", 50.0),
    }
    for _system in CONNECTOR_SYSTEMS
}
# The class serving each system kind (orchestration.connectors.registry.connector_for);
# CONNECTOR_<KIND>_IMPLEMENTATION names another one, e.g. a real product's connector.
_SANDBOX_CONNECTORS = {
    "crm": "orchestration.connectors.sandbox.crm.SandboxCrm",
    "cpq": "orchestration.connectors.sandbox.cpq.SandboxCpq",
    "billing": "orchestration.connectors.sandbox.billing.SandboxBilling",
    "erp": "orchestration.connectors.sandbox.erp.SandboxErp",
    "tax": "orchestration.connectors.sandbox.tax.SandboxTax",
    "payments": "orchestration.connectors.sandbox.payments.SandboxPayments",
}
TANDEM_CONNECTOR_IMPLEMENTATIONS: dict[str, str] = {
    _kind: envstr(f"CONNECTOR_{_kind.upper()}_IMPLEMENTATION", _default)
    for _kind, _default in _SANDBOX_CONNECTORS.items()
}
# Stripe as billing (CONNECTOR_BILLING_IMPLEMENTATION=orchestration.connectors.stripe.billing
# .StripeBilling): the catalog API (prices, the legacy plans, or auto-detect), how invoices are
# collected, and which signature scheme the billing webhook endpoint expects.
CONNECTOR_BILLING_STRIPE_CATALOG = envstr("CONNECTOR_BILLING_STRIPE_CATALOG", "auto")
CONNECTOR_BILLING_STRIPE_COLLECTION = envstr(
    "CONNECTOR_BILLING_STRIPE_COLLECTION", "charge_automatically"
)
CONNECTOR_BILLING_STRIPE_DAYS_UNTIL_DUE = envint(
    "CONNECTOR_BILLING_STRIPE_DAYS_UNTIL_DUE", 30, minimum=1
)
# Test mode only (refused with a live key): a test payment method given to every new customer,
# e.g. pm_card_visa, so rehearsals against Stripe test mode or localstripe can charge.
CONNECTOR_BILLING_STRIPE_TEST_PAYMENT_METHOD = envstr(
    "CONNECTOR_BILLING_STRIPE_TEST_PAYMENT_METHOD", ""
)
if CONNECTOR_BILLING_STRIPE_CATALOG not in ("auto", "prices", "plans"):
    raise ImproperlyConfigured("CONNECTOR_BILLING_STRIPE_CATALOG must be auto, prices or plans")
if CONNECTOR_BILLING_STRIPE_COLLECTION not in ("charge_automatically", "send_invoice"):
    raise ImproperlyConfigured(
        "CONNECTOR_BILLING_STRIPE_COLLECTION must be charge_automatically or send_invoice"
    )
WEBHOOK_SIGNATURE_BILLING = envstr(
    "WEBHOOK_SIGNATURE_BILLING",
    "stripe"
    if TANDEM_CONNECTOR_IMPLEMENTATIONS["billing"].endswith(".StripeBilling")
    else "tandem",
)
if WEBHOOK_SIGNATURE_BILLING not in ("tandem", "stripe"):
    raise ImproperlyConfigured("WEBHOOK_SIGNATURE_BILLING must be tandem or stripe")
# Tryton as the ERP (CONNECTOR_ERP_IMPLEMENTATION=orchestration.connectors.tryton.erp.TrytonErp):
# CONNECTOR_ERP_BASE_URL is the database's URL (http://host:8000/<database>/); the user is
# CONNECTOR_ERP_LOGIN / CONNECTOR_ERP_PASSWORD (or _FILE), read when a session is opened.
TRYTON_ACCOUNT_CATEGORY = envstr("CONNECTOR_ERP_TRYTON_ACCOUNT_CATEGORY", "Tandem services")
# Off: finance confirms each sale in Tryton, and that confirmation is the financial
# acceptance Tandem polls for. On: Tandem confirms the sales it creates (unattended setups).
TRYTON_CONFIRM_SALES = envbool("CONNECTOR_ERP_TRYTON_CONFIRM", False)
# A create that got no answer (a timeout, a dropped connection) may still be running in
# Tryton, which has no unique constraint on the references Tandem looks records up by: no
# second create with the same key is sent until this long after the first was (it should
# exceed the longest request trytond takes, lock waits and its own retries included).
TRYTON_SETTLE_SECONDS = envfloat("CONNECTOR_ERP_TRYTON_SETTLE_SECONDS", 120.0)
# Polling re-reads this much of each stream behind its cursor: a transaction that began
# before the cursor's write date but committed after the cursor moved is still seen (the
# events' ids are stable, so what was read before is absorbed as a duplicate).
TRYTON_POLL_LOOKBACK_SECONDS = envfloat("CONNECTOR_ERP_TRYTON_POLL_LOOKBACK_SECONDS", 300.0)
# Per-system circuit breaker (orchestration.workflows.resilience): consecutive failed steps
# that open it, and how long it stays open before one trial call.
CIRCUIT_FAILURE_THRESHOLD = envint("CIRCUIT_FAILURE_THRESHOLD", 5, minimum=1)
CIRCUIT_OPEN_SECONDS = envfloat("CIRCUIT_OPEN_SECONDS", 30.0)
if CIRCUIT_OPEN_SECONDS <= 0:
    raise ImproperlyConfigured("CIRCUIT_OPEN_SECONDS must be positive")
# How long a worker trusts a clean breaker it read (0: read the row every time).
CIRCUIT_CLEAN_CACHE_SECONDS = envfloat("CIRCUIT_CLEAN_CACHE_SECONDS", 1.0)
if CIRCUIT_CLEAN_CACHE_SECONDS < 0:
    raise ImproperlyConfigured("CIRCUIT_CLEAN_CACHE_SECONDS must not be negative")
OUTBOUND_BODY_MAX_BYTES = envint("OUTBOUND_BODY_MAX_BYTES", 16 * 1024, minimum=256)
# Retention: the stored bodies of inbound deliveries and outbound calls (which may carry
# personal data) are emptied this many days after they were received or sent; their metadata
# stays. Rows per transaction of the purge, so it never holds a long lock.
TANDEM_RETENTION_DAYS = envint("TANDEM_RETENTION_DAYS", 30, minimum=1)
TANDEM_RETENTION_BATCH = envint("TANDEM_RETENTION_BATCH", 1000, minimum=1)
# Webhook secrets are read per request from WEBHOOK_SECRET_<SYSTEM> and, during a rotation,
# WEBHOOK_SECRET_<SYSTEM>_PREVIOUS.
WEBHOOK_TOLERANCE_SECONDS = envint("WEBHOOK_TOLERANCE_SECONDS", 300, minimum=1)
WEBHOOK_MAX_BODY_BYTES = envint("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
# Deeper JSON is refused before it is parsed (a hostile body must not exhaust the parser).
WEBHOOK_MAX_JSON_DEPTH = envint("WEBHOOK_MAX_JSON_DEPTH", 32, minimum=4)
# Deliveries per system and client address (core.ratelimit); past it a 429 with Retry-After,
# nothing stored, only counted. A genuine sender retries; a flood costs one cache increment.
WEBHOOK_RATE_LIMIT = envrate("WEBHOOK_RATE_LIMIT", "3000/min")
