# QuantSaaS image: one image, every Procfile process (docs/operations.md, Container image).
#   docker build -t quantsaas .
#   docker run --env-file .env quantsaas web        # or worker, beat, feed, feed1
#   docker run --env-file .env quantsaas python manage.py migrate
# The base is pinned to the Python the suite runs on; bump it deliberately, with the tests.

FROM python:3.11.7-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# Every pinned dependency ships wheels for this platform: no compiler in any stage.
COPY requirements/base.txt requirements/prod.txt /tmp/requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements/prod.txt

FROM python:3.11.7-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=quantsaas.settings \
    VAR_DIR=/app/var \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json
# A fixed, unprivileged user (uid 10001): nothing in the container runs as root.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --chown=app:app . /app
# Static files are collected (and compressed, with hashed names) into the image; the
# secret here exists only for this command and is not kept in any layer's environment.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && rm -f /app/var/dev-secret-key /app/var/quantsaas.sqlite3 \
    && chown -R app:app /app/var
USER 10001:10001
EXPOSE 8000
# Liveness of the web process (/healthz touches no dependency). compose.yaml replaces it
# for the processes that serve no HTTP (worker, beat, feed).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "scripts/healthcheck.py"]
ENTRYPOINT ["python", "scripts/procfile_run.py"]
CMD ["web"]
