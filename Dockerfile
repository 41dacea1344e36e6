# The billing worker image: one image for every role (worker, beat, flower, api, migrate,
# sandboxes); docker-compose.yml picks the command. Configuration comes from BILLING_*
# variables and secrets from files (BILLING_<NAME>_FILE=/run/secrets/<name>).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY migrations ./migrations
COPY config ./config
RUN pip install .
# Alembic's scripts stay in /app (the installed package looks beside itself otherwise).
ENV BILLING_MIGRATIONS_DIR=/app/migrations

# A non-root user owns the data dir (beat's schedule, the embedded broker if used).
RUN useradd --create-home --uid 10001 billing \
    && mkdir -p /data \
    && chown billing:billing /data
USER billing
ENV BILLING_DATA_DIR=/data
VOLUME ["/data"]

CMD ["billing", "--help"]
