"""`tgtrader backtest`: parse options, load candles, run the vectorized backtest (or a sweep), print.

tgtrader/cli.py calls `add_arguments(parser)` on its subparser and `run(args)`. Every bad input ends
with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tgtrader.backtest.candles import CandleFileError, Candles, load_candles
from tgtrader.backtest.report import fmt_duration, fmt_num, json_ready, summary_table, write_plot
from tgtrader.backtest.sweep import SweepRow, parse_sweep, run_sweep, sweep_specs
from tgtrader.backtest.vector import BacktestInputError, run_backtest, validate
from tgtrader.core.api import GridSpec
from tgtrader.core.grid.plan import MAX_GRIDS, MIN_GRIDS, SPACINGS
from tgtrader.core.rules import SymbolRules
from tgtrader.exchange.binance.rules import rules_from_exchange_info
from tgtrader.fees import DEFAULT_FEE_ASSET, FEE_ASSETS

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SAMPLE = DATA_DIR / "BTCUSDT_1m_2023-03-10_12.csv.gz"
EXCHANGE_INFO = DATA_DIR / "exchange_info.json"
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Backtest a grid over candles with the documented fill model (see README): levels at lower..upper, "
        "buys fill when the candle path falls to a level, sells when it rises to one, at the level price."
    )
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="candle CSV (header open_time,open,high,low,close,volume or Binance 12-column, .gz ok); "
                             "'sample' = the shipped BTCUSDT 1m sample")
    parser.add_argument("--lower", metavar="L", help="lowest level (price)")
    parser.add_argument("--upper", metavar="U", help="highest level (price)")
    parser.add_argument("--grids", metavar="N", help=f"number of intervals, {MIN_GRIDS}..{MAX_GRIDS}")
    parser.add_argument("--investment", metavar="Q", help="quote amount put in the grid")
    parser.add_argument("--spacing", choices=SPACINGS, default="arithmetic")
    parser.add_argument("--fee", metavar="RATE", default="0.001", help="fee rate per fill (default 0.001)")
    parser.add_argument("--fee-asset", choices=FEE_ASSETS, default=DEFAULT_FEE_ASSET,
                        help="who pays the fee: base (Binance's default: a buy's fee comes out of the base it "
                             "receives, a sell's out of the quote), quote, or bnb (valued in quote)")
    parser.add_argument("--slippage-bps", metavar="BPS", default="0",
                        help="a stop-loss / take-profit exit sells this many basis points below the first path "
                             "price at or beyond its trigger (default 0)")
    parser.add_argument("--stop-loss", metavar="P", help="sell all base and stop when the price reaches P")
    parser.add_argument("--take-profit", metavar="P", help="sell all base and stop when the price reaches P")
    parser.add_argument("--trail-up", metavar="PRICE",
                        help="trailing up (Binance's rule): when the price passes the top level by one step the grid "
                             "moves up one level, its lowest buy's quote buying at the old top, while the new top "
                             "stays at or below PRICE")
    parser.add_argument("--trail-down", metavar="PRICE",
                        help="trailing down, the mirror: the highest sell's base moves to a new bottom level, while "
                             "the new bottom stays at or above PRICE")
    parser.add_argument("--symbol", metavar="SYM",
                        help="round levels to the tick and q to the step of SYM (from the shipped exchangeInfo)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--plot", metavar="OUT.png", help="write a chart: price, levels, fills, equity")
    parser.add_argument("--sweep", action="append", metavar="NAME=START:STOP:STEP", default=[],
                        help="sweep grids, lower, upper, fee or investment (repeatable), e.g. grids=5:60:5")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tgtrader backtest")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (BacktestInputError, CandleFileError) as exc:
        print(f"tgtrader backtest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# ---------------------------------------------------------------- internals


def _number(name: str, text: str | None, kind: type = float, required: bool = True) -> Any:
    if text is None:
        if required:
            raise BacktestInputError(f"--{name} is required")
        return None
    try:
        value = kind(text)
    except (ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        raise BacktestInputError(
            f"--{name} must be {'a whole number' if kind is int else 'a number'}, got {text!r}"
        ) from None
    finite = kind is int or ((kind is not Decimal or value.is_finite()) and math.isfinite(float(value)))
    if not finite:  # NaN, infinity, or a Decimal beyond the float range the backtest runs in
        raise BacktestInputError(f"--{name} must be a finite number, got {text!r}")
    return value


def _spec(args: argparse.Namespace, swept: set[str]) -> tuple[GridSpec, float]:
    """The grid (prices as Decimals, as the live core takes them) and the fee rate of the run."""

    def req(name: str) -> bool:
        return name not in swept

    zero = Decimal(0)
    spec = GridSpec(
        symbol=args.symbol.upper() if args.symbol else "",
        lower=_number("lower", args.lower, Decimal, required=req("lower")) or zero,
        upper=_number("upper", args.upper, Decimal, required=req("upper")) or zero,
        grids=_number("grids", args.grids, int, required=req("grids")) or 0,
        investment=_number("investment", args.investment, Decimal, required=req("investment")) or zero,
        spacing=args.spacing,
        stop_loss=_number("stop-loss", args.stop_loss, Decimal, required=False),
        take_profit=_number("take-profit", args.take_profit, Decimal, required=False),
        sell_on_stop=True,  # the backtest's fill model: a trigger sells all base
        trail_up=_number("trail-up", getattr(args, "trail_up", None), Decimal, required=False),
        trail_down=_number("trail-down", getattr(args, "trail_down", None), Decimal, required=False),
    )
    fee = _number("fee", args.fee)
    if not swept:
        validate(spec, fee, args.fee_asset, _slippage(args))
    return spec, fee


def _slippage(args: argparse.Namespace) -> float:
    value: float = _number("slippage-bps", getattr(args, "slippage_bps", "0"))
    if not (0 <= value < 1000):
        raise BacktestInputError(f"--slippage-bps must be in [0, 1000), got {args.slippage_bps!r}")
    return value


def load_rules(symbol: str) -> SymbolRules:
    """Rules for `symbol` from the exchangeInfo shipped in tgtrader/data/."""
    try:
        payload = json.loads(EXCHANGE_INFO.read_text())
    except (OSError, ValueError) as exc:
        raise BacktestInputError(f"--symbol needs {EXCHANGE_INFO.name} in tgtrader/data ({exc})") from None
    rules = rules_from_exchange_info(payload)
    sym = symbol.upper()
    if sym not in rules:
        known = ", ".join(sorted(rules)[:12])
        raise BacktestInputError(f"unknown symbol {symbol!r} (known: {known}{', ...' if len(rules) > 12 else ''})")
    return rules[sym]


def _run(args: argparse.Namespace) -> int:
    axes = [parse_sweep(s) for s in (args.sweep or [])]
    spec, fee = _spec(args, {a.name for a in axes})
    rules = load_rules(args.symbol) if args.symbol else None
    data = SAMPLE if args.data == "sample" else Path(args.data)
    t0 = time.perf_counter()
    candles = load_candles(data)
    load_s = time.perf_counter() - t0
    out = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    if not out.is_terminal:  # pipes and captures: rich would wrap at 80 columns
        out = Console(file=sys.stdout, highlight=False, soft_wrap=False, width=120)
    if axes:
        return _run_sweep(args, candles, spec, fee, axes, rules, out)
    result = run_backtest(candles, spec, rules, fee=fee, fee_asset=args.fee_asset, slippage_bps=_slippage(args))
    if args.plot:
        _plot(result, candles, args.plot)
    if args.json:
        print(json.dumps(json_ready(result.to_dict()), separators=(",", ":")))
    else:
        out.print(summary_table(result, load_s))
        if args.plot:
            out.print(f"chart written to {args.plot}")
    return 0


def _plot(result: Any, candles: Candles, target: str) -> None:
    path = Path(target)
    if not path.parent.is_dir():
        raise BacktestInputError(f"--plot: directory {str(path.parent)!r} does not exist")
    try:
        write_plot(result, candles, path)
    except OSError as exc:
        raise BacktestInputError(f"--plot: cannot write {target}: {exc.strerror or exc}") from None


def _run_sweep(
    args: argparse.Namespace,
    candles: Candles,
    base: GridSpec,
    fee: float,
    axes: list,
    rules: SymbolRules | None,
    out: Console,
) -> int:
    specs = sweep_specs(base, axes, fee)
    t0 = time.perf_counter()
    err = Console(stderr=True)
    with Progress(
        TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("sweep", total=len(specs))
        rows = run_sweep(candles, specs, rules, progress=lambda done: bar.update(task, completed=done),
                         fee_asset=args.fee_asset, slippage_bps=_slippage(args))
    elapsed = time.perf_counter() - t0
    best = rows[0].result if rows and rows[0].result is not None else None
    if best is None:
        raise BacktestInputError(f"no swept setting could run: {rows[0].error if rows else 'nothing to sweep'}")
    if args.plot:
        _plot(best, candles, args.plot)
    if args.json:
        payload = {
            "settings": len(rows),
            "candles": len(candles),
            "elapsed_s": elapsed,
            "ranked": [_sweep_entry(r) for r in rows],
        }
        print(json.dumps(json_ready(payload), separators=(",", ":")))
        return 0
    out.print(_sweep_table(rows, axes))
    out.print(
        f"{len(rows)} settings on {len(candles):,} candles in {fmt_duration(elapsed)}; ranked by final equity"
        + (f"; chart of the best written to {args.plot}" if args.plot else "")
    )
    return 0


def _sweep_entry(row: SweepRow) -> dict[str, Any]:
    s = row.setting.spec
    entry: dict[str, Any] = {"lower": float(s.lower), "upper": float(s.upper), "grids": s.grids,
                             "fee": row.setting.fee, "investment": float(s.investment)}
    if row.result is None:
        entry["error"] = row.error
    else:
        d = row.result.to_dict()
        entry.update({k: d[k] for k in ("buys", "sells", "round_trips", "grid_profit", "fees", "final_equity",
                                         "return_pct", "max_drawdown_pct", "elapsed_s")})
    return entry


def _sweep_table(rows: list[SweepRow], axes: list, limit: int = 50) -> Table:
    table = Table(title="grid sweep (best first)", title_justify="left")
    for col in ("#", "lower", "upper", "grids", "round trips", "grid profit", "fees", "final equity", "return",
                "max DD"):
        table.add_column(col, justify="right")
    for i, row in enumerate(rows[:limit], 1):
        s, r = row.setting.spec, row.result
        cells = [str(i), fmt_num(float(s.lower)), fmt_num(float(s.upper)), str(s.grids)]
        if r is None:
            table.add_row(*cells, f"[dim]{row.error}[/dim]", "", "", "", "", "")
        else:
            table.add_row(*cells, f"{r.round_trips:,}", fmt_num(r.grid_profit, 6), fmt_num(r.fees, 6),
                          fmt_num(r.final_equity, 8), f"{r.return_pct:+.2f} %", f"{r.max_drawdown_pct:.2f} %")
    if len(rows) > limit:
        table.caption = f"{len(rows) - limit} more settings not shown (use --json for all)"
    return table


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
