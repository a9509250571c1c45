"""Offline Data Docs on hand-written pages (gaps found by mutation testing, ``tools/mutation.py``): which
addresses are assets, how each is pointed at its local copy, the favicon repair, the SRI attributes, which
files a run rewrites, the vendored build's install and the warning about what stays external.

No GX run here: a Data Docs render costs about a minute on a busy machine (tests/reports renders one)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.validation import offline
from pipeline.validation.offline import (
    MANIFEST,
    PACKAGES,
    SITE_VENDOR,
    Package,
    external_asset_refs,
    make_offline,
    rewrite,
    site_path,
    vendored_files,
)
from tests.logs import ModuleRecords, module_records

LOGGER = "pipeline.validation.offline"
JQUERY = "https://code.jquery.com/jquery-3.7.1.min.js"
JQUERY_LOCAL = "static/vendor/jquery-3.7.1/dist/jquery.min.js"
VEGA = "https://cdn.jsdelivr.net/npm/vega@5"
VEGA_LOCAL = "static/vendor/vega-5.33.1/build/vega.min.js"
LOGO = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png"


@pytest.fixture
def records() -> Iterator[ModuleRecords]:
    with module_records(LOGGER) as handler:
        yield handler


@pytest.fixture
def vendor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small stand-in for ``vendor/``: its manifest, one script and a stylesheet that names a CDN."""
    folder = tmp_path / "vendor"
    (folder / "jquery-3.7.1" / "dist").mkdir(parents=True)
    (folder / "jquery-3.7.1" / "dist" / "jquery.min.js").write_text("/* jq */")
    (folder / "theme.css").write_text(f"a{{background:url({LOGO})}}")
    (folder / MANIFEST).write_text(json.dumps({"files": {"jquery-3.7.1/dist/jquery.min.js": "ab12"}}))
    monkeypatch.setattr(offline, "VENDOR_DIR", folder)
    return folder


# --- addresses -------------------------------------------------------------------------------------------


def test_a_package_folder_is_its_name_without_scope_and_its_version() -> None:
    assert PACKAGES["jquery"].folder == "jquery-3.7.1"
    assert PACKAGES["@forevolve/bootstrap-dark"].folder == "bootstrap-dark-1.1.0"
    assert Package("a/b/c", "1", (), "").folder == "c-1"


def test_site_path_ignores_query_fragment_and_spaces_and_knows_the_gx_logos() -> None:
    assert site_path(f" {JQUERY}?v=3#top ") == JQUERY_LOCAL
    assert site_path(f"{VEGA}#x") == VEGA_LOCAL
    assert site_path(f"{JQUERY}?a=1?b=2") == JQUERY_LOCAL  # the query starts at the first ?
    assert site_path(f"{VEGA}#a#b") == VEGA_LOCAL  # the fragment at the first #
    assert site_path(f"{LOGO}?a=1") == "static/images/logo-long.png"
    fonts = "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css"
    assert site_path(fonts) == "static/vendor/fontawesome-free-6.6.0/css/all.min.css"
    assert site_path("https://cdn.example.com/x.js") is None
    assert site_path("https://code.jquery.com/jquery-3.7.0.min.js") is None


def test_external_assets_are_what_tags_and_css_load_not_links_or_local_files() -> None:
    page = (
        f'<SCRIPT type="text/javascript" SRC="{JQUERY}"></SCRIPT>\n'
        "<link rel='stylesheet' href='//cdn.example.com/a.css'>\n"
        '<img alt="x" src = "HTTP://img.example.com/i.png">\n'
        '<script src="static/local.js"></script>\n'
        '<a href="https://greatexpectations.io">GX</a>\n'
        "<style>.a{background:url( 'https://x.example.com/b.png' )} .b{background:url(c.png)}</style>\n"
        '<div style="background:url(https://y.example.com/d.png)"></div>\n'
    )
    assert external_asset_refs(page) == [
        JQUERY,
        "//cdn.example.com/a.css",
        "HTTP://img.example.com/i.png",
        "https://x.example.com/b.png",
        "https://y.example.com/d.png",
    ]
    assert external_asset_refs("<p>https://x.example.com/plain.js</p>") == []


