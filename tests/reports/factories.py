"""Data for the report tests: Data Docs of two real validation runs, one with failing expectations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.market import TZ_NAME
from pipeline.validation import BarsValidationReport, krx_sessions, validate_bars

#: Rows of the failing run broken on purpose: one bar's high below its low, three negative volumes.
HIGH_BELOW_LOW = 3
NEGATIVE_VOLUME = (5, 6, 7)


@dataclass(frozen=True)
class DataDocs:
    """A Data Docs site and the validation reports whose runs it shows."""

    site: Path
    runs: dict[str, BarsValidationReport]
    """Run name -> its report: ``clean`` passes every expectation, ``broken`` fails four."""

    def page(self, run: str) -> Path:
        """The validation page of ``run`` (GX: ``validations/<suite>/<run>/<time>/<batch>.html``)."""
        (page,) = (self.site / "validations" / "bars" / run).glob("*/*.html")
        return page


def daily_bars(n: int = 40) -> pd.DataFrame:
    """Consistent daily bars of two stocks stamped 00:00 KST on the first ``n`` KRX sessions of 2024."""
    ts = krx_sessions("2024-01-01", "2024-12-31")[:n].tz_localize(TZ_NAME).tz_convert("UTC")
    rng = np.random.default_rng(0)
    frames = []
    for symbol in ("005930", "000660"):
        close = np.round(70_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n))))
        open_ = np.round(close * np.exp(rng.normal(0, 0.005, n)))
        high, low = np.maximum(open_, close) + 100, np.minimum(open_, close) - 100
        volume = rng.integers(1_000, 1_000_000, n)
        frame = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
        frames.append(pd.DataFrame({"symbol": symbol, "interval": "1d", "ts": ts, **frame}))
    return pd.concat(frames, ignore_index=True)


def render_data_docs(site: Path) -> DataDocs:
    """Data Docs rendered by the pipeline's own validation (real GX) for a clean and a broken batch."""
    bars = daily_bars()
    broken = bars.copy()
    broken.loc[HIGH_BELOW_LOW, "high"] = broken.loc[HIGH_BELOW_LOW, "low"] - 500
    broken.loc[list(NEGATIVE_VOLUME), "volume"] = -1
    runs = {
        "clean": validate_bars(bars, data_docs_dir=site, run_name="clean"),
        "broken": validate_bars(broken, data_docs_dir=site, run_name="broken"),
    }
    return DataDocs(site=site, runs=runs)
