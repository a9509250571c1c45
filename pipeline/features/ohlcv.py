"""One spelling of OHLCV columns for every feature builder: lower case, ``volume`` always present."""

from __future__ import annotations

import pandas as pd

_RENAMES = {"adj close": "adj_close", "adj_close": "adj_close"}


def normalise_ohlcv(bars: pd.DataFrame) -> pd.DataFrame:
    """Lower-case OHLCV column names (``Open`` → ``open``); adds a zero ``volume`` when it is absent."""
    out = bars.rename(columns=lambda c: _RENAMES.get(str(c).lower(), str(c).lower()))
    missing = {"open", "high", "low", "close"} - set(out.columns)
    if missing:
        raise ValueError(f"bars lack columns {sorted(missing)}")
    if "volume" not in out.columns:
        out = out.assign(volume=0.0)
    return out
