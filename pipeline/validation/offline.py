"""Data Docs that open without a network: the browser assets GX loads from CDNs, vendored at the exact
versions, and the post-render step that points every rendered page at those local copies.

GX 1.x renders pages that load jQuery, Bootstrap, bootstrap-table, popper.js, Font Awesome,
bootstrap-datepicker, bootstrap-dark and vega from public CDNs, and its logo from a public bucket; on an
air-gapped host the index's run table (built by bootstrap-table) never appears. The files live in
``vendor/`` beside this module (built from ``infra/web/package-lock.json`` by ``make web-assets``) and are
copied to ``static/vendor/`` of each Data Docs site.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

VENDOR_DIR = Path(__file__).with_name("vendor")
#: Where the vendored files go inside a Data Docs site (GX's own ``static/`` holds its images and styles).
SITE_VENDOR = "static/vendor"
MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class Package:
    """An npm package whose built files the pages load, pinned to the version GX's templates reference."""

    name: str
    version: str
    files: tuple[str, ...]
    """Paths inside the package that are vendored (the minified builds the pages use, fonts they load)."""
    licence: str
    """The package's licence file (``""``: none in the package; see the file's header or the licences of
    the packages it bundles, ``DEPENDENCY_LICENSES.txt``)."""

    @property
    def folder(self) -> str:
        """``jquery-3.7.1``: the package's folder under ``vendor/`` and ``static/vendor/``."""
        return f"{self.name.rsplit('/', 1)[-1]}-{self.version}"


_FA_FONTS = tuple(
    f"webfonts/fa-{n}.woff2" for n in ("brands-400", "regular-400", "solid-900", "v4compatibility")
)
PACKAGES: dict[str, Package] = {
    p.name: p
    for p in (
        Package("jquery", "3.7.1", ("dist/jquery.min.js",), "LICENSE.txt"),
        Package("popper.js", "1.12.9", ("dist/umd/popper.min.js",), ""),
        Package("bootstrap", "4.3.1", ("dist/css/bootstrap.min.css", "dist/js/bootstrap.min.js"), "LICENSE"),
        Package(
            "bootstrap-table",
            "1.19.1",
            (
                "dist/bootstrap-table.min.css",
                "dist/bootstrap-table.min.js",
                "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
                "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
            ),
            "LICENSE",
        ),
        Package(
            "bootstrap-datepicker",
            "1.9.0",
            ("dist/css/bootstrap-datepicker.min.css", "dist/js/bootstrap-datepicker.min.js"),
            "LICENSE",
        ),
        Package(
            "@forevolve/bootstrap-dark", "1.1.0", ("dist/css/bootstrap-prefers-dark.min.css",), "LICENSE"
        ),
        # The stylesheet loads ../webfonts/*.woff2 first; the .ttf fallbacks (for browsers without WOFF2)
        # are left out.
        Package("@fortawesome/fontawesome-free", "6.6.0", ("css/all.min.css", *_FA_FONTS), "LICENSE.txt"),
        # vega ships no licence file: its bundled vega-* packages carry the same BSD-3-Clause text.
        Package("vega", "5.33.1", ("build/vega.min.js",), ""),
        Package("vega-lite", "5.23.0", ("build/vega-lite.min.js",), "LICENSE"),
        Package("vega-embed", "6.29.0", ("build/vega-embed.min.js",), "LICENSE"),
    )
}

#: Every CDN address in GX 1.x's templates -> (package, file). ``vega@5`` etc. are what jsDelivr resolves
#: them to (the package's ``jsdelivr`` file); the non-minified bootstrap-dark sheet and bootstrap-table's
#: 1.19.0 filter-control sheet (rule for rule the same as 1.19.1's) are served by the minified 1.19.1 files.
_CDNJS = "https://cdnjs.cloudflare.com/ajax/libs"
_BT = "https://unpkg.com/bootstrap-table@"
_FILTER = "dist/extensions/filter-control/bootstrap-table-filter-control"
_JSDELIVR = "https://cdn.jsdelivr.net/npm"
_GX_BUCKET = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com"
CDN: dict[str, tuple[str, str]] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery", "dist/jquery.min.js"),
    f"{_CDNJS}/popper.js/1.12.9/umd/popper.min.js": ("popper.js", "dist/umd/popper.min.js"),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap",
        "dist/css/bootstrap.min.css",
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap",
        "dist/js/bootstrap.min.js",
    ),
    f"{_BT}1.19.1/dist/bootstrap-table.min.css": ("bootstrap-table", "dist/bootstrap-table.min.css"),
    f"{_BT}1.19.1/dist/bootstrap-table.min.js": ("bootstrap-table", "dist/bootstrap-table.min.js"),
    f"{_BT}1.19.1/{_FILTER}.min.js": ("bootstrap-table", f"{_FILTER}.min.js"),
    f"{_BT}1.19.0/{_FILTER}.css": ("bootstrap-table", f"{_FILTER}.min.css"),
    f"{_BT}1.19.0/{_FILTER}.min.css": ("bootstrap-table", f"{_FILTER}.min.css"),
    f"{_CDNJS}/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker",
        "dist/css/bootstrap-datepicker.min.css",
    ),
    f"{_CDNJS}/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker",
        "dist/js/bootstrap-datepicker.min.js",
    ),
    f"{_JSDELIVR}/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "@forevolve/bootstrap-dark",
        "dist/css/bootstrap-prefers-dark.min.css",
    ),
    f"{_CDNJS}/font-awesome/6.6.0/css/all.min.css": ("@fortawesome/fontawesome-free", "css/all.min.css"),
    f"{_JSDELIVR}/vega@5": ("vega", "build/vega.min.js"),
    f"{_JSDELIVR}/vega-lite@5": ("vega-lite", "build/vega-lite.min.js"),
    f"{_JSDELIVR}/vega-embed@6": ("vega-embed", "build/vega-embed.min.js"),
}
#: GX's logos in its public bucket -> its own copy, which it writes to ``static/images/`` of every site
#: (there is no local dark logo: dark mode shows the light one).
GX_IMAGES = {
    f"{_GX_BUCKET}/logo-long.png": "static/images/logo-long.png",
    f"{_GX_BUCKET}/full_logo_dark.png": "static/images/logo-long.png",
}

