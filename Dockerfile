# Story-Sprout: one image for the site (default command) and the Temporal worker
# (`python -m temporal_worker`). Used by docker-compose.temporal.yml; see docs/deploy-compose.md.
#
#   docker build -t story-sprout .
#   docker run --rm -p 8000:8000 -e SECRET_KEY=... -e DATABASE_URL=... story-sprout
#   docker run --rm -e SECRET_KEY=... -e DATABASE_URL=... -e OPENAI_API_KEY=... \
#       story-sprout python -m temporal_worker
#
# The `local` extra (llama.cpp + the embedded model) is deliberately not installed: it compiles
# for ~9 minutes and the containers use a hosted model or any OpenAI-compatible server instead.
FROM python:3.11-slim-trixie

# PYTHONPATH: the code runs from /app, whatever the packaging in pyproject.toml installs.
# STORY_SPROUT_DATA_DIR: writable state (settings create it at import); /app stays root-owned.
# LITELLM_LOCAL_MODEL_COST_MAP: `import litellm` otherwise fetches its price map at start-up.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=config.settings \
    STORY_SPROUT_DATA_DIR=/data \
    LITELLM_LOCAL_MODEL_COST_MAP=True

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change doesn't reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (.dockerignore keeps virtualenvs, caches, data and secrets out).
# compileall: the code runs from /app, which PYTHONDONTWRITEBYTECODE and the read-only owner
# keep free of bytecode; without it the worker's workflow sandbox, which imports the workflow
# module afresh for every run, would compile it from source every time (~3 ms a run).
COPY . .
RUN pip install --no-deps . \
    && python -m compileall -q /app \
    && rm -rf build ./*.egg-info \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app \
    && mkdir -p /data \
    && chown app:app /data

# Numeric, so a platform can verify "not root" (e.g. Kubernetes runAsNonRoot).
USER 10001:10001

EXPOSE 8000

# Django's own server: Story-Sprout adds no WSGI server dependency. `--insecure` serves the static
# files when DEBUG is off; `--noreload` because a container restarts instead. For production
# traffic run config.wsgi:application (or config.asgi) under any WSGI/ASGI server instead.
CMD ["python", "manage.py", "runserver", "0.0.0.0:8000", "--noreload", "--insecure"]
