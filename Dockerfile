# tgtrader: grid-trading bot for Binance spot, operated from Telegram.
#   docker build -t tgtrader .
#   docker run -d --env-file .env -v tgtrader-data:/data tgtrader
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# 1. Dependencies only, exactly the locked versions with their hashes (requirements.lock, made from
#    pyproject.toml by .ci/lock): two builds a week apart install the same files. Rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# 2. The package itself (no dependency resolution again).
COPY pyproject.toml README.md ./
COPY tgtrader ./tgtrader
RUN pip install --no-deps . && rm -rf /app/build

# 3. Non-root user; database and logs live in the /data volume.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tgtrader \
    && mkdir -p /data/logs \
    && chown -R tgtrader:tgtrader /data
ENV TGTRADER_DB=/data/tgtrader.db \
    TGTRADER_LOG_DIR=/data/logs
VOLUME ["/data"]
# Webhook mode only (TELEGRAM_WEBHOOK_URL set); long polling needs no open port.
EXPOSE 8080
USER tgtrader
WORKDIR /data

# Reads the heartbeat `tgtrader run` rewrites every 10 s next to the database (no network): healthy while
# trading or alive and retrying an unreachable exchange; unhealthy when the heartbeat is stale (hung or gone)
# or the bot needs a person (the exchange refuses the key, the database cannot be written).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["tgtrader", "health"]

CMD ["tgtrader", "run"]