# --- rewriting a page ------------------------------------------------------------------------------------


def test_tags_and_css_urls_point_at_local_copies_keeping_their_quotes(tmp_path: Path) -> None:
    page = tmp_path / "validations" / "bars" / "p.html"
    html = (
        f"<script src='{JQUERY}' integrity='sha384-x' crossorigin></script>\n"
        f'<img class="logo" src="{LOGO}" alt="GX">\n'
        f'<style>.a{{background:url( {LOGO} )}} .b{{background:url("{VEGA}")}}</style>\n'
    )
    out, unknown = rewrite(html, file=page, site=tmp_path)
    assert out == (
        f"<script src='../../{JQUERY_LOCAL}'></script>\n"
        '<img class="logo" src="../../static/images/logo-long.png" alt="GX">\n'
        "<style>.a{background:url( ../../static/images/logo-long.png)} "
        f'.b{{background:url("../../{VEGA_LOCAL}")}}</style>\n'
    )
    assert unknown == []


def test_unknown_assets_stay_with_their_integrity_and_are_reported_in_order(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    html = (
        '<script src="https://cdn.example.com/a.js" integrity="sha384-a" crossorigin="anonymous"></script>\n'
        "<style>.x{background:url(https://cdn.example.com/b.png)}</style>\n"
        f'<link href="{VEGA}" integrity="sha384-v" rel="x">\n'
    )
    out, unknown = rewrite(html, file=page, site=tmp_path)
    assert unknown == ["https://cdn.example.com/a.js", "https://cdn.example.com/b.png"]
    assert '<script src="https://cdn.example.com/a.js" integrity="sha384-a" crossorigin="anonymous">' in out
    assert "url(https://cdn.example.com/b.png)" in out
    assert f'<link href="{VEGA_LOCAL}" rel="x">' in out  # a known one loses its integrity


def test_a_static_reference_one_folder_too_high_is_repaired_others_left_alone(tmp_path: Path) -> None:
    (tmp_path / "static" / "images").mkdir(parents=True)
    (tmp_path / "static" / "images" / "favicon.ico").write_bytes(b"ico")
    (tmp_path / "static" / "styles").mkdir()
    (tmp_path / "static" / "styles" / "ok.css").write_text("")
    (tmp_path / "static" / "styles" / "static").mkdir()
    (tmp_path / "static" / "styles" / "static" / "deep.css").write_text("")
    page = tmp_path / "validations" / "bars" / "p.html"
    page.parent.mkdir(parents=True)
    (page.parent / "static").mkdir()
    (page.parent / "static" / "here.css").write_text("")
    html = (
        '<link rel="icon" href="../../../static/images/favicon.ico?v=1" integrity="x">\n'  # too high
        '<link href="../../static/styles/ok.css">\n'  # resolves: kept
        '<link href="static/here.css">\n'  # resolves beside the page: kept
        '<link href="../../../static/images/missing.ico">\n'  # no such file in the site
        '<link href="/static/images/favicon.ico">\n'  # absolute: not touched
        '<img src="data:image/png;static/images/favicon.ico">\n'  # a data address
        '<link href="../../../images/favicon.ico">\n'  # not under static/
        "<style>.a{background:url(../../../static/images/favicon.ico)}</style>\n"
        '<link href="../../../static/images/favicon.ico?v=1?w=2">\n'  # the query starts at the first ?
        '<link href="../../../static/images/favicon.ico#a#b">\n'  # the fragment at the first #
        '<link href="../../../static/styles/static/deep.css">\n'  # from the first static/ on
    )
    out, unknown = rewrite(html, file=page, site=tmp_path)
    lines = out.splitlines()
    assert lines[0] == '<link rel="icon" href="../../static/images/favicon.ico">'
    assert lines[1:7] == html.splitlines()[1:7]
    assert lines[7] == "<style>.a{background:url(../../static/images/favicon.ico)}</style>"
    assert lines[8:] == [
        '<link href="../../static/images/favicon.ico">',
        '<link href="../../static/images/favicon.ico">',
        '<link href="../../static/styles/static/deep.css">',
    ]
    assert unknown == []


# --- the site ----------------------------------------------------------------------------------------


def _page(path: Path, body: str, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_the_vendored_build_is_installed_once_and_again_when_it_changes(vendor: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    assert make_offline(site) == []
    installed = site / SITE_VENDOR
    assert (installed / "jquery-3.7.1" / "dist" / "jquery.min.js").read_text() == "/* jq */"
    assert (installed / MANIFEST).read_bytes() == (vendor / MANIFEST).read_bytes()
    (installed / "jquery-3.7.1" / "dist" / "jquery.min.js").write_text("changed by hand")
    make_offline(site)
    assert (
        installed / "jquery-3.7.1" / "dist" / "jquery.min.js"
    ).read_text() == "changed by hand"  # same build
    (vendor / MANIFEST).write_text(json.dumps({"files": {}}))
    make_offline(site)
    assert (installed / "jquery-3.7.1" / "dist" / "jquery.min.js").read_text() == "/* jq */"  # a new build


def test_a_run_rewrites_its_pages_and_stylesheets_at_or_after_since_and_nothing_else(
    vendor: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    script = f'<script src="{JQUERY}"></script>'
    site.mkdir()
    make_offline(site)  # installs the vendored build: from now on only what a run wrote is reread
    # Pages are walked in sorted order: the skipped older page comes before the ones to rewrite.
    old = _page(site / "validations" / "a-old.html", script, mtime=1_000.0)
    edge = _page(site / "validations" / "b-edge.html", script, mtime=2_000.0)
    css = _page(site / "static" / "styles" / "x.css", f"a{{background:url({LOGO})}}", mtime=3_000.0)
    js = _page(site / "static" / "x.js", f'"{JQUERY}"', mtime=3_000.0)
    (site / "folder.html").mkdir()  # not a file: skipped
    assert make_offline(site, since=2_000.0) == []
    assert old.read_text() == script  # older than the run: not reread
    assert edge.read_text() == f'<script src="../{JQUERY_LOCAL}"></script>'
    assert css.read_text() == "a{background:url(../images/logo-long.png)}"
    assert js.read_text() == f'"{JQUERY}"'  # only pages and stylesheets
    assert (
        site / SITE_VENDOR / "theme.css"
    ).read_text() == f"a{{background:url({LOGO})}}"  # vendor untouched


def test_a_new_vendored_build_rewrites_every_page_whatever_since(vendor: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    old = _page(site / "old.html", f'<script src="{JQUERY}"></script>\n<p>한국거래소</p>', mtime=1_000.0)
    untouched = _page(site / "plain.html", "<p>nothing external</p>", mtime=1_000.0)
    assert make_offline(site, since=5_000.0) == []
    assert old.read_text(encoding="utf-8") == f'<script src="{JQUERY_LOCAL}"></script>\n<p>한국거래소</p>'
    assert untouched.stat().st_mtime == 1_000.0  # unchanged text: not written


def test_external_assets_left_in_place_are_returned_and_warned_about(
    vendor: Path, tmp_path: Path, records: ModuleRecords
) -> None:
    site = tmp_path / "site"
    for i in range(6):
        _page(site / "v" / f"p{i}.html", f'<script src="https://cdn.example.com/{i}.js"></script>')
    _page(site / "index.html", f'<script src="{JQUERY}"></script>')
    left = make_offline(site)
    assert left == [f"v/p{i}.html: https://cdn.example.com/{i}.js" for i in range(6)]
    shown = [f"v/p{i}.html: https://cdn.example.com/{i}.js" for i in range(5)]
    assert records.lines == [
        (logging.WARNING, f"Data Docs still load 6 external assets (no local copy known): {shown}")
    ]
    records.lines.clear()
    assert make_offline(site / "v" / "none") == [] and records.lines == []  # nothing left: no warning


def test_vendored_files_are_the_manifest_entries(vendor: Path) -> None:
    assert vendored_files() == {"jquery-3.7.1/dist/jquery.min.js": "ab12"}
