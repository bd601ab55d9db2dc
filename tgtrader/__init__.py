"""tgtrader: a grid-trading bot for Binance spot, operated from Telegram."""

__version__ = "0.1.0"
