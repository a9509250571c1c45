"""What the data DAGs share, defined once: the Assets that link them and the schedule time zone.
Imported by every DAG file that needs them (Airflow puts this folder, the DAG bundle, on ``sys.path``)."""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

#: KRX schedules run on Korean time. Equal to ``pipeline.market.TZ_NAME`` (tests/dags checks it): not
#: imported from there because that pulls pandas into every DAG-file parse.
TZ_NAME = "Asia/Seoul"

#: Bars in the market store; each event's extra is a ``pipeline.ingest.contracts.BarsWindowExtra``.
BARS = Asset(name="bars", uri="krx://market-store/bars")
#: Features in the market store (per feature-set version).
FEATURES = Asset(name="features", uri="krx://market-store/features")
#: What ingest tasks write through: an event for ``BARS`` is added only when bars landed, so an empty
#: ingest emits none (an Asset outlet would emit one on every success).
BARS_WRITTEN = AssetAlias(name="bars-written")
#: Regime labels of each model spec in the market store (``regimes`` table); each event's extra is a
#: ``pipeline.registry.contracts.RegimesExtra`` naming the specs that were (re)fitted.
REGIMES = Asset(name="regimes", uri="krx://market-store/regimes")
#: What ``cluster_regimes`` writes through: an event for ``REGIMES`` only when some spec was fitted.
REGIMES_WRITTEN = AssetAlias(name="regimes-written")
