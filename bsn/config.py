"""Settings read from the environment (twelve-factor), with defaults that run locally.

The process-level ones (PORT, BSN_INSTANCE_PATH, REDIS_SERVER_BIN, BSN_CONSOLE_VENDOR_DIR) are read where
they are used, before an app exists; the README lists every setting.
"""

from __future__ import annotations

import os


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"setting {name} must be an integer, got {raw!r}") from None


def _at_least_one(name: str, default: int) -> int:
    value = _int(name, default)
    if value < 1:
        raise RuntimeError(f"setting {name} must be at least 1, got {value}")
    return value


def _between(name: str, default: int, low: int, high: int) -> int:
    value = _int(name, default)
    if not low <= value <= high:
        raise RuntimeError(f"setting {name} must be between {low} and {high}, got {value}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _list(name: str, default: str) -> list[str]:
    return [item.strip() for item in _env(name, default).split(",") if item.strip()]


def normalize_database_url(url: str) -> str:
    """Accept Heroku's ``postgres://`` and pick psycopg 3 as the driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def load_settings(instance_path: str) -> dict:
    """The settings of an app, each with its local default."""
    env = _env("BSN_ENV", "development")
    if env == "production" and not os.environ.get("SECRET_KEY"):
        raise RuntimeError("BSN_ENV=production needs SECRET_KEY set")
    default_db = "sqlite:///" + os.path.join(instance_path, "bsn.sqlite3")
    return {
        "ENV_NAME": env,
        # The local default key only protects a development instance; production must set its own.
        "SECRET_KEY": _env("SECRET_KEY", "dev-insecure-secret-key"),
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(_env("DATABASE_URL", default_db)),
        # Parameters stay out of error messages and so out of logs: they hold e-mails and message text.
        # No pool_pre_ping: bsn/__init__.py pings only connections that sat idle.
        "SQLALCHEMY_ENGINE_OPTIONS": {"hide_parameters": True},
        "DB_POOL_SIZE": _int("DB_POOL_SIZE", 10),
        # gunicorn.conf.py starts this many gevent workers per web dyno; the app needs to know, since Socket.IO
        # long-polling cannot work across them.
        "WEB_WORKERS": _at_least_one("WEB_WORKERS", 1),
        # The web process's first garbage-collector threshold (wsgi.py); Python's own is 700.
        "WEB_GC_THRESHOLD": _at_least_one("WEB_GC_THRESHOLD", 10000),
        "REDIS_URL": _env("REDIS_URL", "redis://127.0.0.1:6390/0"),
        # Per pool (the shared client and rate limits; the Socket.IO queue's publishes): past it a call waits.
        "REDIS_MAX_CONNECTIONS": _int("REDIS_MAX_CONNECTIONS", 100),
        # Accounts
        "AUTH_TOKEN_TTL": _int("AUTH_TOKEN_TTL", 30 * 24 * 3600),
        "AUTH_CACHE_TTL": _int("AUTH_CACHE_TTL", 300),
        # Post lists and profiles (bsn/cache.py); 0 turns the cache off. Writes invalidate at once: this
        # only bounds what a write lost while Redis was down leaves behind.
        "CACHE_TTL": _int("CACHE_TTL", 30),
        # Pages after a missed page, read by its statement and cached with it (0: only the page asked for).
        "CACHE_PAGES_AHEAD": _between("CACHE_PAGES_AHEAD", 1, 0, 10),
        "PASSWORD_MIN_LENGTH": _int("PASSWORD_MIN_LENGTH", 10),
        "PASSWORD_HASH_TIME_COST": _int("PASSWORD_HASH_TIME_COST", 3),
        "PASSWORD_HASH_MEMORY_KIB": _int("PASSWORD_HASH_MEMORY_KIB", 65536),
        "PASSWORD_RESET_TTL": _int("PASSWORD_RESET_TTL", 3600),
        "EMAIL_VERIFICATION_TTL": _int("EMAIL_VERIFICATION_TTL", 3 * 24 * 3600),
        # E-mail: "file" writes .eml files (development), "smtp" sends, "console" prints them to stdout
        "MAIL_BACKEND": _env("MAIL_BACKEND", "file"),
        "MAIL_FROM": _env("MAIL_FROM", "BSN <no-reply@localhost>"),
        "MAIL_FILE_DIR": _env("MAIL_FILE_DIR", ""),  # empty: <instance>/mail
        "MAIL_SMTP_HOST": _env("MAIL_SMTP_HOST", "localhost"),
        "MAIL_SMTP_PORT": _int("MAIL_SMTP_PORT", 587),
        "MAIL_SMTP_USER": _env("MAIL_SMTP_USER", ""),
        "MAIL_SMTP_PASSWORD": _env("MAIL_SMTP_PASSWORD", ""),
        "MAIL_SMTP_STARTTLS": _bool("MAIL_SMTP_STARTTLS", True),
        "MAIL_SMTP_TIMEOUT": _int("MAIL_SMTP_TIMEOUT", 20),
        "PUBLIC_URL": _env("PUBLIC_URL", "http://localhost:5000"),  # links in e-mails start with it
        "NOTIFICATION_EMAIL_INTERVAL": _int("NOTIFICATION_EMAIL_INTERVAL", 3600),
        # HTTP
        "CORS_ORIGINS": _list("CORS_ORIGINS", "http://localhost:3000,http://127.0.0.1:3000"),
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 1024 * 1024),
        "HSTS_ENABLED": _bool("HSTS_ENABLED", env == "production"),
        "LOG_FORMAT": _env("LOG_FORMAT", "json" if env == "production" else "text"),
        "LOG_LEVEL": _env("LOG_LEVEL", "INFO"),
        # Rate limits (limits' notation: "N per unit", several separated by ";")
        "RATELIMIT_ENABLED": _bool("RATELIMIT_ENABLED", True),
        "RATELIMIT_ANON": _env("RATELIMIT_ANON", "120 per minute"),
        "RATELIMIT_USER": _env("RATELIMIT_USER", "1200 per minute"),
        "RATELIMIT_LOGIN_IP": _env("RATELIMIT_LOGIN_IP", "20 per minute"),
        "RATELIMIT_LOGIN_ACCOUNT": _env("RATELIMIT_LOGIN_ACCOUNT", "5 per minute;30 per hour"),
        "RATELIMIT_REGISTER_IP": _env("RATELIMIT_REGISTER_IP", "10 per hour"),
        # Requests that send an e-mail (password reset, verification), per IP and per address or account
        "RATELIMIT_ACCOUNT_EMAIL": _env("RATELIMIT_ACCOUNT_EMAIL", "5 per hour"),
        "RATELIMIT_EXPORT": _env("RATELIMIT_EXPORT", "5 per hour"),
        "RATELIMIT_FAIL_OPEN": _bool("RATELIMIT_FAIL_OPEN", True),
        # Mining (seconds unless named otherwise)
        "MINING_BASE_RATE": _env("MINING_BASE_RATE", "0.6"),  # tokens per hour before bonuses
        "HEARTBEAT_TIMEOUT": _int("HEARTBEAT_TIMEOUT", 300),
        "ACTIVITY_TIMEOUT": _int("ACTIVITY_TIMEOUT", 3600),
        "MAX_SESSION": _int("MAX_SESSION", 24 * 3600),
        "CLEANUP_INTERVAL": _int("CLEANUP_INTERVAL", 600),
        "HEARTBEAT_FLUSH_INTERVAL": _int("HEARTBEAT_FLUSH_INTERVAL", 60),
        "HEARTBEAT_RATE_LIMIT": _env("HEARTBEAT_RATE_LIMIT", "20 per minute"),
        "LEDGER_AUDIT_INTERVAL": _int("LEDGER_AUDIT_INTERVAL", 24 * 3600),
        "LEADERBOARD_REBUILD_INTERVAL": _int("LEADERBOARD_REBUILD_INTERVAL", 3600),
        # The mining optimizer (a subprocess run by a periodic job)
        "ENABLE_MINING_OPTIMIZATION": _bool("ENABLE_MINING_OPTIMIZATION", False),
        "MINING_OPTIMIZATION_INTERVAL": _int("MINING_OPTIMIZATION_INTERVAL", 300),
        "MINING_OPTIMIZATION_TIMEOUT": _int("MINING_OPTIMIZATION_TIMEOUT", 120),
        "MINING_OPTIMIZATION_WINDOW": _int("MINING_OPTIMIZATION_WINDOW", 7 * 24 * 3600),
        "MINING_OPTIMIZER_PYTHON": _env("MINING_OPTIMIZER_PYTHON", ""),  # empty: the running interpreter
        "MINING_OPTIMIZER_MODULE": _env("MINING_OPTIMIZER_MODULE", "workers.optimizer"),
        "MINING_MARKET_FILE": _env("MINING_MARKET_FILE", ""),  # token price history, optional
        "MINING_DAILY_EMISSION_BUDGET": _env("MINING_DAILY_EMISSION_BUDGET", "1000"),
        # Uploads and stories
        "UPLOAD_MAX_BYTES": _int("UPLOAD_MAX_BYTES", 10 * 1024 * 1024),
        "UPLOAD_DIR": _env("UPLOAD_DIR", ""),  # empty: <instance>/uploads
        "STORY_TTL": _int("STORY_TTL", 24 * 3600),
        "STORY_PURGE_INTERVAL": _int("STORY_PURGE_INTERVAL", 3600),
        # Auto-moderation of posts, comments and messages
        "MODERATION_BLOCKED_WORDS": _list("MODERATION_BLOCKED_WORDS", ""),
        "MODERATION_MAX_LINKS": _int("MODERATION_MAX_LINKS", 3),
        "MODERATION_MODE": _env("MODERATION_MODE", "reject"),  # reject, or hold (posts) for review
        # Posts
        "POST_MAX_LENGTH": _int("POST_MAX_LENGTH", 5000),
        # Messaging
        "MESSAGE_MAX_LENGTH": _int("MESSAGE_MAX_LENGTH", 4000),
        "MESSAGE_EDIT_WINDOW": _int("MESSAGE_EDIT_WINDOW", 15 * 60),
        "SYNC_BATCH": _int("SYNC_BATCH", 500),
        "CHAT_MAX_WAITING_SENDS": _int("CHAT_MAX_WAITING_SENDS", 5000),
        "SOCKET_MAX_QUEUED_EVENTS": _at_least_one("SOCKET_MAX_QUEUED_EVENTS", 100),
        "SOCKET_RATE_LIMIT": _env("SOCKET_RATE_LIMIT", "60 per 10 seconds"),
        "SOCKET_COMPRESSION": _bool("SOCKET_COMPRESSION", False),
        "TYPING_TIMEOUT": _int("TYPING_TIMEOUT", 10),
        "PRESENCE_REFRESH_INTERVAL": _int("PRESENCE_REFRESH_INTERVAL", 10),
        "PRESENCE_STALE_AFTER": _int("PRESENCE_STALE_AFTER", 30),
        "PRESENCE_SWEEP_INTERVAL": _int("PRESENCE_SWEEP_INTERVAL", 15),
        "OUTBOX_FLUSH_INTERVAL": _int("OUTBOX_FLUSH_INTERVAL", 30),
        # DAO
        "DAO_PROPOSAL_MIN_BALANCE": _env("DAO_PROPOSAL_MIN_BALANCE", "100"),  # tokens needed to propose
        "DAO_CLOSE_INTERVAL": _int("DAO_CLOSE_INTERVAL", 60),
        # Jobs and liveness
        "WORKER_MAX_AGE": _int("WORKER_MAX_AGE", 60),
        "WORKER_TTL": _int("WORKER_TTL", 35),
        "WORKER_MAINTENANCE_INTERVAL": _int("WORKER_MAINTENANCE_INTERVAL", 60),
        "JOB_MONITORING_INTERVAL": _int("JOB_MONITORING_INTERVAL", 30),
        "JOB_ABANDON_GRACE": _int("JOB_ABANDON_GRACE", 60),
        "WATCHDOG_INTERVAL": _int("WATCHDOG_INTERVAL", 60),
        "SCHEDULER_INTERVAL": _int("SCHEDULER_INTERVAL", 5),
        "SCHEDULER_MAX_AGE": _int("SCHEDULER_MAX_AGE", 60),
    }
