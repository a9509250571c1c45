"""Real KRX daily bars from ``shared/data/krx`` (eight ETFs to 2019) for equality tests on real prices."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

#: ``shared/data/krx`` beside the checkout; ``KRX_TEST_KRX_DATA`` points elsewhere (``tools/mutation.py``
#: sets it, since its scratch copies of the tests do not sit beside ``shared/``).
KRX_DIR = Path(
    os.environ.get("KRX_TEST_KRX_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data" / "krx"
)
KRX_CODES = ("091160", "091180", "102960", "102970", "117460", "139230", "143860", "229200")


@lru_cache(maxsize=8)
def _load(code: str) -> pd.DataFrame:
    raw = pd.read_csv(KRX_DIR / f"{code}.csv", dtype={"date": str})
    index = pd.DatetimeIndex(pd.to_datetime(raw["date"], format="%Y%m%d"), name="ts").tz_localize(
        "Asia/Seoul"
    )
    cols = ["open", "high", "low", "close", "volume"]
    return pd.DataFrame(raw[cols].to_numpy(float), index=index, columns=cols)


def krx_bars(code: str) -> pd.DataFrame:
    """One fund's OHLCV bars indexed by KST session dates (skips the test where the data is absent)."""
    if not (KRX_DIR / f"{code}.csv").exists():
        pytest.skip(f"{KRX_DIR} holds no {code}.csv")
    return _load(code).copy()