_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.I)
_TAG_URL = re.compile(r"""(\b(?:src|href)\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
# Subresource integrity needs a CORS fetch, which a page opened from file:// cannot make.
_SRI = re.compile(r"""\s+(?:integrity|crossorigin)(?:\s*=\s*(["']).*?\1)?(?=[\s/>])""", re.I | re.S)
_CSS_URL = re.compile(r"""(url\(\s*)(["']?)([^)"']*)\2(\s*\))""", re.I)
_EXTERNAL = re.compile(r"^\s*(?:https?:)?//", re.I)


def site_path(url: str) -> str | None:
    """The site-relative local copy of an external asset ``url`` (query ignored), None when unknown."""
    bare = url.split("?", 1)[0].split("#", 1)[0].strip()
    if bare in GX_IMAGES:
        return GX_IMAGES[bare]
    if bare in CDN:
        package, file = CDN[bare]
        return f"{SITE_VENDOR}/{PACKAGES[package].folder}/{file}"
    return None


def external_asset_refs(text: str) -> list[str]:
    """Every external (``http(s)://`` or ``//``) address a page or stylesheet loads: ``src``/``href`` of
    ``script``, ``link`` and ``img`` tags and CSS ``url()`` (links a reader clicks are not assets)."""
    refs = [m.group(3) for tag in _TAG.finditer(text) for m in _TAG_URL.finditer(tag.group(0))]
    refs += [m.group(3) for m in _CSS_URL.finditer(text)]
    return [r for r in refs if _EXTERNAL.match(r)]


def _repaired(url: str, *, file: Path, site: Path) -> str | None:
    """A relative ``.../static/...`` reference that misses its file, pointed at the site's ``static/``
    (GX 1.x links a validation page's favicon one folder too high); None when it resolves or is no such
    reference."""
    bare = url.split("?", 1)[0].split("#", 1)[0]
    if "static/" not in bare or ":" in bare or bare.startswith("/") or (file.parent / bare).exists():
        return None
    target = site / bare[bare.index("static/") :]
    return Path(os.path.relpath(target, file.parent)).as_posix() if target.is_file() else None


def rewrite(text: str, *, file: Path, site: Path) -> tuple[str, list[str]]:
    """``text`` (a page or stylesheet at ``file`` inside the site ``site``) with every known external asset
    pointing at its local copy by a relative path; also returns the external addresses it did not know."""
    unknown: list[str] = []

    def local(url: str) -> str | None:
        if not _EXTERNAL.match(url):
            return _repaired(url, file=file, site=site)
        target = site_path(url)
        if target is None:
            unknown.append(url)
            return None
        return Path(os.path.relpath(site / target, file.parent)).as_posix()

    def tag(match: re.Match[str]) -> str:
        changed = False

        def attr(m: re.Match[str]) -> str:
            nonlocal changed
            path = local(m.group(3))
            if path is None:
                return m.group(0)
            changed = True
            return f"{m.group(1)}{m.group(2)}{path}{m.group(2)}"

        out = _TAG_URL.sub(attr, match.group(0))
        return _SRI.sub("", out) if changed else out

    def css(m: re.Match[str]) -> str:
        path = local(m.group(3))
        return m.group(0) if path is None else f"{m.group(1)}{m.group(2)}{path}{m.group(2)}{m.group(4)}"

    return _CSS_URL.sub(css, _TAG.sub(tag, text)), unknown


def _install_vendor(site: Path) -> bool:
    """Copy ``vendor/`` to the site's ``static/vendor/`` unless the same build is there; True if copied."""
    source, target = VENDOR_DIR / MANIFEST, site / SITE_VENDOR / MANIFEST
    if target.is_file() and target.read_bytes() == source.read_bytes():
        return False
    shutil.copytree(VENDOR_DIR, site / SITE_VENDOR, dirs_exist_ok=True)
    return True


def make_offline(site: Path, *, since: float | None = None) -> list[str]:
    """Make the Data Docs site at ``site`` open from the file system with no network: install the vendored
    assets and rewrite the pages and GX stylesheets changed at or after ``since`` (a timestamp; None: every
    one — also done whenever the vendored build is new to the site). Idempotent; returns the external asset
    addresses left in place because no local copy is known (logged as a warning)."""
    if _install_vendor(site):
        since = None
    vendor = site / SITE_VENDOR
    left: list[str] = []
    for file in sorted(site.rglob("*")):
        if file.suffix not in (".html", ".css") or vendor in file.parents or not file.is_file():
            continue
        if since is not None and file.stat().st_mtime < since:
            continue
        text = file.read_text(encoding="utf-8")
        new, unknown = rewrite(text, file=file, site=site)
        if new != text:
            file.write_text(new, encoding="utf-8")
        left += [f"{file.relative_to(site)}: {u}" for u in unknown]
    if left:
        log.warning("Data Docs still load %d external assets (no local copy known): %s", len(left), left[:5])
    return left


def vendored_files() -> dict[str, str]:
    """``{path under vendor/: sha256}`` as recorded by the build (``vendor/MANIFEST.json``)."""
    files: dict[str, str] = json.loads((VENDOR_DIR / MANIFEST).read_text())["files"]
    return files
