"""Execute the course notebooks with papermill in one profile, keep going past failures, report.

    python book/run_notebooks.py --profile quick                     # every notebook in notebooks/
    python book/run_notebooks.py --profile smoke --only 0,3 --out _build/smoke
    python book/run_notebooks.py --profile full --runs-dir /scratch/runs notebooks/05_training.ipynb
    python book/run_notebooks.py --profile quick --record-times       # also store the times the notebooks show

Every notebook gets ``profile`` and ``runs_dir`` (one folder shared by all, so a run made by one notebook is
loaded by the next and nothing is trained twice), and ``device`` / ``data_root`` when given. papermill's
injected-parameters cell is tagged ``remove-cell`` so the book hides it. A progress line per notebook, a
summary table at the end (also written as ``<out>/summary.json``); a failure names its cell and error and
the remaining notebooks still run. Exits 1 when any notebook failed. With ``--record-times`` a complete,
successful run of every notebook stores each one's time and the runs it trained in
``book/notebook_times.json`` (augmax_lib.course.costs), which every notebook shows at its top.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
PROFILES = tuple(sorted(p.stem for p in (ROOT / "configs" / "profiles").glob("*.yaml")))


@dataclass
class Outcome:
    """How one notebook ran."""

    notebook: str
    status: str          # "ok" or "failed"
    seconds: float
    profile: str
    output: str
    error: Optional[str] = None   # "cell N: ExceptionName: message" for a failure
    trained: tuple = ()           # config names of the runs this notebook trained (finished during it)


def _failure_line(err: Exception) -> str:
    """'cell 7 (execution 5): ValueError: ...' from a PapermillExecutionError, else the exception's last line."""
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename is not None:
        cell = getattr(err, "cell_index", None)
        count = getattr(err, "exec_count", None)
        where = f"cell {cell}" if cell is not None else "a cell"
        if count is not None:
            where += f" (execution {count})"
        message = str(evalue).strip().splitlines()
        return f"{where}: {ename}: {message[0] if message else ''}"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"


def hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` (the tagged parameters cell stays visible), and
    name the input and output in papermill's metadata relative to the checkout (the book offers the file)."""
    import nbformat

    if not path.exists():
        return
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    papermill = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if papermill.get(key):
            papermill[key] = _as_passed(Path(papermill[key]).resolve())
    nbformat.write(nb, path)


def run_all(notebooks: list[Path], profile: str, out: Path, runs_dir: Optional[Path] = None,
            device: Optional[str] = None, data_root: Optional[str] = None, log=print,
            dry_run: bool = False) -> list[Outcome]:
    """Execute ``notebooks`` in order into ``out``; returns one :class:`Outcome` per notebook. ``dry_run``: the
    profile's models and steps on a few images (the notebooks' ``dry_run`` parameter)."""
    import papermill as pm

    # No progress bars in the saved pages: in a kernel each is a widget, and papermill keeps the state of every
    # widget it saw (closed ones too). The kernel inherits this process's environment; a user's value is kept.
    os.environ.setdefault("AUGMAX_PROGRESS", "off")
    # The book serves the live models from _static: their widget need not embed them (live_models.in_book_build).
    os.environ["AUGMAX_BOOK_BUILD"] = "1"
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(runs_dir).resolve() if runs_dir is not None else (ROOT / "runs").resolve()
    # The kernel runs in the checkout (cwd below): a folder inside it is passed relative, so that the executed
    # notebooks, which the book offers for download, name no path of the building machine.
    parameters = {"profile": profile, "runs_dir": _as_passed(runs_dir)}
    if device:
        parameters["device"] = device
    if data_root:
        parameters["data_root"] = _as_passed(Path(data_root).resolve())
    if dry_run:
        parameters["dry_run"] = True
    outcomes = []
    for number, nb in enumerate(notebooks, 1):
        target = out / nb.name
        log(f"[{number}/{len(notebooks)}] {nb.name} ({profile}{', dry run' if dry_run else ''}) ...", flush=True)
        before = finished_runs(runs_dir / Path(profile).stem)
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(target), parameters=parameters, cwd=str(ROOT), progress_bar=False,
                                kernel_name="python3")
            outcome = Outcome(nb.name, "ok", time.perf_counter() - start, profile, str(target))
        except Exception as err:  # papermill writes the notebook up to the failing cell, then raises
            outcome = Outcome(nb.name, "failed", time.perf_counter() - start, profile, str(target),
                              _failure_line(err))
        outcome.trained = tuple(sorted(finished_runs(runs_dir / Path(profile).stem) - before))
        hide_injected_parameters(target)
        outcomes.append(outcome)
        tail = f"  FAILED at {outcome.error}" if outcome.error else ""
        log(f"[{number}/{len(notebooks)}] {nb.name}: {outcome.status} in {outcome.seconds:.1f} s{tail}", flush=True)
    return outcomes


def _as_passed(folder: Path) -> str:
    """``folder`` relative to the checkout when it lies inside it, else absolute."""
    return str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder)


def finished_runs(folder: Path) -> set:
    """Config names of the finished training runs under ``folder`` (each run's results.json names its config)."""
    names = set()
    for path in folder.rglob("results.json") if folder.is_dir() else []:
        if path.parent.name == "evaluation" or "_sweep" in path.parts:
            continue
        try:
            names.add(f"{json.loads(path.read_text())['name']} ({path.parent.name})")
        except (OSError, ValueError, KeyError):
            continue
    return names


def summary_table(outcomes: list[Outcome]) -> str:
    """A plain-text table: notebook, status, time, profile (and the error of a failure)."""
    width = max([len("notebook")] + [len(o.notebook) for o in outcomes])
    lines = [f"{'notebook':<{width}}  {'status':<6}  {'time':>8}  profile", "-" * (width + 28)]
    for o in outcomes:
        lines.append(f"{o.notebook:<{width}}  {o.status:<6}  {o.seconds:7.1f}s  {o.profile}"
                     + (f"  ({o.error})" if o.error else ""))
    total = sum(o.seconds for o in outcomes)
    lines.append(f"{'total':<{width}}  {sum(o.status == 'ok' for o in outcomes)}/{len(outcomes)} ok  {total:7.1f}s")
    return "\n".join(lines)


def select(notebooks: list[Path], only: Optional[str]) -> list[Path]:
    """The notebooks whose leading number is in ``only`` ("0,3,5"), all of them when ``only`` is empty."""
    if not only:
        return notebooks
    try:
        wanted = {int(part) for part in only.split(",") if part.strip()}
    except ValueError:
        raise SystemExit(f"--only: expected notebook numbers like 0,3,5, got {only!r}") from None
    chosen = [nb for nb in notebooks if nb.name[:2].isdigit() and int(nb.name[:2]) in wanted]
    missing = wanted - {int(nb.name[:2]) for nb in chosen}
    if missing:
        raise SystemExit(f"--only: no notebook numbered {sorted(missing)} in {[nb.name for nb in notebooks]}")
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--only", default=None, metavar="N,M", help="run only these notebook numbers, e.g. 0,3")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "executed", help="executed notebooks go here")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs",
                        help="training runs shared by all notebooks (default: runs/)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    parser.add_argument("--data-root", default=None, help="data folder (default: $AUGMAX_DATA, else ~/.cache/augmax)")
    parser.add_argument("--dry-run", action="store_true",
                        help="the profile's models, methods and steps on a few images and training steps: a check "
                             "that every code path of the profile runs (e.g. --profile full on a CPU)")
    parser.add_argument("--record-times", action="store_true",
                        help="after a complete, successful run of every notebook, store each one's time in "
                             "book/notebook_times.json (shown at the top of every notebook)")
    args = parser.parse_args(argv)
    every = sorted((ROOT / "notebooks").glob("*.ipynb"))
    notebooks = select(args.notebooks or every, args.only)
    if not notebooks:
        print("No notebooks in notebooks/ yet: nothing to execute.")
        return 0
    cold = not finished_runs(Path(args.runs_dir).resolve() / Path(args.profile).stem)
    outcomes = run_all(notebooks, args.profile, args.out, args.runs_dir, args.device, args.data_root,
                       dry_run=args.dry_run)
    print()
    print(summary_table(outcomes))
    summary = {"profile": args.profile, "runs_dir": str(Path(args.runs_dir).resolve()),
               "notebooks": [asdict(o) for o in outcomes]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    failed = [o for o in outcomes if o.status != "ok"]
    if args.record_times:
        if failed or args.dry_run or [nb.resolve() for nb in notebooks] != [nb.resolve() for nb in every]:
            print("--record-times: not recorded (only a complete run of every notebook, all of them ok and not "
                  "dry, is)")
        else:
            from augmax_lib.course.costs import record_times

            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
            record_times(args.profile, [asdict(o) for o in outcomes], commit=commit.strip() or "unknown", cold=cold)
            print(f"recorded the {args.profile} times in book/notebook_times.json")
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} notebooks ran in the {args.profile} profile; "
          f"summary in {args.out / 'summary.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
