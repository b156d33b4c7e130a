# Kontext in a container: `docker compose up -d` (compose.yaml), or see the README's
# "Running in production". The image holds no secrets: they come from .env at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Installed from the project's own files (.dockerignore keeps .env, data/ and .venv out).
COPY pyproject.toml README.md /src/
COPY bot /src/bot
COPY cogs /src/cogs
COPY migrations /src/migrations
RUN pip install /src && rm -rf /src

# A user of its own, and /data (the volume) the only place it writes.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin kontext \
    && mkdir -p /data /app \
    && chown kontext:kontext /data

ENV DATABASE_PATH=/data/kontext.db \
    RESULTS_DIR=/data/results \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080 \
    LOG_FORMAT=json

VOLUME ["/data"]
WORKDIR /app
USER kontext
EXPOSE 8080

# 200 from GET /healthz: connected to Discord, the queue running, not halted, database up.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot", "healthcheck"]

# `docker stop` sends SIGTERM: running edits get SHUTDOWN_GRACE_S to finish (give the
# container longer than that to stop: compose.yaml's stop_grace_period).
ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
