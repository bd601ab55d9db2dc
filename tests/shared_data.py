"""Where the team's real recorded data lives: `shared/data` beside the repository (as CI lays it out)."""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [
    Path(os.environ["TGTRADER_SHARED_DATA"]) if os.environ.get("TGTRADER_SHARED_DATA") else None,
    _ROOT.parent / "shared" / "data",
    Path("/work/shared/data"),
]


def shared_data(relative: str) -> Path:
    """The first existing copy of `relative` under a shared data folder (else the repo-relative path, so a
    test's `exists()` skip still reads naturally)."""
    for base in _CANDIDATES:
        if base is not None and (base / relative).exists():
            return base / relative
    return _ROOT.parent / "shared" / "data" / relative
