# tgtrader: grid-trading bot for Binance spot, operated from Telegram.
#   docker build -t tgtrader .
#   docker run -d --env-file .env -v tgtrader-data:/data tgtrader
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# 1. Dependencies only, read from pyproject.toml: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. The package itself (no dependency resolution again).
COPY README.md ./
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
