"""Typed settings for every entry point: one object, env prefix ``KRX_``, optional ``.env`` file."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.market.kinds import CONTINUOUS_FUTURES, InstrumentKind, classify, validate_symbol

KisEnv = Literal["sim", "vts", "real"]

#: Public base URLs of the KIS REST API (shared/kis/KIS_API_SPEC.md §1).
KIS_BASE_URLS: dict[str, str] = {
    "real": "https://openapi.koreainvestment.com:9443",
    "vts": "https://openapivts.koreainvestment.com:29443",
}


class Settings(BaseSettings):
    """Everything configurable about krx-rl-trader. Override any field with ``KRX_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="KRX_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        use_attribute_docstrings=True,
    )

    # --- storage ---------------------------------------------------------------------------
    var_dir: Path = Path("var")
    """Folder for embedded state: SQLite stores, token cache, reports, MLflow and Airflow files."""

    database_url: str | None = None
    """SQLAlchemy URL of the market store. Unset: SQLite at ``<var_dir>/market.db``.
    Example: ``postgresql+psycopg://postgres@127.0.0.1:5432/krx``."""

    db_echo: bool = False
    """Log every SQL statement (debugging only)."""

    upsert_chunk_rows: int = Field(1_000_000, gt=0)
    """Rows sent to the database per COPY/INSERT round during an upsert (bounds memory)."""

    # --- KIS broker ------------------------------------------------------------------------
    kis_env: KisEnv = "sim"
    """Which KIS target to talk to: ``sim`` (local simulator), ``vts`` (paper) or ``real``."""

    kis_allow_real: bool = False
    """Explicit opt-in required before anything talks to the real (money) KIS domain."""

    kis_app_key: SecretStr | None = None
    """KIS app key (36 characters). Never logged."""

    kis_app_secret: SecretStr | None = None
    """KIS app secret (180 characters). Never logged."""

    kis_account_no: SecretStr | None = None
    """KIS account number, the 8-digit CANO. Never logged."""

    kis_product_code: str = "01"
    """Account product code (ACNT_PRDT_CD): ``01`` stocks, ``03`` futures/options."""

    kis_base_url: str | None = None
    """Override the REST base URL of ``kis_env`` only (the simulator defaults to
    ``http://127.0.0.1:<sim_port>``). A connection of another environment needs its own URL."""

    kis_allow_real_custom_host: bool = False
    """Let env ``real`` use a base URL that is not KIS's real host (your own proxy). Real money."""

    kis_rate_limit_real: float = Field(20.0, gt=0)
    """REST calls per second per app key on the real domain (KIS notice 2025-08-07)."""

    kis_rate_limit_vts: float = Field(2.0, gt=0)
    """REST calls per second per app key on the paper (VTS) domain."""

    kis_rate_limit_sim: float = Field(20.0, gt=0)
    """REST calls per second the client allows itself against the local simulator (its default limit
    for the default key is KIS's real one, 20/s)."""

    kis_timeout_s: float = Field(10.0, gt=0)
    """HTTP timeout for one KIS call, seconds."""

    kis_token_cache: Path | None = None
    """Token cache file shared by all processes (mode 0600). Unset: ``<var_dir>/kis_token.json``."""

    kis_futures_account_no: SecretStr | None = None
    """KIS futures/options account number (8-digit CANO). Unset: ``kis_account_no``. Never logged."""

    kis_futures_product_code: str = "03"
    """Product code of the futures/options account (ACNT_PRDT_CD ``03``, spec §7)."""

    kis_token_refresh_margin_s: float = Field(600.0, ge=0)
    """Re-issue the access token this many seconds before ``access_token_token_expired``."""

    kis_token_min_interval_s: float = Field(61.0, ge=0)
    """Minimum seconds between two token issuances per app key (KIS allows 1/min, EGW00133)."""

    kis_read_retries: int = Field(4, ge=0)
    """Retries of a read (GET) after a temporary error, rate limit (EGW00201) or transport error."""

    kis_backoff_max_s: float = Field(8.0, gt=0)
    """Upper bound of the exponential backoff (with jitter) between read retries, seconds."""

    kis_max_pages: int = Field(100, gt=0)
    """Most pages (연속조회) or chart windows one high-level call walks before stopping."""

    # --- simulator -------------------------------------------------------------------------
    sim_host: str = "127.0.0.1"
    """Interface the KIS simulator listens on."""

    sim_port: int = Field(8900, gt=0, lt=65536)
    """Port of the KIS simulator."""

    sim_seed: int = 7
    """Seed of the simulator's market generator: the same seed gives the same bars."""

    sim_db: Path | None = None
    """SQLite file of the simulator's ledger (accounts, orders, fills). Unset: ``<var_dir>/kis_sim.db``."""

    sim_clock_speed: float = Field(1.0, gt=0)
    """Simulator clock speed: 1 = wall time, 60 = one simulated minute per real second."""

    sim_clock_start: str | None = None
    """Simulator clock start (ISO datetime, KST if naive). Unset: the current wall time."""

    sim_csv_dir: Path | None = None
    """Folder of ``<symbol>.csv`` daily / ``<symbol>_1m.csv`` minute bars served instead of generated ones."""

    sim_token_interval_s: float = Field(60.0, ge=0)
    """Simulator: minimum seconds between token issuances per app key (EGW00133 below it)."""

    sim_token_ttl_s: float = Field(86_400.0, gt=0)
    """Simulator: lifetime of an access token, seconds."""

    sim_rate_limit: float | None = Field(None, gt=0)
    """Simulator: REST calls per second per app key before EGW00201, for every key. Unset: KIS's own
    limits by the key's environment, 20/s real and 2/s paper."""

    sim_initial_cash: int = Field(100_000_000, gt=0)
    """Simulator: cash (KRW) credited to an account the first time it is used."""

    sim_open_grace_s: float = Field(0.0, ge=0, le=59)
    """A market order placed at most this many seconds into a minute bar fills at that bar's open (the
    trading job's decide-at-close, fill-at-next-open rule); later ones fill at the next bar's open."""

    # --- universe --------------------------------------------------------------------------
    stock_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["005930", "000660", "035420", "005380", "051910"]
    )
    """KRX stock codes to trade and ingest.
    Default: Samsung Electronics, SK hynix, NAVER, Hyundai Motor, LG Chem."""

    etf_symbols: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Codes to treat as ETFs (no sell tax, ETF ticks) besides the ones ``pipeline.market`` knows."""

    futures_symbol: str = CONTINUOUS_FUTURES
    """Symbol under which the back-adjusted continuous KOSPI200 front-month futures series is stored."""

    futures_roll_days: int = Field(3, ge=0, le=20)
    """Roll to the next quarterly contract this many sessions before the last trading day."""

    futures_adjust: Literal["difference", "ratio"] = "ratio"
    """Back-adjustment of the continuous futures series at each roll."""

    index_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["KOSPI", "KOSDAQ", "KOSPI200"]
    )
    """Indices to ingest (daily)."""

    intraday_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["005930", CONTINUOUS_FUTURES]
    )
    """Symbols whose 1-minute bars are ingested every session (``KOSPI200F`` = the front-month future)."""

    validation_max_failure_rate: float = Field(0.05, ge=0, le=1)
    """A validation run fails when more than this share of its rows is quarantined."""

    ingest_history_days: int = Field(730, gt=0)
    """Calendar days of daily history the first ingest run backfills."""

    ingest_minute_sessions: int = Field(20, ge=0)
    """Past XKRX sessions of 1-minute bars of ``intraday_symbols`` the minute ingest backfills when they
    are not stored completely (0: only the current session); never beyond the broker's minute-bar
    retention (KIS: about a year), to which it is clamped with a warning."""

    # --- tracking --------------------------------------------------------------------------
    mlflow_tracking_uri: str | None = None
    """MLflow tracking URI. Unset: SQLite at ``<var_dir>/mlflow.db``."""

    mlflow_artifact_root: str | None = None
    """Artifact location of the experiments krx creates (a path or URI). Unset: ``<var_dir>/mlflow-artifacts``
    (absolute, never relative to the working directory)."""

    model_specs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """JSON overrides of the model specs by name (``pipeline.registry.specs``), e.g.
    ``{"stocks-1d": {"seeds": [0, 1, 2, 3, 4]}}``; an unknown name defines a new spec."""

    promotion_gate: dict[str, Any] = Field(default_factory=dict)
    """JSON overrides of the promotion gate rules (``pipeline.registry.gate.GateRules``), e.g.
    ``{"min_dsr_prob": 0.9}``."""

    # --- serving ---------------------------------------------------------------------------
    serving_specs: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Model specs the BentoML service serves (comma list or JSON list); each must have a ``champion``
    loaded before ``/readyz`` passes. Empty: every spec that has a registered model."""

    serving_poll_s: float = Field(10.0, gt=0)
    """Seconds between two checks of each served model's ``champion`` alias (a move is loaded, then
    swapped in)."""

    serving_api_key: SecretStr | None = None
    """API key the service requires in header ``X-API-Key`` on every route except ``/livez``,
    ``/readyz`` and ``/metrics``. Unset: no key needed. Never logged."""

    serving_host: str = "127.0.0.1"
    """Interface ``krx serve`` listens on."""

    serving_port: int = Field(3000, gt=0, lt=65536)
    """Port ``krx serve`` listens on."""

    serving_workers: int = Field(1, ge=1)
    """Worker processes of the service (each loads every served model)."""

    serving_max_bars: int = Field(2_000, ge=2)
    """Most bars one window of a request may have (a longer window is refused with 400)."""

    serving_max_batch: int = Field(512, ge=1)
    """Most windows one ``/predict_batch`` call (and one adaptive batch) may carry."""

    # --- trading ---------------------------------------------------------------------------
    trading_mode: Literal["sim", "vts", "real", "dry-run"] = "sim"
    """Broker of the trading job: ``sim`` (the local KIS simulator), ``vts`` (KIS paper trading), ``real``
    (refuses to start without ``KRX_TRADING_REAL_OPT_IN`` and hard caps in ``KRX_TRADING_RISK``) or
    ``dry-run`` (decides and records the order it would send; sends nothing)."""

    trading_real_opt_in: bool = False
    """Explicit opt-in to trade real money (mode ``real``)."""

    trading_account: str = Field("main", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    """Alias of the account in the store and in logs (never the account number)."""

    trading_specs: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["kospi200f-1d"])
    """Model specs the trading job trades (comma list or JSON list); each asks the served ``champion``."""

    trading_server_url: str | None = None
    """Base URL of the model server (default ``http://KRX_SERVING_HOST:KRX_SERVING_PORT``); the request
    carries ``KRX_SERVING_API_KEY`` when it is set."""

    trading_server_timeout_s: float = Field(5.0, gt=0)
    """Seconds to wait for the model server's answer (no answer: no new risk)."""

    trading_daily_history_days: int = Field(600, ge=30)
    """Calendar days of daily bars sent with each decision of a daily spec (features and the agent's
    memory warm up on them)."""

    trading_minute_sessions: int = Field(1, ge=1, le=5)
    """Sessions of 1-minute bars sent with each decision of a 1-minute spec. 1: the intraday model's
    context is today's session (its first decision comes once features and window have warmed up), which
    makes live decisions equal the backtest's over the same session."""

    trading_order_type: Literal["market", "limit"] = "market"
    """Order type sent: ``market`` matches the backtest's fill (next bar's open); ``limit`` prices
    ``KRX_TRADING_LIMIT_OFFSET_TICKS`` ticks through the decision price."""

    trading_limit_offset_ticks: int = Field(2, ge=0)
    """Ticks above (buys) or below (sells) the decision price of a limit order."""

    trading_cancel_after_s: float = Field(120.0, gt=0)
    """Seconds after which the unfilled rest of an order is cancelled."""

    trading_resolve_window_s: float = Field(300.0, gt=0)
    """Seconds around an order intent within which a broker order of the same symbol, side and quantity is
    taken to be it, when an outcome is unknown (a crash, a lost response)."""

    trading_reconcile_halt_runs: int = Field(3, ge=1)
    """Consecutive runs with a difference between the broker and the store that engage the kill switch."""

    trading_on_model_failure: Literal["hold", "flatten"] = "hold"
    """No model answer or a non-finite one: ``hold`` the position or ``flatten`` it (no new risk either
    way)."""

    trading_flatten_before_close_min: int | None = Field(5, ge=0)
    """Intraday (1-minute) specs close their position this many minutes before the session ends; unset:
    hold overnight."""

    trading_risk: dict[str, Any] = Field(default_factory=dict)
    """JSON overrides of the risk limits (``pipeline.trading.risk.RiskLimits``), e.g.
    ``{"max_order_quantity": 5, "daily_loss_limit": 3000000}``."""

    log_level: str = "INFO"
    """Log level of the ``krx`` CLI and pipeline code."""

    log_format: Literal["text", "json"] = "text"
    """Log lines of the ``krx`` CLI: ``text`` for a person, ``json`` for a log shipper (one object per line
    with ts, level, logger, message and the run's context: DAG, task, run id, account, symbol, order key)."""

    metrics_pushgateway: str | None = None
    """Prometheus Pushgateway (``host:port`` or URL) a trading run pushes its metrics to (job ``krx_trading``,
    grouped by account). Unset: metrics only go to ``<var_dir>/metrics/trading.prom``."""

    @field_validator("serving_specs", "trading_specs", mode="before")
    @classmethod
    def _split_specs(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return (
                json.loads(text)
                if text.startswith("[")
                else [s.strip() for s in text.split(",") if s.strip()]
            )
        return value

    @field_validator("stock_symbols", "etf_symbols", "index_symbols", "intraday_symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [s.strip() for s in text.split(",") if s.strip()]
        return value

    @field_validator("stock_symbols", "etf_symbols", "index_symbols", "intraday_symbols")
    @classmethod
    def _valid_symbols(cls, value: list[str]) -> list[str]:
        return [validate_symbol(s) for s in value]

    @field_validator("futures_symbol")
    @classmethod
    def _valid_futures_symbol(cls, value: str) -> str:
        return validate_symbol(value)

    def kind_of(self, symbol: str) -> InstrumentKind:
        """The instrument kind of ``symbol`` under these settings (see :func:`pipeline.market.classify`)."""
        return classify(
            symbol, futures=(self.futures_symbol,), indices=self.index_symbols, etfs=self.etf_symbols
        )

    # --- derived ---------------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        """The market store URL, defaulting to SQLite under ``var_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'market.db').resolve()}"

    @property
    def resolved_mlflow_uri(self) -> str:
        """The MLflow tracking URI, defaulting to SQLite under ``var_dir``."""
        return self.mlflow_tracking_uri or f"sqlite:///{(self.var_dir / 'mlflow.db').resolve()}"

    @property
    def resolved_token_cache(self) -> Path:
        """Where the shared KIS token cache lives."""
        return self.kis_token_cache or self.var_dir / "kis_token.json"

    @property
    def resolved_kis_base_url(self) -> str:
        """REST base URL for ``kis_env`` unless overridden."""
        if self.kis_base_url:
            return self.kis_base_url.rstrip("/")
        if self.kis_env == "sim":
            return f"http://{self.sim_host}:{self.sim_port}"
        return KIS_BASE_URLS[self.kis_env]

    def masked(self) -> dict[str, Any]:
        """Settings as a plain dict with every secret replaced by ``**********`` (or None)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********"
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        out["resolved_database_url"] = mask_url(self.resolved_database_url)
        out["resolved_kis_base_url"] = self.resolved_kis_base_url
        return out


def mask_url(url: str) -> str:
    """Hide the password in a database URL (``user:***@host``)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as-is minus anything after '@'
        return url.split("@")[-1]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process (``get_settings.cache_clear()`` re-reads)."""
    return Settings()
