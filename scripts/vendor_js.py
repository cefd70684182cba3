#!/usr/bin/env python3
"""Vendor the pinned browser libraries that the offline book needs.

The book must render without any network: Altair charts need vega,
vega-lite and vega-embed; ipywidgets need the html-manager embed bundle;
math needs MathJax.  ``scripts/vendor_js.json`` pins each npm package by
version and sha512 integrity (the same string a ``package-lock.json``
records).  This script fetches each tarball with ``npm pack`` (the ordinary
npm client, so the registry and its TLS settings are npm's own), checks the
integrity, and copies only the listed files into ``book/_static/vendor``
(git-ignored), keeping their paths inside the package:
``vendor/<dest>/<path in package>``.

A ``MANIFEST.json`` written last records what was vendored; when it matches
the pin file, the script does nothing, so ``make`` can call it every time.

Usage: ``python scripts/vendor_js.py [--force]``
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import posixpath
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "scripts" / "vendor_js.json"
VENDOR = ROOT / "book" / "_static" / "vendor"
MANIFEST = VENDOR / "MANIFEST.json"


def load_pins() -> list[dict]:
    return json.loads(PINS.read_text())["packages"]


def expected_manifest(pins: list[dict]) -> dict:
    return {p["name"]: {"version": p["version"], "integrity": p["integrity"]} for p in pins}


def up_to_date(pins: list[dict]) -> bool:
    if not MANIFEST.is_file():
        return False
    try:
        recorded = json.loads(MANIFEST.read_text())
    except json.JSONDecodeError:
        return False
    if recorded.get("packages") != expected_manifest(pins):
        return False
    return all((VENDOR / f).is_file() for f in recorded.get("files", []))


def sha512_integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def npm_pack(spec: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("vendor_js: npm is needed to fetch the pinned browser libraries")
    out = subprocess.run(
        [npm, "pack", spec, "--json", "--pack-destination", str(dest)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)[0]
    return dest / info["filename"]


def _in_package(member: tarfile.TarInfo) -> str:
    return member.name.split("/", 1)[1]


def extract(tarball: Path, pkg: dict, out_dir: Path) -> list[str]:
    """Copy the members of ``tarball`` matching ``pkg['files']`` to ``out_dir``."""
    copied: list[str] = []
    with tarfile.open(tarball, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for pattern in pkg["files"]:
            folder, name = posixpath.split(pattern)
            hits = [
                m
                for m in members
                # npm tarballs keep every file under "package/"; a pattern's
                # wildcard matches file names inside its own folder only.
                if posixpath.dirname(_in_package(m)) == folder
                and fnmatch.fnmatchcase(posixpath.basename(m.name), name)
            ]
            if not hits:
                raise SystemExit(f"vendor_js: {pkg['name']}@{pkg['version']} has no file matching {pattern!r}")
            for member in hits:
                rel = _in_package(member)
                target = out_dir / pkg["dest"] / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                copied.append(f"{pkg['dest']}/{rel}")
    return copied


def vendor(pins: list[dict]) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        staging = tmp / "vendor"
        files: list[str] = []
        for pkg in pins:
            spec = f"{pkg['name']}@{pkg['version']}"
            tarball = npm_pack(spec, tmp)
            got = sha512_integrity(tarball)
            if got != pkg["integrity"]:
                raise SystemExit(f"vendor_js: integrity mismatch for {spec}: {got} != {pkg['integrity']}")
            files += extract(tarball, pkg, staging)
            print(f"vendor_js: {spec} ok")
        manifest = {"packages": expected_manifest(pins), "files": sorted(files)}
        (staging / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if VENDOR.exists():
            shutil.rmtree(VENDOR)
        VENDOR.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, VENDOR)
    size = sum(p.stat().st_size for p in VENDOR.rglob("*") if p.is_file())
    print(f"vendor_js: {len(files)} files, {size / 1e6:.1f} MB in {VENDOR.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch again even if up to date")
    args = parser.parse_args(argv)
    pins = load_pins()
    if args.force or not up_to_date(pins):
        vendor(pins)
    else:
        print("vendor_js: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
