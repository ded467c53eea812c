"""Fetch the scripts the book serves itself (require.js, the widget manager, MathJax, onnxruntime-web) from npm.

    python book/fetch_assets.py            # into book/node_modules (skipped when already there)
    python book/fetch_assets.py --static D # and copy the files a page loads into D/vendor

The versions are pinned in book/package.json and their SHA-512 in book/package-lock.json; each
tarball is downloaded from the npm registry ($npm_config_registry, default registry.npmjs.org),
checked against the lock and unpacked like `npm ci` would unpack it (only the packages the book
serves, not their build-time dependencies). Nothing fetched here is committed.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

BOOK = Path(__file__).resolve().parent
MODULES = BOOK / "node_modules"

# What a page loads, per package: (file or folder inside the package, path under _static/vendor).
# MathJax loads its fonts and TeX extensions lazily, relative to its own URL: keep its folders.
SERVED = {
    "requirejs": [("require.js", "require.js")],
    # The manager's Font Awesome files, found through requirejs paths set by book/_ext/augmax_book.py.
    "@jupyter-widgets/html-manager": [("dist/embed-amd.js", "embed-amd.js"),
                                      *[(f"dist/*.{ext}", "html-manager") for ext in
                                        ("woff2", "woff", "ttf", "eot", "svg")]],
    # The live models of notebook 3: the WebAssembly build (one thread, no WebGPU), its loader and binary.
    "onnxruntime-web": [("dist/ort.wasm.min.js", "ort/ort.wasm.min.js"),
                        ("dist/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.mjs"),
                        ("dist/ort-wasm-simd-threaded.wasm", "ort/ort-wasm-simd-threaded.wasm")],
    "mathjax": [("es5/tex-mml-chtml.js", "mathjax/tex-mml-chtml.js"),
                ("es5/input", "mathjax/input"),
                ("es5/output/chtml", "mathjax/output/chtml"),
                ("es5/output/chtml.js", "mathjax/output/chtml.js"),
                ("es5/ui", "mathjax/ui"),
                ("es5/a11y", "mathjax/a11y"),
                ("es5/adaptors", "mathjax/adaptors"),
                ("es5/sre", "mathjax/sre")],
}


def pinned() -> dict[str, tuple[str, str]]:
    """{package: (version, integrity)} for the dependencies of book/package.json, from the lock."""
    wanted = json.loads((BOOK / "package.json").read_text())["dependencies"]
    lock = json.loads((BOOK / "package-lock.json").read_text())["packages"]
    out = {}
    for name, version in wanted.items():
        entry = lock.get(f"node_modules/{name}")
        if entry is None or entry.get("version") != version or "integrity" not in entry:
            raise SystemExit(f"book/package-lock.json has no {name}@{version} with an integrity hash: "
                             "run `npm install --package-lock-only` in book/ after editing package.json")
        out[name] = (version, entry["integrity"])
    return out


def _installed_version(name: str) -> str | None:
    meta = MODULES / name / "package.json"
    return json.loads(meta.read_text()).get("version") if meta.is_file() else None


def _download(name: str, version: str, integrity: str) -> bytes:
    registry = os.environ.get("npm_config_registry", "https://registry.npmjs.org").rstrip("/")
    url = f"{registry}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as err:
        raise SystemExit(f"could not download {url} ({err}); set npm_config_registry to a reachable "
                         "npm registry, or run `npm ci` in book/") from err
    algo, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{url}: {algo} is {actual}, book/package-lock.json pins {expected}")
    return data


def _unpack(name: str, tarball: bytes) -> None:
    target = MODULES / name
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar.getmembers():
            # npm tarballs hold one top folder (usually `package/`); drop it like npm does.
            parts = Path(member.name).parts[1:]
            if not parts or not (member.isfile() or member.isdir()) or ".." in parts:
                continue
            dest = partial.joinpath(*parts)
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(member).read())
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # whole package or nothing, so a killed fetch is redone next time


def fetch(quiet: bool = False) -> None:
    """Make book/node_modules hold every pinned package at its pinned version."""
    for name, (version, integrity) in pinned().items():
        if _installed_version(name) == version:
            continue
        if not quiet:
            print(f"fetching {name}@{version} from the npm registry", file=sys.stderr)
        _unpack(name, _download(name, version, integrity))


def copy_to(static: Path) -> list[Path]:
    """Copy the files pages load into `static`/vendor; returns the copied top-level paths."""
    fetch(quiet=False)
    copied = []
    for name, items in SERVED.items():
        for src_rel, dst_rel in items:
            if "*" in src_rel:
                matches = sorted((MODULES / name).glob(src_rel))
                if not matches:
                    raise SystemExit(f"{name} has no {src_rel}: delete book/node_modules/{name} and rerun")
                (static / "vendor" / dst_rel).mkdir(parents=True, exist_ok=True)
                for match in matches:
                    shutil.copy2(match, static / "vendor" / dst_rel / match.name)
                copied.append(static / "vendor" / dst_rel)
                continue
            src, dst = MODULES / name / src_rel, static / "vendor" / dst_rel
            if not src.exists():
                raise SystemExit(f"{src} is missing from {name}: delete book/node_modules/{name} and rerun")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)
            copied.append(dst)
    return copied


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--static", type=Path, help="also copy the served files into STATIC/vendor")
    args = parser.parse_args(argv)
    if args.static:
        copy_to(args.static)
    else:
        fetch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
