"""Bar keys already met earlier in one file, so a bar repeated far apart in a big file is caught too."""

from __future__ import annotations

import numpy as np
import pandas as pd


class SeenKeys:
    """The (symbol, ts) keys of the chunks read so far (int64 nanoseconds per symbol, ~8 bytes a bar)."""

    def __init__(self) -> None:
        self._by_symbol: dict[str, np.ndarray] = {}

    def repeated(self, symbols: pd.Series, ts: pd.Series) -> pd.Series:
        """Mark rows whose key appeared in an earlier call, then remember this call's keys. Rows without
        a symbol or a timestamp are never marked (the store refuses them on its own)."""
        out = pd.Series(False, index=ts.index)
        valid = ts.notna() & symbols.notna()
        if not valid.any():
            return out
        nanos = pd.Series(ts[valid].astype("int64").to_numpy(), index=ts[valid].index)
        for symbol, group in nanos.groupby(symbols[valid].astype(str), sort=False):
            values = group.to_numpy()
            seen = self._by_symbol.get(str(symbol))
            if seen is not None:
                out[group.index] = np.isin(values, seen)
                self._by_symbol[str(symbol)] = np.union1d(seen, values)
            else:
                self._by_symbol[str(symbol)] = np.unique(values)
        return out
