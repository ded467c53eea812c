"""Execute every course notebook with papermill in one profile, keep going past failures, report.

    python book/run_notebooks.py --profile quick --out _build/executed [NOTEBOOK ...]

Each notebook's `parameters` cell gets `profile`; the injected cell is tagged `remove-cell` so the
book hides it. Exits non-zero when any notebook failed, after running all of them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_all(notebooks: list[Path], profile: str, out: Path) -> list[tuple[Path, str]]:
    import papermill as pm

    failures = []
    out.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        target = out / nb.name
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(target), parameters={"profile": profile},
                                cwd=str(ROOT), progress_bar=False, kernel_name="python3")
            print(f"ok      {nb.name} ({time.perf_counter() - t0:.0f} s)")
        except Exception as err:  # papermill raises PapermillExecutionError and writes the notebook
            failures.append((nb, str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)))
            print(f"FAILED  {nb.name}: {failures[-1][1]}")
        _hide_injected_parameters(target)
    return failures


def _hide_injected_parameters(path: Path) -> None:
    import nbformat

    if not path.exists():
        return
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--profile", default="quick", choices=["smoke", "quick", "full"])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "executed")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not notebooks:
        print("No notebooks in notebooks/ yet: nothing to execute.")
        return 0
    failures = run_all(notebooks, args.profile, args.out)
    print(f"{len(notebooks) - len(failures)} of {len(notebooks)} notebooks ran in the {args.profile} profile")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
