"""The course notebooks executed once in the smoke profile (and once in the full profile as a dry run), shared
by every test that needs them.

``executed_notebooks()`` runs ``book/run_notebooks.py``'s ``run_all`` on every notebook in notebooks/ into
``_build/smoke-executed/`` (training runs in its ``runs/``), under a file lock, and writes a stamp with a
hash of the notebooks, the library and the runner. A later caller (another test file, another xdist
worker, the book's browser test) with the same hash reuses the executed notebooks instead of running them
again; any change to a notebook or to augmax_lib runs them all afresh.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "_build" / "smoke-executed"
FULL_DRY_OUT = ROOT / "_build" / "full-dry-executed"
STAMP = "stamp.json"

__all__ = ["ROOT", "NOTEBOOKS", "OUT", "FULL_DRY_OUT", "source_hash", "executed_notebooks", "executed_summary"]


def _inputs() -> list[Path]:
    files = sorted(NOTEBOOKS.glob("*.ipynb")) + sorted((ROOT / "augmax_lib").rglob("*.py"))
    files += sorted((ROOT / "configs").rglob("*.yaml")) + [ROOT / "book" / "run_notebooks.py"]
    return [f for f in files if f.is_file()]


def source_hash() -> str:
    """sha256 over the notebooks, augmax_lib's sources, the configs and the runner (names and contents)."""
    h = hashlib.sha256()
    for path in _inputs():
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "book" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def executed_notebooks(out: Path = OUT, profile: str = "smoke", dry_run: bool = False) -> dict[str, Path]:
    """{notebook file name: executed copy} for every notebook, executing them in ``profile`` (as a dry run when
    ``dry_run``) if needed."""
    from filelock import FileLock

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    with FileLock(str(out) + ".lock"):
        digest = source_hash()
        stamp = out / STAMP
        wanted = {"hash": digest, "profile": profile, "dry_run": dry_run}
        fresh = stamp.is_file() and all(json.loads(stamp.read_text()).get(k) == v for k, v in wanted.items())
        if not (fresh and all((out / nb.name).is_file() for nb in notebooks)):
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            runner = _runner()
            # One thread per kernel: tests run in parallel workers on small machines, where two OpenMP
            # threads per process oversubscribe the cores and slow everything many times over.
            saved = os.environ.get("OMP_NUM_THREADS")
            os.environ["OMP_NUM_THREADS"] = "1"
            try:
                outcomes = runner.run_all(notebooks, profile, out, runs_dir=out / "runs", dry_run=dry_run)
            finally:
                if saved is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
                else:
                    os.environ["OMP_NUM_THREADS"] = saved
            print(runner.summary_table(outcomes))
            stamp.write_text(json.dumps({**wanted, "runs_dir": str(out / "runs"),
                                         "notebooks": [vars(o) for o in outcomes]}, indent=1) + "\n")
    return {nb.name: out / nb.name for nb in notebooks}


def executed_summary(out: Path = OUT, profile: str = "smoke", dry_run: bool = False) -> dict:
    """The stamp of the last execution: hash, profile, runs folder and one outcome per notebook."""
    executed_notebooks(out, profile, dry_run)
    return json.loads((Path(out) / STAMP).read_text())
