"""What a served agent needs of a request, read from the agent itself: the fewest bars a window must have
(its features' and regime model's warm-up plus the observation window) and a probe window to warm it up.
The model server (``serving/``) checks requests against these before it calls the pyfunc."""

from __future__ import annotations

import pandas as pd

from pipeline.market import TZ_NAME
from pipeline.rl.agent import TradingAgent
from pipeline.rl.synthetic import random_walk_bars

#: Bars of the probe series the warm-up is measured on: longer than any feature set's warm-up.
_PROBE_BARS = 600


def probe_window(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` plausible daily bars (a random walk, ``ts`` index tz-aware KST) to warm a loaded model up."""
    bars = random_walk_bars(n, seed=seed)[["open", "high", "low", "close", "volume"]]
    bars.index = bars.index.tz_localize(TZ_NAME).rename("ts")
    return bars


def required_bars(agent: TradingAgent) -> int:
    """The fewest bars a window needs for ``agent`` to decide: the rows its features and regime labels
    drop as warm-up (measured by running the agent's own preparation on a probe series, so no feature
    code is repeated here) plus ``window + 1`` (the replay needs two decision steps)."""
    probe = probe_window(_PROBE_BARS)
    warm_up = len(probe) - len(agent.market(probe))
    return warm_up + agent.config.env.window + 1
