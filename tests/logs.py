"""Capturing one module's log records in a test, whatever earlier tests did to logging."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class ModuleRecords(logging.Handler):
    """Collects (level, message) of the records a module's own logger emits."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@contextmanager
def module_records(name: str) -> Iterator[ModuleRecords]:
    """A handler on logger ``name`` itself (earlier tests may have disabled propagation or the logger),
    at DEBUG and enabled for the block; the logger's level, handlers and switch are restored after."""
    logger, handler = logging.getLogger(name), ModuleRecords()
    level, disabled = logger.level, logger.disabled
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.disabled = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled
