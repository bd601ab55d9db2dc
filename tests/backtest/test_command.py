"""`tgtrader backtest` through its argparse entry: table, --json keys, --plot, --sweep, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tgtrader.backtest import command
from tgtrader.backtest.vector import JSON_KEYS

GRID = ["--data", "sample", "--lower", "19500", "--upper", "22500", "--grids", "20", "--investment", "1000"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = command.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *GRID)
    assert code == 0, err
    for label in ("period", "candles", "start / end price", "buys / sells", "round trips", "grid profit", "fees",
                  "final equity", "return", "buy-and-hold return", "max drawdown", "time taken"):
        assert label in out
    assert "2023-03-10 00:00" in out and "4,320" in out


def test_json_is_one_object_with_the_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *GRID, "--json")
    assert code == 0
    assert out.count("\n") == 1
    data = json.loads(out)
    assert set(JSON_KEYS) <= set(data)
    assert data["candles"] == 4320 and data["start_price"] == 20370.23 and data["final_price"] == 21995.39
    assert data["buys"] == 25 and data["sells"] == 35 and data["round_trips"] == 24
    assert data["final_equity"] == pytest.approx(data["quote"] + data["base"] * data["final_price"])


BTC_INFO = {
    "symbols": [
        {
            "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.0", "stepSize": "0.00001"},
            ],
        }
    ]
}


@pytest.fixture(autouse=True)
def exchange_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--symbol reads tgtrader/data/exchange_info.json; tests use their own copy of the BTCUSDT entry."""
    f = tmp_path / "exchange_info.json"
    f.write_text(json.dumps(BTC_INFO))
    monkeypatch.setattr(command, "EXCHANGE_INFO", f)


def test_json_with_symbol_rules_and_stop(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *GRID, "--symbol", "btcusdt", "--stop-loss", "19700", "--json")
    assert code == 0, err
    data = json.loads(out)
    # issue 15: sold at the first path price beyond the trigger (the price jumped past 19700), not at 19700
    assert data["stop"] == "stop_loss" and data["stop_trigger"] == 19700 and data["stop_price"] < 19700
    assert data["fee_asset"] == "base" and 0 <= data["base"] < 0.00001  # base fees leave dust below the step
    assert data["qty"] == 0.00247  # rounded down to the BTCUSDT step 0.00001


def test_fee_asset_and_slippage_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *GRID, "--stop-loss", "19700", "--json")
    plain = json.loads(out)
    code, out, err = run(capsys, *GRID, "--stop-loss", "19700", "--slippage-bps", "20", "--fee-asset", "quote",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["fee_asset"], data["slippage_bps"]) == ("quote", 20.0)
    assert data["stop_price"] == pytest.approx(plain["stop_price"] * 0.998)
    code, out, err = run(capsys, *GRID, "--stop-loss", "19700")
    assert code == 0 and "sold" in out and "triggered at 19,700" in out
    code, out, err = run(capsys, *GRID, "--slippage-bps", "-5")
    assert code == 2 and err.strip() == "tgtrader backtest: error: --slippage-bps must be in [0, 1000), got '-5'"


def test_plot_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "bt.png"
    code, out, _ = run(capsys, *GRID, "--plot", str(png))
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "chart written" in out


def test_sweep_ranked(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *GRID, "--sweep", "grids=5:20:5", "--sweep", "lower=19000:19500:500", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["settings"] == 8
    equity = [r["final_equity"] for r in data["ranked"]]
    assert equity == sorted(equity, reverse=True)
    assert {(r["grids"], r["lower"]) for r in data["ranked"]} == {(g, lo) for g in (5, 10, 15, 20) for lo in (19000.0, 19500.0)}
    code, out, _ = run(capsys, *GRID, "--sweep", "grids=10:30:10")
    assert code == 0 and "grid sweep" in out and "3 settings" in out


def test_sweep_lists_impossible_settings_last(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *GRID, "--sweep", "upper=19000,22500", "--json")
    data = json.loads(out)
    assert code == 0 and "error" in data["ranked"][-1] and "below upper" in data["ranked"][-1]["error"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--lower", "22500", "--upper", "19500"], "must be positive and below upper"),
        (["--grids", "1"], "out of range 2..200"),
        (["--grids", "201"], "out of range 2..200"),
        (["--grids", "ten"], "--grids must be a whole number"),
        (["--data", "/nonexistent/candles.csv"], "no such file"),
        (["--investment", "-5"], "investment must be positive"),
        (["--stop-loss", "25000"], "below the start price"),
        (["--symbol", "NOPEUSDT"], "unknown symbol"),
        (["--sweep", "color=1:2:1"], "expected NAME=START:STOP:STEP"),
        (["--sweep", "grids=20:5:5"], "START <= STOP"),
        (["--plot", "/nonexistent/dir/x.png"], "does not exist"),
    ],
)
def test_bad_arguments_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    args = list(GRID)
    for i in range(0, len(argv), 2):  # override or append
        if argv[i] in args:
            args[args.index(argv[i]) + 1] = argv[i + 1]
        else:
            args += argv[i : i + 2]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


def test_missing_required_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--data", "sample", "--lower", "1", "--upper", "2", "--grids", "5")
    assert code == 2 and "--investment is required" in err
