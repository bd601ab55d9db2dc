"""TGTRADER_PAPER_FEE_ASSET: who pays paper commissions (issue 15); Binance's default unless set."""

from __future__ import annotations

import pytest

from tgtrader.config import load_settings
from tgtrader.errors import ConfigError


def test_paper_fee_asset_defaults_to_binances_and_parses() -> None:
    assert load_settings({}, env_file=None).paper_fee_asset == "base"
    assert load_settings({"TGTRADER_PAPER_FEE_ASSET": "BNB"}, env_file=None).paper_fee_asset == "bnb"
    assert load_settings({"TGTRADER_PAPER_FEE_ASSET": "quote"}, env_file=None).paper_fee_asset == "quote"


def test_paper_fee_asset_refuses_anything_else_in_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"TGTRADER_PAPER_FEE_ASSET": "usdt"}, env_file=None)
    assert [p for p in err.value.problems if "TGTRADER_PAPER_FEE_ASSET" in p] == [
        "TGTRADER_PAPER_FEE_ASSET: must be one of base, quote, bnb (who pays a trade's commission), got 'usdt'"
    ]
