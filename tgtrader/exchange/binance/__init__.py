"""Binance spot adapter on python-binance 1.0.37 (see adapter.py for how the package is laid out)."""

from tgtrader.exchange.binance.adapter import BinanceExchange
from tgtrader.exchange.binance.rest import map_api_error

__all__ = ["BinanceExchange", "map_api_error"]
