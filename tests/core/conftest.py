"""Shared fixtures for the core tests: real symbol rules from a recorded exchangeInfo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.shared_data import shared_data
from tgtrader.core.rules import SymbolRules
from tgtrader.exchange.binance.rules import rules_from_exchange_info

_CANDIDATES = [
    Path(__file__).resolve().parents[1] / "data" / "exchangeInfo_spot_subset_2021-10-12.json",
    shared_data("binance/exchangeInfo_spot_subset_2021-10-12.json"),
]


def load_real_rules() -> dict[str, SymbolRules]:
    for path in _CANDIDATES:
        if path.exists():
            return rules_from_exchange_info(json.loads(path.read_text()))
    # last resort: BTCUSDT's real 2021-10-12 filters, transcribed
    from decimal import Decimal as D

    return {
        "BTCUSDT": SymbolRules(
            symbol="BTCUSDT", base_asset="BTC", quote_asset="USDT", tick_size=D("0.01"), min_price=D("0.01"),
            max_price=D("1000000"), step_size=D("0.00001"), min_qty=D("0.00001"), max_qty=D("9000"),
            market_max_qty=D("100.05381873"), min_notional=D("10"), bid_multiplier_up=D("5"),
            bid_multiplier_down=D("0.2"), ask_multiplier_up=D("5"), ask_multiplier_down=D("0.2"),
            order_types=frozenset({"LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"}),
        )
    }


REAL_RULES = load_real_rules()


@pytest.fixture
def btc_rules() -> SymbolRules:
    return REAL_RULES["BTCUSDT"]


@pytest.fixture
def real_rules() -> dict[str, SymbolRules]:
    return REAL_RULES
