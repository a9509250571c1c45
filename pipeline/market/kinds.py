"""What a symbol is: the instrument kinds, one ``classify``, the symbol rules and the KST time zone."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from zoneinfo import ZoneInfo

#: Korea Standard Time (UTC+9, no daylight saving): every session, bar date and schedule is in this zone.
TZ_NAME = "Asia/Seoul"
KST = ZoneInfo(TZ_NAME)


class InstrumentKind(StrEnum):
    """The kinds of instrument the system knows. Values are the spellings stored and logged everywhere."""

    STOCK = "stock"
    ETF = "etf"
    INDEX = "index"
    FUTURES = "futures"

    @property
    def tradable_long_short(self) -> bool:
        """Only futures may be held short in a cash/futures account."""
        return self is InstrumentKind.FUTURES


#: KOSPI200 futures short codes: ``101`` + year letter + 2-digit month, e.g. ``101W09`` (spec §6).
CONTRACT_CODE = re.compile(r"^101[A-Z]\d{2}$")
#: The back-adjusted continuous KOSPI200 futures series stored by the ingest (``KRX_FUTURES_SYMBOL``).
CONTINUOUS_FUTURES = "KOSPI200F"
#: KIS index codes for the index names we quote (spec §3, ``FID_INPUT_ISCD`` of the index TRs).
INDEX_CODES: dict[str, str] = {"KOSPI": "0001", "KOSDAQ": "1001", "KOSPI200": "2001"}
#: KRX short codes of listed stocks and ETFs: six characters; new listings may carry letters (``0001A0``).
SHORT_CODE = re.compile(r"^[0-9][0-9A-Z]{5}$")
#: Free-form symbols (CSV imports of other data, tests): letters, digits, ``.``, ``_``, ``-``, at most 20.
FREE_FORM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,19}$")
#: ETFs we know by code (the real-data set in shared/data/krx and the large KOSPI200 trackers); more
#: come from the ``KRX_ETF_SYMBOLS`` setting. KRX ETF codes look like stock codes, so a list is needed.
KNOWN_ETFS = frozenset(
    {
        "069500",  # KODEX 200
        "102110",  # TIGER 200
        "091160",  # KODEX Semiconductor
        "091180",  # KODEX Autos
        "102960",  # KODEX Machinery & Equipment
        "102970",  # KODEX Securities
        "117460",  # KODEX Energy & Chemicals
        "139230",  # TIGER 200 Heavy Industries
        "143860",  # TIGER Healthcare
        "229200",  # KODEX KOSDAQ150
    }
)


class SymbolError(ValueError):
    """A symbol that is neither a KRX code nor a valid free-form name."""


def is_contract_code(symbol: str) -> bool:
    """True for a single KOSPI200 futures contract code such as ``101W09``."""
    return CONTRACT_CODE.match(symbol) is not None


def validate_symbol(symbol: object) -> str:
    """Return ``symbol`` if it is a KRX short code, a futures contract, an index name or a free-form name
    (``FREE_FORM``: letters, digits, ``.``, ``_``, ``-``; 1-20 characters, starting alphanumeric); raise
    :class:`SymbolError` naming the rule otherwise. Same answer on every storage backend."""
    if not isinstance(symbol, str) or not symbol:
        raise SymbolError(f"symbol must be a non-empty string, got {symbol!r}")
    if (
        SHORT_CODE.match(symbol)
        or is_contract_code(symbol)
        or symbol in INDEX_CODES
        or FREE_FORM.match(symbol)
    ):
        return symbol
    shown = symbol if len(symbol) <= 40 else symbol[:37] + "..."
    raise SymbolError(
        f"invalid symbol {shown!r}: use a KRX code (e.g. 005930, 101W09, KOSPI200) or 1-20 letters, digits, "
        "'.', '_' or '-' starting with a letter or digit"
    )


def classify(
    symbol: str,
    *,
    futures: Iterable[str] = (CONTINUOUS_FUTURES,),
    indices: Iterable[str] = tuple(INDEX_CODES),
    etfs: Iterable[str] = (),
) -> InstrumentKind:
    """The kind of ``symbol``: futures (a contract code or a continuous series named in ``futures``),
    index (a name in ``indices`` or a KIS index code), ETF (``KNOWN_ETFS`` or ``etfs``), else stock."""
    if is_contract_code(symbol) or symbol in set(futures):
        return InstrumentKind.FUTURES
    if symbol in set(indices) or symbol.upper() in INDEX_CODES or symbol in INDEX_CODES.values():
        return InstrumentKind.INDEX
    if symbol in KNOWN_ETFS or symbol in set(etfs):
        return InstrumentKind.ETF
    return InstrumentKind.STOCK
