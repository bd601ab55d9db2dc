"""SymbolRules from Binance `exchangeInfo` (rest-api.md "Exchange information"; filters.md for each filter).

The core's rules are venue-neutral values; this is the one place that knows Binance's JSON for them. Both the
modern filters and their pre-2023 forms (MIN_NOTIONAL, PERCENT_PRICE) are read, because recorded payloads and
some venues still carry them. Numbers may come as JSON numbers or strings (ccxt-style).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tgtrader.core.rules import SymbolRules


def _dec(value: Any, default: str = "0") -> Decimal:
    if value is None:
        return Decimal(default)
    return Decimal(str(value))


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def symbol_rules(symbol_info: Mapping[str, Any]) -> SymbolRules:
    """Build from one entry of exchangeInfo["symbols"] (ints or ccxt-style strings both work)."""
    kwargs: dict[str, Any] = {
        "symbol": symbol_info["symbol"],
        "base_asset": symbol_info["baseAsset"],
        "quote_asset": symbol_info["quoteAsset"],
        "status": symbol_info.get("status", "TRADING"),
    }
    if "orderTypes" in symbol_info:
        kwargs["order_types"] = frozenset(symbol_info["orderTypes"])
    if "cancelReplaceAllowed" in symbol_info:  # rest-api.md exchangeInfo; absent in pre-2022 payloads
        kwargs["cancel_replace_allowed"] = _bool(symbol_info["cancelReplaceAllowed"])
    for flt in symbol_info.get("filters", []):
        kind = flt.get("filterType")
        if kind == "PRICE_FILTER":
            kwargs.update(
                tick_size=_dec(flt.get("tickSize")),
                min_price=_dec(flt.get("minPrice")),
                max_price=_dec(flt.get("maxPrice")),
            )
        elif kind == "LOT_SIZE":
            kwargs.update(
                step_size=_dec(flt.get("stepSize")),
                min_qty=_dec(flt.get("minQty")),
                max_qty=_dec(flt.get("maxQty")),
            )
        elif kind == "MARKET_LOT_SIZE":
            kwargs.update(
                market_step_size=_dec(flt.get("stepSize")),
                market_min_qty=_dec(flt.get("minQty")),
                market_max_qty=_dec(flt.get("maxQty")),
            )
        elif kind == "NOTIONAL":
            kwargs.update(
                min_notional=_dec(flt.get("minNotional")),
                max_notional=_dec(flt.get("maxNotional")),
                apply_min_to_market=_bool(flt.get("applyMinToMarket", True)),
                apply_max_to_market=_bool(flt.get("applyMaxToMarket", False)),
            )
        elif kind == "MIN_NOTIONAL":  # the pre-2023 filter
            kwargs.update(
                min_notional=_dec(flt.get("minNotional")),
                apply_min_to_market=_bool(flt.get("applyToMarket", True)),
            )
        elif kind == "PERCENT_PRICE_BY_SIDE":
            kwargs.update(
                bid_multiplier_up=_dec(flt.get("bidMultiplierUp")),
                bid_multiplier_down=_dec(flt.get("bidMultiplierDown")),
                ask_multiplier_up=_dec(flt.get("askMultiplierUp")),
                ask_multiplier_down=_dec(flt.get("askMultiplierDown")),
            )
        elif kind == "PERCENT_PRICE":  # the pre-2023 filter: one band for both sides
            up, down = _dec(flt.get("multiplierUp")), _dec(flt.get("multiplierDown"))
            kwargs.update(
                bid_multiplier_up=up,
                bid_multiplier_down=down,
                ask_multiplier_up=up,
                ask_multiplier_down=down,
            )
        elif kind == "MAX_NUM_ORDERS":
            kwargs["max_num_orders"] = int(flt.get("maxNumOrders", 200))
        elif kind == "MAX_NUM_ALGO_ORDERS":  # "Algo" orders are STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT(_LIMIT)
            kwargs["max_num_algo_orders"] = int(flt.get("maxNumAlgoOrders", 0))
        elif kind == "MAX_POSITION":  # free + locked base + the qty of all open BUY orders
            kwargs["max_position"] = _dec(flt.get("maxPosition"))
    return SymbolRules(**kwargs)


def rules_from_exchange_info(payload: Mapping[str, Any]) -> dict[str, SymbolRules]:
    """All symbols of an exchangeInfo response, keyed by symbol."""
    return {s["symbol"]: symbol_rules(s) for s in payload.get("symbols", [])}
