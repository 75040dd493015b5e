"""Story-Sprout settings. Everything that differs between machines comes from the environment;
the defaults are the embedded local stack `make run` starts (SQLite, dev Temporal, local model).
"""

import os
from pathlib import Path

import dj_database_url

from config.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("STORY_SPROUT_DATA_DIR", str(BASE_DIR / ".data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "ordered_model",
    "accounts",
    "ai",
    "stories",
    "temporal_worker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "site" / "templates"],
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

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
    )
}
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
# A SQLite connection is a file handle: the worker's database threads (ai.db.run_db) keep theirs
# between steps instead of opening one per step, which runs the WAL pragmas and registers
# Django's SQL functions again (5-8.5 ms a click, docs/performance.md). PostgreSQL reuses
# connections through its pool instead, which needs 0. runserver closes its request threads' ones.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 600 if _SQLITE else 0)
if _SQLITE:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # a kept connection is checked before use
    # The site, the worker's threads and the tests write concurrently: WAL lets readers run beside
    # one writer, IMMEDIATE takes the write lock up front (no lock-upgrade deadlocks) and the
    # timeout waits for it instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A connection pool per process (psycopg_pool): every database step of the worker and every
    # request reuses an open connection instead of a new one (a fresh PostgreSQL connection per
    # step cost ~150 ms a click, docs/performance.md), and max_size bounds what one process can
    # hold, so a burst of clicks waits for a connection instead of exhausting max_connections.
    # Django's pool needs CONN_MAX_AGE=0; DB_POOL_MAX_SIZE=0 turns it off.
    _pool_max = env_int("DB_POOL_MAX_SIZE", 10)
    if _pool_max > 0 and not DATABASES["default"]["CONN_MAX_AGE"]:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": _pool_max,
            "timeout": env_float("DB_POOL_TIMEOUT_S", 30.0),
        }
# Test databases are named per test run, so runs side by side (a developer's and an editor's
# test-on-save) never share one. For SQLite it is a file, not memory: the worker runs in other
# threads and, in the crash tests, in another process.
_TEST_RUN = env_str("STORY_SPROUT_TEST_RUN", str(os.getpid()))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-db-{_TEST_RUN}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_TEST_RUN}"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "stories:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "site" / "static"]
STATIC_ROOT = DATA_DIR / "static"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = (
    False  # htmx reads the token from the page, not the cookie; harmless either way
)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)

# --- Story limits: bad input gets a clear error, never a silent truncation ---------------------
STORY_TITLE_MAX_CHARS = 200
STORY_DESCRIPTION_MAX_CHARS = env_int("STORY_DESCRIPTION_MAX_CHARS", 2_000)
PAGE_CONTENT_MAX_CHARS = env_int("PAGE_CONTENT_MAX_CHARS", 5_000)
STORY_MAX_PAGES = env_int("STORY_MAX_PAGES", 500)

# --- Temporal ---------------------------------------------------------------------------------
TEMPORAL_ADDRESS = env_str("TEMPORAL_ADDRESS", "localhost:7233")
TEMPORAL_NAMESPACE = env_str("TEMPORAL_NAMESPACE", "default")
TEMPORAL_TASK_QUEUE = env_str("TEMPORAL_TASK_QUEUE", "story-sprout")
TEMPORAL_API_KEY = env_str("TEMPORAL_API_KEY", "")  # Temporal Cloud API key (implies TLS)
TEMPORAL_TLS = env_bool("TEMPORAL_TLS", bool(TEMPORAL_API_KEY))
TEMPORAL_TLS_CERT = env_str("TEMPORAL_TLS_CERT", "")  # path to the mTLS client certificate
TEMPORAL_TLS_KEY = env_str("TEMPORAL_TLS_KEY", "")  # path to its private key
TEMPORAL_UI_URL = env_str("TEMPORAL_UI_URL", "http://localhost:8233")
# How long a start may wait for Temporal before the job is left queued for the reconciler.
TEMPORAL_START_TIMEOUT_S = env_float("TEMPORAL_START_TIMEOUT_S", 3.0)
# Threads per process that record what Temporal answered to a start (the request never waits).
TEMPORAL_START_THREADS = env_int("TEMPORAL_START_THREADS", 16)

# --- AI ---------------------------------------------------------------------------------------
# Any LiteLLM model string. The default is the embedded Gemma 3 270M behind llama_cpp.server,
# reached through LiteLLM's OpenAI-compatible text-completion route: no key, no internet.
LOCAL_AI_MODEL = "text-completion-openai/gemma-3-270m"
LOCAL_AI_API_BASE = f"http://127.0.0.1:{env_int('LOCAL_LLM_PORT', 8088)}/v1"
AI_MODEL = env_str("AI_MODEL", LOCAL_AI_MODEL)
AI_API_BASE = env_str("AI_API_BASE", LOCAL_AI_API_BASE if AI_MODEL == LOCAL_AI_MODEL else "")
# "completion" prompts suit base models (continue "Page N:"); "chat" suits instruction models.
AI_PROMPT_FAMILY = env_str(
    "AI_PROMPT_FAMILY", "completion" if AI_MODEL.startswith("text-completion") else "chat"
)
AI_REQUEST_TIMEOUT_S = env_float("AI_REQUEST_TIMEOUT_S", 60.0)
# The model's context window in tokens; 0 = LiteLLM's model map (8192 for unknown models). The
# local model's is the llama.cpp server's n_ctx.
AI_CONTEXT_TOKENS = env_int(
    "AI_CONTEXT_TOKENS",
    env_int("LOCAL_LLM_N_CTX", 8192) if AI_MODEL == LOCAL_AI_MODEL else 0,
)
AI_RATE_LIMIT_PER_MINUTE = env_int("AI_RATE_LIMIT_PER_MINUTE", 10)
# A fixed sampling seed makes a model that honours it (llama.cpp, OpenAI) answer the same prompt
# the same way: for reproducing an author's report, and for like-for-like benchmarks. Empty = off.
AI_SEED = env_str("AI_SEED", "")
PROMPTS_DIR = BASE_DIR / "prompts"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "kv": {"()": "config.logging.KeyValueFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "kv"},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "LiteLLM": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
