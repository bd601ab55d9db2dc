"""The core writes no English into alerts: an AlertIntent carries a kind and facts, the front end words it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import tgtrader.core
from tgtrader.types import AlertIntent

CORE = Path(tgtrader.core.__file__).parent
ALERT_CALLS = {"AlertIntent", "_alert"}  # the dataclass, and the machines' helper that builds it


def _name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _texts(node: ast.expr) -> list[str]:
    """String constants and f-strings inside a payload expression (dict keys, which name facts, excepted)."""
    keys = {id(k) for d in ast.walk(node) if isinstance(d, ast.Dict) for k in d.keys if k is not None}
    return [ast.unparse(n) for n in ast.walk(node)
            if id(n) not in keys and (isinstance(n, ast.JoinedStr) or (isinstance(n, ast.Constant)
                                                                       and isinstance(n.value, str)))]


def test_alert_intent_has_no_text_field() -> None:
    assert [f.name for f in dataclasses.fields(AlertIntent)] == ["kind", "payload"]


def test_the_core_passes_no_text_to_alerts() -> None:
    calls = 0
    problems: list[str] = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and node.name in ALERT_CALLS:
                params = [arg.arg for arg in node.args.args + node.args.kwonlyargs]
                if "text" in params:
                    problems.append(f"{path.name}:{node.lineno} {node.name}() takes a text")
            if not (isinstance(node, ast.Call) and _name(node.func) in ALERT_CALLS):
                continue
            calls += 1
            payload = node.args[1:] + [kw.value for kw in node.keywords]  # the first argument is the kind
            for text in (t for expr in payload for t in _texts(expr)):
                problems.append(f"{path.relative_to(CORE)}:{node.lineno} passes {text}")
    assert calls >= 10, calls  # the scan does find the machines' alerts
    assert not problems, problems
