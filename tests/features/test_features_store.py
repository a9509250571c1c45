"""upsert_features / read_features on SQLite and PostgreSQL: warm-up skipped, idempotent, versioned."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.features import FEATURE_COLUMNS, FEATURE_SET_VERSION, WARMUP_BARS, build_features
from pipeline.features.store import read_features, upsert_features


def _count(engine: Engine, feature_set: str | None = None) -> int:
    query = "SELECT count(*) FROM features" + (" WHERE feature_set = :fs" if feature_set else "")
    with engine.connect() as conn:
        return int(conn.execute(sa.text(query), {"fs": feature_set}).scalar_one())


def test_rows_past_the_warm_up_are_stored_and_read_back_exactly(
    store: Engine, make_bars: Callable[..., pd.DataFrame]
) -> None:
    feats = build_features(make_bars(n=100))
    written = upsert_features(feats, store)
    assert written == _count(store) == 2 * (100 - (WARMUP_BARS - 1))
    back = read_features(["005930", "000660"], "1d", None, None, store)
    expected = feats.dropna().sort_values(["symbol", "ts"], ignore_index=True)
    assert list(back.columns) == ["symbol", "interval", "ts", *FEATURE_COLUMNS]
    pd.testing.assert_frame_equal(back, expected, check_dtype=False, check_exact=True)
    assert str(back["ts"].dt.tz) == "UTC"


def test_recomputing_is_idempotent_and_overwrites_changed_values(
    store: Engine, make_bars: Callable[..., pd.DataFrame]
) -> None:
    feats = build_features(make_bars(n=80))
    first = upsert_features(feats, store)
    assert upsert_features(feats, store) == first
    assert _count(store) == first
    changed = feats.copy()
    changed.loc[changed.index[-1], "rsi_14"] = 42.0
    upsert_features(changed, store)
    back = read_features(str(feats["symbol"].iloc[-1]), "1d", None, None, store)
    assert back["rsi_14"].iloc[-1] == 42.0
    assert _count(store) == first


def test_feature_sets_are_kept_apart_and_ranges_are_half_open(
    store: Engine, make_bars: Callable[..., pd.DataFrame]
) -> None:
    feats = build_features(make_bars(symbols=("005930",), n=80))
    upsert_features(feats, store)
    upsert_features(feats.assign(rsi_14=0.0), store, feature_set="ta-v0-test")
    assert _count(store, FEATURE_SET_VERSION) == _count(store, "ta-v0-test") == 80 - (WARMUP_BARS - 1)
    assert (read_features("005930", "1d", None, None, store)["rsi_14"] != 0.0).all()
    assert (read_features("005930", "1d", None, None, store, feature_set="ta-v0-test")["rsi_14"] == 0).all()
    ts = feats["ts"].iloc[-5:].reset_index(drop=True)
    window = read_features("005930", "1d", ts[0], ts[4], store)
    assert window["ts"].tolist() == ts[:4].tolist()
    assert read_features("005930", "1m", None, None, store).empty


def test_nothing_to_write_during_the_warm_up(store: Engine, make_bars: Callable[..., pd.DataFrame]) -> None:
    feats = build_features(make_bars(n=WARMUP_BARS - 1))
    assert np.isnan(feats[FEATURE_COLUMNS].to_numpy()).all()
    assert upsert_features(feats, store) == 0
    assert _count(store) == 0
