"""Fixtures for the report tests: Data Docs of two real validation runs (one with failing expectations) and
one headless Chromium for the session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.reports.browser import require_chromium, start_chromium
from tests.reports.factories import DataDocs, render_data_docs


@pytest.fixture(scope="session")
def data_docs(tmp_path_factory: pytest.TempPathFactory) -> DataDocs:
    """Data Docs rendered by the pipeline's own validation (real GX) for a clean and a broken batch."""
    return render_data_docs(tmp_path_factory.mktemp("data_docs"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless and offline, driven by Selenium through ``/usr/bin/chromedriver``."""
    require_chromium()
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()
