"""The book built once from the smoke-profile notebooks, shared by test_book.py and test_book_browser.py.

`built_book()` builds into _build/test-book with book/build_book.py (warnings are errors) under a file
lock, and reuses the build while its inputs (executed notebooks, book sources, library docstrings)
are unchanged, so the two test files (often on two xdist workers) build it once.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "test-book"


@dataclass
class Book:
    html: Path          # the built site
    log: str            # the build's output
    notebooks: list     # names of the executed notebooks it was built from


def executed_folder() -> Path:
    """The folder of smoke-profile executed notebooks (tests/_executed.py), or skip saying why.

    $AUGMAX_BOOK_EXECUTED names another folder of executed notebooks (e.g. a quick-profile run).
    """
    if os.environ.get("AUGMAX_BOOK_EXECUTED"):
        return Path(os.environ["AUGMAX_BOOK_EXECUTED"])
    try:
        from _executed import executed_notebooks
    except ImportError as err:
        pytest.skip(f"tests/_executed.py is not there yet ({err}): no executed notebooks to build the book from")
    result = executed_notebooks()
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, (str, Path)):
        folder = Path(result)
        paths = sorted(folder.glob("*.ipynb"))
    else:
        paths = [Path(p) for p in result]
        folder = paths[0].parent if paths else ROOT / "_build" / "smoke-executed"
    if not paths:
        pytest.skip("no course notebooks in notebooks/ yet: the book has nothing to build from")
    return folder


def _stamp(executed: Path) -> str:
    digest = hashlib.sha256()
    inputs = [ROOT / "_config.yml", ROOT / "_toc.yml", *sorted(executed.glob("*.ipynb"))]
    inputs += sorted(p for p in (ROOT / "book").rglob("*") if p.is_file() and "node_modules" not in p.parts
                     and "__pycache__" not in p.parts)
    inputs += sorted((ROOT / "augmax_lib").rglob("*.py"))  # the API reference is built from the docstrings
    inputs += sorted(p for ext in ("*.js", "*.css", "*.json") for p in (ROOT / "augmax_lib" / "course").glob(ext))
    weights = ROOT / "augmax_lib" / "models" / "weights"  # exported for the live models
    inputs += sorted(p for p in weights.rglob("*") if p.is_file())
    for path in inputs:
        digest.update(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def built_book() -> Book:
    from filelock import FileLock

    executed = executed_folder()
    OUT.mkdir(parents=True, exist_ok=True)
    with FileLock(str(OUT) + ".lock"):
        stamp_file = OUT / "stamp.json"
        stamp = _stamp(executed)
        html = OUT / "_build" / "html"
        old = json.loads(stamp_file.read_text()) if stamp_file.is_file() else {}
        if old.get("stamp") == stamp and old.get("returncode") == 0 and (html / "index.html").is_file():
            return Book(html, old["log"], old["notebooks"])
        stamp_file.unlink(missing_ok=True)
        proc = subprocess.run([sys.executable, str(ROOT / "book" / "build_book.py"), "--executed", str(executed),
                               "--out", str(OUT)], cwd=ROOT, capture_output=True, text=True, timeout=900)
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            pytest.fail(f"book/build_book.py failed (exit {proc.returncode}):\n{log[-6000:]}", pytrace=False)
        notebooks = sorted(p.stem for p in executed.glob("[0-9][0-9]_*.ipynb"))
        stamp_file.write_text(json.dumps({"stamp": stamp, "returncode": 0, "log": log, "notebooks": notebooks}))
        return Book(html, log, notebooks)
