"""Data Docs load nothing from the network: every script, stylesheet, font and image is a local file at
the version GX's templates name, pinned by infra/web's npm lock and committed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import great_expectations
import pytest

from pipeline.validation.offline import (
    MANIFEST,
    PACKAGES,
    SITE_VENDOR,
    VENDOR_DIR,
    external_asset_refs,
    make_offline,
    rewrite,
    site_path,
)
from tests.reports.factories import DataDocs

ROOT = Path(__file__).parents[2]
WEB = ROOT / "infra" / "web"
CSS_URL = re.compile(r"""url\(\s*["']?([^)"']+)["']?\s*\)""")


class _Assets(HTMLParser):
    """Collects what a page loads: ``src``/``href`` of script, link and img tags, and inline CSS urls."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        if tag in ("script", "link", "img"):
            self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        style = dict(attrs).get("style") or ""
        self.refs += CSS_URL.findall(style)

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.refs += CSS_URL.findall(data)


def _loads(file: Path) -> list[str]:
    """Every address ``file`` (a page or a stylesheet) makes the browser load."""
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".css":
        return [u for u in CSS_URL.findall(text) if not u.startswith("data:")]
    parser = _Assets()
    parser.feed(text)
    return [u for u in parser.refs if not u.startswith("data:")]


def _site_files(site: Path) -> list[Path]:
    return [p for p in site.rglob("*") if p.suffix in (".html", ".css")]


def test_rendered_data_docs_load_no_asset_from_the_network(data_docs: DataDocs) -> None:
    files = _site_files(data_docs.site)
    assert {"index.html", "bars.html", "all.min.css", "bootstrap.min.css"} <= {f.name for f in files}
    external = {
        f"{f.relative_to(data_docs.site)}: {u}"
        for f in files
        for u in _loads(f)
        if re.match(r"(https?:)?//", u.strip(), re.I)
    }
    assert external == set()
    assert all(external_asset_refs(f.read_text(encoding="utf-8")) == [] for f in files)


def test_every_local_asset_a_page_loads_exists(data_docs: DataDocs) -> None:
    missing = []
    for file in _site_files(data_docs.site):
        for ref in _loads(file):
            target = (file.parent / ref.split("?")[0].split("#")[0]).resolve()
            # Font Awesome's .ttf fallbacks (for browsers without WOFF2) are deliberately not vendored.
            if not target.is_file() and not (file.name == "all.min.css" and target.suffix == ".ttf"):
                missing.append(f"{file.relative_to(data_docs.site)}: {ref}")
    assert missing == []
    page = data_docs.page("broken").read_text(encoding="utf-8")
    assert "integrity=" not in page and "crossorigin" not in page  # SRI cannot be checked from file://


def test_the_vendored_files_are_the_npm_lock_build_with_their_licences() -> None:
    package_json = json.loads((WEB / "package.json").read_text())
    assert package_json["dependencies"] == {p.name: p.version for p in PACKAGES.values()}
    lock = json.loads((WEB / "package-lock.json").read_text())["packages"]
    assert {name: lock[f"node_modules/{name}"]["version"] for name in PACKAGES} == package_json[
        "dependencies"
    ]
    check = subprocess.run(
        [sys.executable, str(WEB / "vendor.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr  # MANIFEST.json: the lock's hash and every file's
    for package in PACKAGES.values():
        folder = VENDOR_DIR / package.folder
        assert all((folder / f).is_file() for f in package.files), package.name
        if package.licence:
            assert (folder / package.licence).is_file(), package.name
        else:  # popper.js: the MIT notice heads the file; vega: its bundled packages' BSD licences
            header = (folder / package.files[0]).read_text(errors="replace")[:400]
            assert "License" in header or (folder / "DEPENDENCY_LICENSES.txt").is_file(), package.name
    size = sum(p.stat().st_size for p in VENDOR_DIR.rglob("*") if p.is_file())
    assert size < 3_000_000  # minified builds and the fonts they load, nothing else


def test_every_cdn_asset_in_the_gx_templates_has_a_local_copy() -> None:
    # A GX upgrade that adds a CDN script fails here, not on an air-gapped host.
    view = Path(great_expectations.__file__).parent / "render" / "view"
    templates = [*view.joinpath("templates").glob("*.j2"), *view.joinpath("static").rglob("*.css")]
    refs = {r for t in templates for r in external_asset_refs(t.read_text(encoding="utf-8")) if "{" not in r}
    assert len(refs) >= 15
    assert {r for r in refs if site_path(r) is None} == set()
    navbar = view.joinpath("templates", "top_navbar.j2").read_text()
    bucket = re.search(r'static_images_dir = "(https://[^"]+)"', navbar)
    assert bucket and site_path(bucket.group(1) + "logo-long.png") == "static/images/logo-long.png"


def test_a_page_is_pointed_at_the_local_copies_relative_to_its_folder(tmp_path: Path) -> None:
    page = tmp_path / "validations" / "bars" / "run" / "t" / "b.html"
    html = (
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>\n'
        '<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" '
        'integrity="sha384-x" crossorigin="anonymous"></script>\n'
        '<link rel="stylesheet" href="https://cdn.example.com/new.css">\n'
        "<style>.a{background:url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
        "full_logo_dark.png')}</style>\n"
        '<a href="https://greatexpectations.io">GX</a>\n'
    )
    out, unknown = rewrite(html, file=page, site=tmp_path)
    assert '<script src="../../../../static/vendor/jquery-3.7.1/dist/jquery.min.js"></script>' in out
    assert 'src="../../../../static/vendor/bootstrap-4.3.1/dist/js/bootstrap.min.js"></script>' in out
    assert "integrity" not in out and "crossorigin" not in out
    assert "url('../../../../static/images/logo-long.png')" in out
    assert unknown == ["https://cdn.example.com/new.css"]  # left in place and reported
    assert '<a href="https://greatexpectations.io">' in out  # a link to read, not an asset
    assert rewrite(out, file=page, site=tmp_path) == (out, unknown)  # idempotent


def test_an_existing_site_is_rewritten_whole_once_then_only_what_a_run_wrote(tmp_path: Path) -> None:
    cdn = '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>'
    old, new = tmp_path / "validations" / "old.html", tmp_path / "index.html"
    old.parent.mkdir()
    old.write_text(cdn)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert make_offline(tmp_path, since=time.time()) == []  # first time: the vendored build is new here
    assert "static/vendor/vega-5.33.1/build/vega.min.js" in old.read_text()
    assert (tmp_path / SITE_VENDOR / MANIFEST).is_file()
    old.write_text(cdn)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    new.write_text(cdn)
    make_offline(tmp_path, since=time.time() - 60)
    assert "static/vendor/" in new.read_text() and old.read_text() == cdn  # older pages are not reread


@pytest.mark.parametrize("run", ["clean", "broken"])
def test_the_validation_report_points_at_the_rendered_index(data_docs: DataDocs, run: str) -> None:
    assert data_docs.runs[run].data_docs_path == data_docs.site.resolve() / "index.html"
