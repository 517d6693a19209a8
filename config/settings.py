"""WhaleFall settings, read from the environment (django-environ).

Every variable is documented in `.env.example`. Without any environment the
project runs on embedded defaults: SQLite under `var/`, django-q2's ORM broker,
and development keys generated into untracked files under `var/`.
Production (`DJANGO_ENV=production`) refuses to start without real keys.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env_file = BASE_DIR / ".env"
if env_file.exists():
    environ.Env.read_env(str(env_file))

DJANGO_ENV = env("DJANGO_ENV", default="development")
PRODUCTION = DJANGO_ENV == "production"

VAR_DIR = Path(env("WHALEFALL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _dev_secret(filename: str, make: callable) -> str:
    """Create a development secret once and keep it in an untracked file.

    Why: a fresh clone must run without configuration, yet secrets must never
    be committed, and restarting must not make stored credentials unreadable.
    """
    if PRODUCTION:
        raise ImproperlyConfigured(f"{filename.upper()} is not set: production refuses development keys.")
    path = VAR_DIR / filename
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env("DJANGO_SECRET_KEY", default=None) or _dev_secret(
    "django_secret_key", lambda: secrets.token_urlsafe(50)
)
WHALEFALL_FIELD_KEYS = [
    k.strip()
    for k in (
        env("WHALEFALL_FIELD_KEYS", default=None)
        or _dev_secret("whalefall_field_keys", lambda: Fernet.generate_key().decode())
    ).split(",")
    if k.strip()
]

DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "auditlog",
    # in layer order, bottom first (docs/architecture.md); import-linter checks the arrows
    "adminkit",
    "audit",
    "instances",
    "accountsync",
    "sync",
    "findings",
    "classification",
    "grantscripts",
    "baselines",
    "directory",
    "reviews",
    "alerts",
    "exports",
    "dashboard",
    "api",
    "console",
]

MIDDLEWARE = [
    # first: an error page under /api/ (DEBUG's technical pages included) becomes JSON with a code
    "api.exceptions.JsonApiErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # django-auditlog's, with the trusted client address and the actor read when a row is written
    # (after DRF's token authentication): docs/audit.md
    "audit.middleware.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # last, as django-axes asks: turns a lockout flagged during the login into its 429 response
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'whalefall.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE
    # transactions plus a busy timeout turn lock contention into waiting.
    # 8 KiB pages (only a new database takes them): a change log row of a first-seen
    # account is ~2 KiB, so 4 KiB pages held one row each; a first sync of 10,000
    # accounts wrote 41 MB of change log pages instead of 27 MB.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA page_size=8192; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    # A file (not :memory:) so a qcluster started by the tests sees the same data;
    # per process, so parallel test runs never share one.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_whalefall_{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- sign-in lockout (django-axes; README.md, "Sign-in lockout") ---------------------
# LOGIN_FAILURE_LIMIT failed logins of one username from one address lock that pair out for
# LOGIN_COOLOFF_MINUTES (0: until `manage.py axes_reset_username` / `axes_reset_ip`). Every password
# login (the admin's form; any later password endpoint) calls authenticate(request=...), which the first
# backend below checks; API tokens come from `drf_create_token`, never from a password. Failures and
# lockouts are logged by api/lockout.py.
AUTHENTICATION_BACKENDS = [
    "api.lockout.LockoutBackend",  # axes.backends.AxesStandaloneBackend, request-less calls let through
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("WHALEFALL_LOGIN_FAILURE_LIMIT", default=5)
_cooloff_minutes = env.float("WHALEFALL_LOGIN_COOLOFF_MINUTES", default=15)
AXES_COOLOFF_TIME = timedelta(minutes=_cooloff_minutes) if _cooloff_minutes > 0 else None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "api.lockout.lockout_response"
# The counted address is REMOTE_ADDR; behind N trusted reverse proxies that each append to
# X-Forwarded-For, set WHALEFALL_LOGIN_PROXY_COUNT=N (never more than really stand in front:
# the client writes the rest of the header).
WHALEFALL_LOGIN_PROXY_COUNT = env.int("WHALEFALL_LOGIN_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "api.lockout.client_ip"
AXES_VERBOSE = False  # no start-up banner on every manage.py command


# --- directory sign-in: LDAP/Active Directory and OpenID Connect (docs/sign-in.md) ---------------
# Each is off until its variables are set; then its backend joins AUTHENTICATION_BACKENDS after the
# lockout and the local accounts (ModelBackend: the break-glass path, checked first and never needing
# the directory). directory/signin.py builds django-auth-ldap's search objects and TLS options from the
# plain values below; roles map directory groups to "admins", "operators", "viewers", "reviewers".
def _role_map(prefix: str, sep: str) -> dict[str, list[str]]:
    roles = ("admins", "operators", "viewers", "reviewers")
    return {r: [v.strip() for v in env(f"{prefix}{r.upper()}", default="").split(sep) if v.strip()] for r in roles}


WHALEFALL_LDAP_ENABLED = bool(env("WHALEFALL_LDAP_URI", default="").strip())
AUTH_LDAP_SERVER_URI = env("WHALEFALL_LDAP_URI", default="").strip()
AUTH_LDAP_BIND_DN = env("WHALEFALL_LDAP_BIND_DN", default="")
AUTH_LDAP_BIND_PASSWORD = env("WHALEFALL_LDAP_BIND_PASSWORD", default="")
AUTH_LDAP_START_TLS = env.bool("WHALEFALL_LDAP_START_TLS", default=False)
WHALEFALL_LDAP = {
    "ca_file": env("WHALEFALL_LDAP_CA_FILE", default=""),
    "timeout": env.float("WHALEFALL_LDAP_TIMEOUT", default=5.0),
    "user_base": env("WHALEFALL_LDAP_USER_BASE", default=""),
    "user_filter": env("WHALEFALL_LDAP_USER_FILTER", default="(uid=%(user)s)"),
    "group_base": env("WHALEFALL_LDAP_GROUP_BASE", default=""),
    "group_filter": env("WHALEFALL_LDAP_GROUP_FILTER", default="(objectClass=groupOfNames)"),
    "group_type": env("WHALEFALL_LDAP_GROUP_TYPE", default="groupOfNames"),
    "disabled_filter": env("WHALEFALL_LDAP_DISABLED_FILTER", default=""),
    "attr_map": env("WHALEFALL_LDAP_ATTR_MAP", default="first_name=givenName,last_name=sn,email=mail"),
    "roles": _role_map("WHALEFALL_LDAP_ROLE_", ";"),  # group DNs, ";"-separated (DNs hold commas)
    "superuser_groups": [g.strip() for g in env("WHALEFALL_LDAP_SUPERUSER_GROUPS", default="").split(";") if g.strip()],
}
WHALEFALL_OIDC_ENABLED = bool(env("WHALEFALL_OIDC_CLIENT_ID", default="").strip())
OIDC_RP_CLIENT_ID = env("WHALEFALL_OIDC_CLIENT_ID", default="").strip()
OIDC_RP_CLIENT_SECRET = env("WHALEFALL_OIDC_CLIENT_SECRET", default="")
OIDC_OP_AUTHORIZATION_ENDPOINT = env("WHALEFALL_OIDC_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env("WHALEFALL_OIDC_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env("WHALEFALL_OIDC_USERINFO_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env("WHALEFALL_OIDC_JWKS_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env("WHALEFALL_OIDC_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env("WHALEFALL_OIDC_SCOPES", default="openid email profile groups")
OIDC_USE_PKCE = True
OIDC_VERIFY_SSL = env("WHALEFALL_OIDC_CA_FILE", default="") or True  # a CA bundle path, else the system's
OIDC_TIMEOUT = env.float("WHALEFALL_OIDC_TIMEOUT", default=10.0)
OIDC_CALLBACK_CLASS = "directory.signin.SignInCallbackView"
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
LOGIN_REDIRECT_URL = "/admin/"
LOGIN_REDIRECT_URL_FAILURE = "/admin/login/"
WHALEFALL_OIDC = {
    "provider_name": env("WHALEFALL_OIDC_PROVIDER_NAME", default="single sign-on"),
    "username_claim": env("WHALEFALL_OIDC_USERNAME_CLAIM", default="preferred_username"),
    "groups_claim": env("WHALEFALL_OIDC_GROUPS_CLAIM", default="groups"),
    "roles": _role_map("WHALEFALL_OIDC_ROLE_", ","),  # values of the groups claim, ","-separated
    "superuser_groups": [g.strip() for g in env("WHALEFALL_OIDC_SUPERUSER_GROUPS", default="").split(",") if g.strip()],
}
if WHALEFALL_LDAP_ENABLED:
    AUTHENTICATION_BACKENDS.append("directory.signin.LDAPSignInBackend")
if WHALEFALL_OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("directory.signin.OIDCSignInBackend")
    # the login page's "Sign in with <provider>" button (templates/admin/login.html)
    TEMPLATES[0]["OPTIONS"]["context_processors"].append("directory.signin.signin_context")

# --- audit trail (audit/, docs/audit.md) -------------------------------------------
# Model history (django-auditlog): who created, changed or deleted these. Per model: "names_only",
# fields logged by name and never by value ("__all__": every field); "exclude", fields not logged
# (bookkeeping written by syncs and logins); "m2m", many-to-many fields whose changes are logged.
WHALEFALL_AUDIT_MODELS = {
    "instances.credential": {"names_only": "__all__", "exclude": ["updated_at"]},
    "instances.instance": {
        "exclude": [
            "updated_at",
            "version",
            "last_sync_at",
            "last_sync_status",
            "sync_count",
            "last_success_at",
            "catalog_digest",
        ],
        "m2m": ["tags"],
    },
    "alerts.alertchannel": {
        "names_only": ["webhook_url_encrypted", "webhook_url_mask", "signing_secret_encrypted"],
        "exclude": ["updated_at"],
    },
    "auth.user": {"names_only": ["password"], "exclude": ["last_login"], "m2m": ["groups", "user_permissions"]},
    "auth.group": {"m2m": ["permissions"]},
}
# The address recorded with audit rows and model history: the one sign-in lockout counts.
WHALEFALL_AUDIT_CLIENT_IP_CALLABLE = AXES_CLIENT_IP_CALLABLE

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# one date format on every admin page and in every language: 2026-01-31 14:05 (adminkit/formats)
FORMAT_MODULE_PATH = ["adminkit.formats"]
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# WhiteNoise serves the admin's static files under gunicorn (no separate web server needed).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- django-q2 -----------------------------------------------------------
# timeout < retry, so a task that is still running is never handed out twice.
Q_BROKER_URL = env("Q_BROKER_URL", default="")
Q_CLUSTER = {
    "name": env("Q_CLUSTER_NAME", default="whalefall"),
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=900),
    "retry": env.int("Q_RETRY", default=1200),
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 1000,
    # the admin sidebar's name for django-q2's models: lazy, so it is shown in the reader's language
    "label": gettext_lazy("Task queue"),
}
if Q_BROKER_URL.startswith("redis"):
    Q_CLUSTER["redis"] = Q_BROKER_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- WhaleFall -------------------------------------------------------------
WHALEFALL_CONNECT_TIMEOUT = env.float("WHALEFALL_CONNECT_TIMEOUT", default=5.0)
WHALEFALL_QUERY_TIMEOUT = env.float("WHALEFALL_QUERY_TIMEOUT", default=300.0)
WHALEFALL_MAX_REMOVAL_RATIO = env.float("WHALEFALL_MAX_REMOVAL_RATIO", default=0.5)
WHALEFALL_SYNC_CRON = env("WHALEFALL_SYNC_CRON", default="0 1 * * *")
# Sync machinery under faults (docs/architecture.md, "Faults"). A background heartbeat
# beats a running record and renews its instance lease every HEARTBEAT seconds, in
# every phase; a lease not renewed for LEASE seconds may be taken over.
WHALEFALL_HEARTBEAT_SECONDS = env.float("WHALEFALL_HEARTBEAT_SECONDS", default=10.0)
WHALEFALL_LEASE_SECONDS = env.float("WHALEFALL_LEASE_SECONDS", default=60.0)
# A running record that has not beaten for this long is failed by the reaper
# ("worker lost"). The system check sync.E001 keeps it above the task timeout, so a
# task django-q2 may still be running is never reaped.
WHALEFALL_STALE_SECONDS = env.int("WHALEFALL_STALE_SECONDS", default=Q_CLUSTER["timeout"] + 60)
# A queued record whose task has not started PENDING seconds after it was queued,
# while no worker is busy, was lost by the broker: re-queued up to REQUEUES times,
# then failed with error_kind "broker".
WHALEFALL_PENDING_SECONDS = env.int("WHALEFALL_PENDING_SECONDS", default=300)
WHALEFALL_PENDING_REQUEUES = env.int("WHALEFALL_PENDING_REQUEUES", default=3)

# --- Fleet scale: batches of records per worker task (docs/architecture.md, "Batches") ---
# A worker task runs up to BATCH_SIZE records (a session is cut into at least four tasks per
# worker first, so a small one still spreads over every worker; 1 = one task per record). Up to
# FETCH_CONCURRENCY of a task's records are in flight at once, each on its own thread with its own
# app-database connection (idle while it waits on the remote server), and at most
# APPLY_CONCURRENCY of them apply at once. Both bounds are per worker process: at most
# Q_WORKERS x FETCH_CONCURRENCY remote reads are in flight in total, and each worker holds up to
# FETCH_CONCURRENCY + 2 app-database connections. 1 / 1 / 1 runs one record at a time, as before.
WHALEFALL_FETCH_CONCURRENCY = env.int("WHALEFALL_FETCH_CONCURRENCY", default=8)
WHALEFALL_APPLY_CONCURRENCY = env.int("WHALEFALL_APPLY_CONCURRENCY", default=1)
WHALEFALL_BATCH_SIZE = env.int("WHALEFALL_BATCH_SIZE", default=32)

# --- JSON API (api/, docs/api.md) -----------------------------------------
# Token first: an anonymous request then gets 401 with `WWW-Authenticate: Token`.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.ModelPermissions"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_PARSER_CLASSES": ["api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "api.exceptions.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "WhaleFall API",
    "DESCRIPTION": "Instances, credentials, account syncs, sessions, accounts and change logs. See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # /api/docs/ loads Swagger UI from our own static files: it works offline
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "SyncSessionStatusEnum": "sync.models.SyncSessionStatusChoices",
        "SyncRecordStatusEnum": "sync.models.SyncRecordStatusChoices",
        "InstanceSyncStatusEnum": "instances.models.SyncStatus",
        "DbTypeEnum": "instances.models.DbType",
        "SyncTypeEnum": "sync.models.SyncTypeChoices",
        "SessionStartSyncTypeEnum": "api.serializers.SESSION_START_TYPE_CHOICES",
        # two choice sets share the field name "kind": both named, the accounts' one keeps its name
        "KindEnum": "accountsync.models.AccountKind",
        "AuditEventKindEnum": "audit.models.AuditKind",
    },
}

# --- logging ---------------------------------------------------------------
LOG_JSON = env.bool("WHALEFALL_LOG_JSON", default=False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "config.logging.JsonFormatter"},
        "plain": {"()": "config.logging.PlainFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_JSON else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": env("WHALEFALL_LOG_LEVEL", default="INFO")},
    # axes' own text lines would repeat api/lockout.py's structured login_failed/login_locked_out events
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "ERROR"},
        # named, so that Django's own handlers (set up before this dict, writing unscrubbed text and,
        # with DEBUG, every request error twice) are replaced by the scrubbing formatter's
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# --- production hardening -------------------------------------------------
if PRODUCTION:
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set in production.")
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # Paths answered over plain http too (regexes on the path without its leading slash): /healthz, so that a
    # probe on the loopback needs no proxy header; more (e.g. ^metrics$ for a direct scrape) from the environment.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", *env.list("DJANGO_SECURE_REDIRECT_EXEMPT", default=[])]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# --- alerts (alerts/, docs/alerts.md) --------------------------------------
# Privilege-escalation notifications, sent by django-q2 tasks after the sync commits.
WHALEFALL_ALERT_MAX_ATTEMPTS = env.int("WHALEFALL_ALERT_MAX_ATTEMPTS", default=5)
WHALEFALL_ALERT_BACKOFF_SECONDS = env.float("WHALEFALL_ALERT_BACKOFF_SECONDS", default=60.0)
WHALEFALL_ALERT_TIMEOUT = env.float("WHALEFALL_ALERT_TIMEOUT", default=5.0)
WHALEFALL_ALERT_BASE_URL = env("WHALEFALL_ALERT_BASE_URL", default="")
WHALEFALL_ALERT_ON_FIRST_SYNC = env.bool("WHALEFALL_ALERT_ON_FIRST_SYNC", default=False)
WHALEFALL_ALERT_FROM_EMAIL = env("WHALEFALL_ALERT_FROM_EMAIL", default="")
# Secret for the X-WhaleFall-Signature HMAC on webhook POSTs (empty: unsigned).
WHALEFALL_ALERT_SIGNING_KEY = env("WHALEFALL_ALERT_SIGNING_KEY", default="")
# More escalations than this in one sync, for one channel, become a single digest alert.
WHALEFALL_ALERT_DIGEST_OVER = env.int("WHALEFALL_ALERT_DIGEST_OVER", default=10)
# Operational alerts (alerts/operational.py): an instance that failed FAILURE_STREAK syncs in a row, an active
# one not synced successfully for STALE_HOURS; 0 turns one off. THRESHOLDS overrides them per environment, as
# JSON: {"production": {"failure_streak": 2, "stale_hours": 6}}; checked at start-up (alerts.E001).
WHALEFALL_ALERT_FAILURE_STREAK = env.int("WHALEFALL_ALERT_FAILURE_STREAK", default=3)
WHALEFALL_ALERT_STALE_HOURS = env.float("WHALEFALL_ALERT_STALE_HOURS", default=26.0)
WHALEFALL_ALERT_THRESHOLDS = env("WHALEFALL_ALERT_THRESHOLDS", default="")
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))

# --- metrics (metrics/, docs/operations.md, "Metrics") ---------------------------------
# GET /metrics for a scraper sending "Authorization: Bearer <TOKEN>" (empty: no token) or calling from an
# ALLOW address (comma-separated CIDRs; empty: token only). History-based metrics count the last WINDOW seconds.
WHALEFALL_METRICS_TOKEN = env("WHALEFALL_METRICS_TOKEN", default="")
WHALEFALL_METRICS_ALLOW = env("WHALEFALL_METRICS_ALLOW", default="127.0.0.1/32,::1/128")
WHALEFALL_METRICS_WINDOW_SECONDS = env.int("WHALEFALL_METRICS_WINDOW_SECONDS", default=86400)
EMAIL_TIMEOUT = WHALEFALL_ALERT_TIMEOUT


# --- history retention (exports/retention.py, docs/retention.md) -----------------------
# Change logs detected, and closed permission snapshots replaced, more than DAYS days ago are archived
# (gzip CSV under ARCHIVE_DIR) and then deleted, BATCH_SIZE rows per transaction. 0 (the default): off.
def _retention_int(name: str, default: int, *, minimum: int) -> int:
    """A whole number >= ``minimum``, or ImproperlyConfigured naming the variable (never a silent default)."""
    raw = str(env(name, default=str(default))).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be {minimum} or more.")
    return value


WHALEFALL_RETENTION_DAYS = _retention_int("WHALEFALL_RETENTION_DAYS", 0, minimum=0)
WHALEFALL_RETENTION_ARCHIVE_DIR = Path(env("WHALEFALL_RETENTION_ARCHIVE_DIR", default="") or VAR_DIR / "archive")
WHALEFALL_RETENTION_BATCH_SIZE = _retention_int("WHALEFALL_RETENTION_BATCH_SIZE", 5000, minimum=1)
