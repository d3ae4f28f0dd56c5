# Tandem: one image for the web process (gunicorn), Celery workers and beat.
# Build: docker build -t tandem .   Run the whole set: docker compose up (see docker-compose.yml)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TANDEM_VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app

RUN groupadd --system --gid 10001 tandem \
    && useradd --system --uid 10001 --gid tandem --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin tandem

# Dependencies first, so a code change does not reinstall them. Every wheel is pinned by hash.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY --chown=root:root . .

# Static files are gathered at build time (hashed names for WhiteNoise). The key only lets
# settings import here; it is never used at run time, where SECRET_KEY must be set.
RUN DEBUG=0 SECRET_KEY=build-time-dummy-key-not-used-at-run-time \
    TANDEM_VAR_DIR=/tmp/build-var \
    python manage.py collectstatic --noinput \
    && rm -rf /tmp/build-var \
    && mkdir -p /app/var \
    && chown tandem:tandem /app/var

USER tandem

EXPOSE 8000

CMD ["gunicorn", "tandem.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-", "--no-control-socket"]
