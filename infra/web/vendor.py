"""Build ``pipeline/validation/vendor/`` from the npm packages pinned in ``package-lock.json``.

Copies the files listed in ``pipeline.validation.offline.PACKAGES`` out of ``node_modules`` (installed
with ``npm ci``), each package's licence beside them (and the licences of the packages it depends on), and
writes ``MANIFEST.json`` (sha256 of the lock and of every file). The result is committed, so a machine
without npm still gets working reports; ``make setup`` reruns this only when npm exists and the vendored
build is missing or does not match the lock.

    .venv/bin/python infra/web/vendor.py               # rebuild
    .venv/bin/python infra/web/vendor.py --if-outdated # rebuild only when outdated (what make setup runs)
    .venv/bin/python infra/web/vendor.py --check       # exit 1 when outdated (no npm needed)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.validation.offline import MANIFEST, PACKAGES, VENDOR_DIR, Package

HERE = Path(__file__).resolve().parent
LOCK = HERE / "package-lock.json"
MODULES = HERE / "node_modules"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _expected() -> set[str]:
    return {f"{p.folder}/{f}" for p in PACKAGES.values() for f in p.files}


def outdated() -> str | None:
    """Why the vendored build does not match the lock and the package list (None: it does)."""
    if not (VENDOR_DIR / MANIFEST).is_file():
        return "no vendored build"
    manifest = json.loads((VENDOR_DIR / MANIFEST).read_text())
    if manifest.get("package_lock_sha256") != _sha256(LOCK):
        return "package-lock.json changed"
    files: dict[str, str] = manifest.get("files", {})
    if not _expected() <= files.keys():
        return f"files not vendored: {sorted(_expected() - files.keys())}"
    for name, digest in files.items():
        path = VENDOR_DIR / name
        if not path.is_file() or _sha256(path) != digest:
            return f"{name} missing or changed"
    return None


def _npm_ci() -> None:
    installed = MODULES / ".package-lock.json"
    if installed.is_file() and installed.stat().st_mtime >= LOCK.stat().st_mtime:
        return
    # --ignore-scripts: only built files are taken; no package code runs at install.
    cmd = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    subprocess.run(cmd, cwd=HERE, check=True)


def _resolve(lock: dict[str, Any], at: str, dep: str) -> str | None:
    """npm's lookup: ``dep`` of the package installed at ``at``, from its nested node_modules upward."""
    base = at
    while True:
        candidate = f"{base}/node_modules/{dep}" if base else f"node_modules/{dep}"
        if candidate in lock["packages"]:
            return candidate
        if not base:
            return None
        base = base.rsplit("/node_modules/", 1)[0] if "/node_modules/" in base else ""


def _closure(lock: dict[str, Any], root: str) -> list[str]:
    """Every package ``root`` depends on, directly or not (install paths, sorted)."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        at = todo.pop()
        for dep in lock["packages"][at].get("dependencies", {}):
            path = _resolve(lock, at, dep)
            if path and path not in seen:
                seen.add(path)
                todo.append(path)
    return sorted(seen)


def _licence_text(path: Path) -> str:
    files = sorted(p for p in path.iterdir() if p.name.upper().startswith(("LICENSE", "LICENCE")))
    if files:
        return files[0].read_text(encoding="utf-8", errors="replace")
    meta = json.loads((path / "package.json").read_text())
    return f"(no licence file; package.json says: {meta.get('license')})\n"


def _copy(package: Package, lock: dict[str, Any]) -> None:
    source, target = MODULES / package.name, VENDOR_DIR / package.folder
    version = json.loads((source / "package.json").read_text())["version"]
    if version != package.version:
        raise SystemExit(f"{package.name}: node_modules has {version}, the pages need {package.version}")
    for file in package.files:
        (target / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / file, target / file)
    if package.licence:
        shutil.copyfile(source / package.licence, target / package.licence)
    bundled = _closure(lock, f"node_modules/{package.name}")
    if bundled:
        parts = [f"Licences of the packages {package.name} depends on (its build may bundle them).\n"]
        for at in bundled:
            meta = lock["packages"][at]
            name = at.rsplit("node_modules/", 1)[1]
            parts.append(f"== {name} {meta['version']} ({meta.get('license')})\n\n{_licence_text(HERE / at)}")
        (target / "DEPENDENCY_LICENSES.txt").write_text("\n".join(parts), encoding="utf-8")


def build() -> None:
    """Install the lock and copy the vendored files, licences and manifest into ``VENDOR_DIR``."""
    _npm_ci()
    lock = json.loads(LOCK.read_text())
    shutil.rmtree(VENDOR_DIR, ignore_errors=True)
    VENDOR_DIR.mkdir(parents=True)
    for package in PACKAGES.values():
        _copy(package, lock)
    files = {
        p.relative_to(VENDOR_DIR).as_posix(): _sha256(p) for p in sorted(VENDOR_DIR.rglob("*")) if p.is_file()
    }
    manifest = {
        "about": "Built by infra/web/vendor.py from infra/web/package-lock.json; do not edit by hand.",
        "package_lock_sha256": _sha256(LOCK),
        "packages": {p.name: p.version for p in PACKAGES.values()},
        "files": files,
    }
    (VENDOR_DIR / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    size = sum(p.stat().st_size for p in VENDOR_DIR.rglob("*") if p.is_file())
    print(f"vendored {len(files)} files ({size / 1e6:.2f} MB) into {VENDOR_DIR}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 when the vendored build is outdated")
    group.add_argument("--if-outdated", action="store_true", help="rebuild only when outdated")
    args = parser.parse_args()
    reason = outdated()
    if args.check or args.if_outdated:
        if reason is None:
            return 0
        print(f"vendored web assets outdated: {reason}", file=sys.stderr)
        if args.check:
            return 1
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
