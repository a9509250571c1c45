"""Back-adjusted continuous futures series: stitch per-contract bars at each roll."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

AdjustMethod = Literal["difference", "ratio"]

PRICE_COLUMNS = ["open", "high", "low", "close"]


def back_adjust(
    segments: list[tuple[str, pd.DataFrame]], method: AdjustMethod = "ratio"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stitch per-contract daily bars into one back-adjusted continuous series.

    ``segments``, oldest first: (contract code, its bars with ``ts`` and OHLCV) where each frame ends on the
    contract's last used session and may start with an overlap bar on the previous contract's last day
    (used to measure the roll gap, then dropped). At each roll the older history is shifted
    (``difference``: + new close - old close on the roll day) or scaled (``ratio``: x new / old), so the
    series has no artificial jump and the newest contract's prices are unchanged.
    Returns (continuous bars with a ``contract`` column, roll log oldest first).
    """
    ordered = [(code, bars.sort_values("ts").reset_index(drop=True)) for code, bars in segments]
    pieces: list[pd.DataFrame] = []
    log: list[dict[str, object]] = []
    shift, scale = 0.0, 1.0  # adjustment applied to the segment being processed (newest: none)
    for i in range(len(ordered) - 1, -1, -1):
        code, bars = ordered[i]
        if i > 0:  # drop the overlap bar on the previous contract's last day
            bars = bars[bars["ts"] > ordered[i - 1][1]["ts"].max()]
        adjusted = bars.copy()
        adjusted[PRICE_COLUMNS] = adjusted[PRICE_COLUMNS].to_numpy() * scale + shift
        adjusted["contract"] = code
        pieces.append(adjusted)
        if i == 0:
            break
        prev_code, prev = ordered[i - 1]
        roll_ts = prev["ts"].max()
        old_close = float(prev["close"].iloc[-1])
        same_day = ordered[i][1].loc[ordered[i][1]["ts"] == roll_ts, "close"]
        # The new contract's close on the roll day; without a bar that day, its first close after it.
        new_close = float(same_day.iloc[0] if len(same_day) else bars["close"].iloc[0])
        target = new_close * scale + shift  # the new contract's close at the newest contract's level
        if method == "difference":
            shift, scale = target - old_close, 1.0
            step = new_close - old_close
        else:
            shift, scale = 0.0, target / old_close
            step = new_close / old_close
        log.append(
            {
                "roll_ts": roll_ts,
                "from_contract": prev_code,
                "to_contract": code,
                "from_close": old_close,
                "to_close": new_close,
                "method": method,
                "adjustment": step,
            }
        )
    series = pd.concat(pieces[::-1], ignore_index=True).reset_index(drop=True)
    series[PRICE_COLUMNS] = np.round(series[PRICE_COLUMNS].to_numpy(dtype="float64"), 6)
    return series, pd.DataFrame(log[::-1])
