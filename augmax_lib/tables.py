"""The poster's tables from a runs folder: mean and spread over seeds, beside the published numbers.

:func:`collect_runs` reads every training run under a folder (``results.json`` with its
``evaluation/results.json``), :func:`build_tables` fills each cell of :data:`augmax_lib.paper_numbers.TABLES`
from the runs of its config (or of a config with the same training, see ``SAME_TRAINING``), and
:func:`write_tables` writes ``tables.md``, ``tables.csv`` (one line per cell) and ``runs.csv`` (one line
per run). A cell whose runs differ in profile/config, data, evaluation or commit is not averaged; its note
says what differs.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from augmax_lib._checks import InputError
from augmax_lib.paper_numbers import METRICS, TABLES, Cell, same_training

__all__ = ["RunRecord", "CellResult", "TableResult", "collect_runs", "build_tables", "render_markdown",
           "cells_csv", "runs_csv", "write_tables", "export_runs", "same_code", "EXPORTED_FILES", "CODE_PATHS",
           "TablesError"]

# Keys that may differ between the seeds of one cell: they do not change what is computed
# (the same list as a resumable run's, plus the seed itself).
_FREE_KEYS = ("data.root", "data.workers", "train.device", "train.progress", "train.log_every",
              "train.eval_batch_size", "train.compile", "name", "description", "paper", "profile", "train.seed")
# The small files of a run that `export_runs` copies (never checkpoints).
EXPORTED_FILES = ("results.json", "config.yaml", "log.csv", "sweep.json", "evaluation/results.json")


class TablesError(InputError, RuntimeError):
    """Runs that cannot be read or exported as asked."""


def _flatten(config, prefix: str = "") -> dict:
    out = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict) and key not in ("kwargs", "options"):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _free(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in _FREE_KEYS)


def _read(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class RunRecord:
    """One training run and its evaluation, reduced to what the tables compare and average."""

    run_dir: Path
    config_name: str
    seed: int
    config: dict                     # the validated training config (from the run's results.json)
    profile: Optional[str]           # from sweep.json; None for runs made without the sweep
    train_data: str
    train_commit: Optional[str]
    evaluation: Optional[dict]       # evaluation/results.json, None when not evaluated
    train_dirty: Optional[bool] = None  # trained from a checkout with uncommitted changes

    @property
    def dirty(self) -> bool:
        """Whether training or evaluation ran on a checkout with uncommitted changes."""
        git = ((self.evaluation or {}).get("provenance") or {}).get("git") or {}
        return bool(self.train_dirty) or bool(git.get("dirty"))

    @property
    def recipe(self) -> dict:
        """The config keys that define what was trained (seed and logistics left out)."""
        return {k: v for k, v in _flatten(self.config).items() if not _free(k)}

    @property
    def eval_commit(self) -> Optional[str]:
        git = ((self.evaluation or {}).get("provenance") or {}).get("git") or {}
        return git.get("commit")

    @property
    def eval_setup(self) -> dict:
        """What the evaluation measured on: test data, subset, corruption source and set, protocol."""
        e = self.evaluation or {}
        m = e.get("metrics", {})
        return {"dataset": e.get("dataset"), "data_source": e.get("data_source"),
                "num_test_images": e.get("num_test_images"), "images_per_set": e.get("images_per_set"),
                "protocol": json.dumps(e.get("protocol"), sort_keys=True),
                "corruption_source": m.get("corruption_source"),
                "corruptions": ",".join(sorted(m.get("corruption_accuracy") or {})),
                "spatial_k": (m.get("spatial") or {}).get("k")}

    def metric(self, key: str) -> Optional[float]:
        """The metric ``key`` (see paper_numbers.METRICS) in percent, or None when not measured."""
        value = (self.evaluation or {}).get("metrics", {})
        for part in METRICS[key].path:
            value = value.get(part) if isinstance(value, dict) else None
        return 100.0 * value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _record(train_file: Path) -> Optional[RunRecord]:
    results = _read(train_file)
    if not results or "config" not in results or "epochs" not in results:
        return None
    run_dir = train_file.parent
    config = results["config"]
    sweep = _read(run_dir / "sweep.json") or {}
    prov = results.get("provenance") or {}
    return RunRecord(run_dir, results.get("name") or config.get("name"), int(config["train"]["seed"]), config,
                     sweep.get("profile") or config.get("profile"), str(results.get("data_source")), prov.get("git_commit"),
                     _read(run_dir / "evaluation" / "results.json"), prov.get("git_dirty"))


def collect_runs(roots) -> list:
    """Every training run under the folders ``roots`` (a folder holding results.json with a config), sorted."""
    records = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise TablesError(f"{root}: no such runs folder (expected the --out of a sweep, e.g. runs/quick)")
        for path in sorted(root.rglob("results.json")):
            if "_sweep" in path.relative_to(root).parts or path.parent.name == "evaluation":
                continue
            record = _record(path)
            if record is not None:
                records.append(record)
    return sorted(records, key=lambda r: (r.config_name, r.seed, str(r.run_dir)))


# ------------------------------------------------------------------------------------------- cells
@dataclass
class CellResult:
    """A filled cell: the runs' mean and sample standard deviation (%) and the poster's number beside them."""

    table: str
    row: tuple
    column: str
    cell: Cell
    runs_of: Optional[str] = None     # the config whose runs fill the cell (the cell's own or a same-training one)
    mean: Optional[float] = None
    std: Optional[float] = None
    n: int = 0
    seeds: tuple = ()
    refused: Optional[str] = None     # why the runs were not averaged
    notes: list = field(default_factory=list)
    runs: list = field(default_factory=list)

    @property
    def diff(self) -> Optional[float]:
        return None if self.mean is None else self.mean - self.cell.paper


@dataclass
class TableResult:
    key: str
    title: str
    row_headers: tuple
    columns: tuple
    column_labels: dict
    note: str
    cells: list                       # CellResult, row by row, column by column

    @property
    def has_runs(self) -> bool:
        return any(c.runs for c in self.cells)


def _seeds(runs) -> str:
    seeds = sorted(r.seed for r in runs)
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def _split(runs, key) -> Optional[str]:
    """'a (seeds 0, 1) vs b (seed 2)' when ``key`` differs between runs, else None."""
    groups = {}
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    if len(groups) < 2:
        return None
    return " vs ".join(f"{value} ({_seeds(rs)})" for value, rs in groups.items())


def _short(commit) -> str:
    return commit[:10] if isinstance(commit, str) else "unknown"


# What a result depends on in the repository: commits that differ elsewhere only (docs, notebooks, tests)
# made the same numbers.
CODE_PATHS = ("augmax_lib", "configs")


@functools.lru_cache(maxsize=256)
def same_code(a: Optional[str], b: Optional[str], repo: Optional[str] = None) -> bool:
    """Whether commits ``a`` and ``b`` hold the same CODE_PATHS in git repository ``repo`` (default: this
    checkout); False when git cannot tell (no git, or a commit it does not know)."""
    if not a or not b:
        return False
    if a == b:
        return True
    root = repo or str(Path(__file__).resolve().parents[1])
    try:
        done = subprocess.run(["git", "-C", root, "diff", "--quiet", a, b, "--", *CODE_PATHS],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _mixed(runs, allow_mixed_commits: bool) -> Optional[str]:
    """Why the runs of a cell cannot be averaged, or None when they can."""
    seen = {}
    for r in runs:
        seen.setdefault(r.seed, []).append(str(r.run_dir))
    dupes = {s: paths for s, paths in seen.items() if len(paths) > 1}
    if dupes:
        seed, paths = next(iter(dupes.items()))
        return f"seed {seed} appears in {len(paths)} runs ({', '.join(paths)}); keep one"
    reasons = []
    recipes = [r.recipe for r in runs]
    keys = sorted({k for rec in recipes for k in rec if any(rec.get(k, "<absent>") != o.get(k, "<absent>")
                                                            for o in recipes)})
    if keys:
        profiles = _split(runs, lambda r: r.profile or "no profile recorded")
        if profiles and all(r.profile for r in runs):
            reasons.append(f"mixed profiles: {profiles}")
        else:
            shown = "; ".join(f"{k} = " + _split(runs, lambda r, k=k: r.recipe.get(k, "<absent>")) for k in keys[:3])
            more = f" (and {len(keys) - 3} more keys)" if len(keys) > 3 else ""
            reasons.append(f"mixed configs: {shown}{more}")
    data = _split(runs, lambda r: r.train_data)
    if data:
        reasons.append(f"mixed training data: {data}")
    setups = [r.eval_setup for r in runs]
    eval_keys = sorted({k for s in setups for k in s if any(s[k] != o[k] for o in setups)})
    for k in eval_keys:
        reasons.append(f"mixed evaluation data ({k}): " + _split(runs, lambda r, k=k: r.eval_setup[k]))
    if not allow_mixed_commits:
        for what, get in (("training", lambda r: r.train_commit), ("evaluation", lambda r: r.eval_commit)):
            commits = list(dict.fromkeys(get(r) for r in runs))
            if len(commits) > 1 and not all(same_code(commits[0], c) for c in commits[1:]):
                reasons.append(f"mixed commits ({what}): " + _split(runs, lambda r, get=get: _short(get(r))))
    return "; ".join(reasons) or None


def _fill(result: CellResult, by_config: dict, allow_mixed_commits: bool) -> CellResult:
    cell = result.cell
    for name in (cell.config, *same_training(cell.config)):
        if by_config.get(name):
            result.runs_of = name
            break
    if result.runs_of is None:
        return result
    runs = by_config[result.runs_of]
    if result.runs_of != cell.config:
        result.notes.append(f"from runs of {result.runs_of} (the same training as {cell.config})")
    not_evaluated = [r for r in runs if r.evaluation is None]
    if not_evaluated:
        result.notes.append(f"{len(not_evaluated)} run(s) not evaluated yet ({_seeds(not_evaluated)})")
    evaluated = [r for r in runs if r.evaluation is not None]
    with_value = [r for r in evaluated if r.metric(cell.metric) is not None]
    without = [r for r in evaluated if r.metric(cell.metric) is None]
    if without:
        skipped = (without[0].evaluation or {}).get("skipped", {}) or {}
        why = skipped.get(cell.metric) or skipped.get(f"{cell.metric}_v4") or next(iter(skipped.values()), "")
        why = " ".join(str(why).split())
        result.notes.append(f"{METRICS[cell.metric].label} not measured in {_seeds(without)}"
                            + (f": {why[:200]}" if why else ""))
    result.runs = with_value
    if not with_value:
        return result
    result.refused = _mixed(with_value, allow_mixed_commits)
    if result.refused:
        return result
    values = [r.metric(cell.metric) for r in with_value]
    result.n, result.seeds = len(values), tuple(sorted(r.seed for r in with_value))
    result.mean = statistics.fmean(values)
    result.std = statistics.stdev(values) if len(values) > 1 else None
    return result


def build_tables(records, allow_mixed_commits: bool = False) -> list:
    """One :class:`TableResult` per poster table, every cell filled from ``records`` where runs exist."""
    by_config = {}
    for r in records:
        by_config.setdefault(r.config_name, []).append(r)
    out = []
    for t in TABLES:
        cells = [_fill(CellResult(t.key, row.labels, col, row.cells[col]), by_config, allow_mixed_commits)
                 for row in t.rows for col in t.columns]
        out.append(TableResult(t.key, t.title, t.row_headers, t.columns, dict(t.column_labels), t.note, cells))
    return out


# --------------------------------------------------------------------------------------------- output
def _num(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _ours(c: CellResult) -> str:
    if c.refused:
        return "not averaged"
    if c.mean is None:
        return "-"
    spread = f" ± {c.std:.2f}" if c.std is not None else ""
    return f"{c.mean:.2f}{spread} (n={c.n})"


def _paper(cell: Cell) -> str:
    return f"{cell.paper:.2f}" + (f" ± {cell.paper_spread:.2f}" if cell.paper_spread is not None else "")


def _provenance_line(cells) -> str:
    runs = list({id(r): r for c in cells for r in c.runs}.values())
    if not runs:
        return ""
    profiles = sorted({r.profile or "unrecorded" for r in runs})
    data = sorted({r.train_data for r in runs})
    commits = sorted({_short(r.train_commit) for r in runs})
    dirty = sum(r.dirty for r in runs)
    return (f"Runs: profile {', '.join(profiles)}; training data {', '.join(data)}; "
            f"commit {', '.join(commits)}"
            + (f" ({dirty} of {len(runs)} with uncommitted changes in the checkout)" if dirty else "") + ".")


def render_markdown(tables, roots=(), show_empty: bool = False, records=()) -> str:
    """All tables as Markdown: ours (mean ± sd, n seeds), the poster's number, and the difference.

    ``records``, when given, adds a list of the runs whose configs fill no cell (e.g. AugMix's own recipe).
    """
    count = len({str(r.run_dir) for t in tables for c in t.cells for r in c.runs})
    lines = ["# AugMax reproduction: our runs beside the poster", "",
             f"Made by `python -m augmax_lib tables` from {count} evaluated run(s)"
             + (f" in {', '.join(f'`{r}`' for r in roots)}" if roots else "") + ". "
             "Each cell: mean ± sample standard deviation over seeds (n = seeds); *paper* is the poster's number "
             "(augmax_lib/paper_numbers.py); *diff* = ours - paper. Cells whose runs differ in profile, data, "
             "evaluation or commit are not averaged (see the notes).", ""]
    shown = [t for t in tables if show_empty or t.has_runs]
    if not shown:
        lines.append("No evaluated runs fill the poster's tables.")
    for t in shown:
        lines += [f"## {t.title}", ""]
        if t.note:
            lines += [t.note, ""]
        provenance = _provenance_line(t.cells)
        if provenance:
            lines += [provenance, ""]
        header = list(t.row_headers)
        for col in t.columns:
            label = t.column_labels.get(col) or METRICS[_column_metric(t, col)].label
            header += [label, "paper", "diff"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("| " + " | ".join(["---"] * len(t.row_headers) + ["---:"] * (3 * len(t.columns))) + " |")
        notes, per_row = [], len(t.columns)
        for i in range(0, len(t.cells), per_row):
            row_cells = t.cells[i:i + per_row]
            out = list(row_cells[0].row)
            for c in row_cells:
                text = _ours(c)
                remarks = ([c.refused] if c.refused else []) + c.notes
                if remarks:
                    notes.append(f"{' '.join(c.row)}, {c.column}: " + "; ".join(remarks))
                    text += f" [{len(notes)}]"
                out += [text, _paper(c.cell), _num(c.diff, signed=True)]
            lines.append("| " + " | ".join(out) + " |")
        if notes:
            lines.append("")
            lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
        lines.append("")
    used = {c.runs_of for t in tables for c in t.cells}
    others = {}
    for r in records:
        if r.config_name not in used:
            others.setdefault(r.config_name, []).append(r)
    if others:
        lines += ["## Runs outside the poster's tables", "", "| Config | Seeds | SA (%) | RA (%) |",
                  "| --- | --- | ---: | ---: |"]
        for name, runs in sorted(others.items()):
            cols = []
            for key in ("sa", "ra"):
                values = [v for v in (r.metric(key) for r in runs) if v is not None]
                cols.append(f"{statistics.fmean(values):.2f} (n={len(values)})" if values else "-")
            lines.append(f"| {name} | {', '.join(str(r.seed) for r in runs)} | {cols[0]} | {cols[1]} |")
        lines += ["", "These are not checked for mixed profiles or commits; see runs.csv for each run.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _column_metric(t: TableResult, col: str) -> str:
    return next(c.cell.metric for c in t.cells if c.column == col)


CELL_COLUMNS = ("table", "table_title", "row", "column", "metric", "config", "runs_of", "mean", "std", "n", "seeds",
                "paper", "paper_spread", "diff", "profiles", "training_data", "commits", "refused", "notes")
RUN_COLUMNS = ("config", "seed", "profile", "sa", "ra", "mce", "cifar101", "sta", "training_data",
               "evaluation_data", "images_per_set", "train_commit", "eval_commit", "run_dir")


def cells_csv(tables) -> str:
    """Every cell of every table, one CSV line each (the notebook's and README's source)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CELL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for t in tables:
        for c in t.cells:
            writer.writerow({
                "table": t.key, "table_title": t.title, "row": " ".join(c.row), "column": c.column,
                "metric": c.cell.metric, "config": c.cell.config, "runs_of": c.runs_of or "",
                "mean": _round(c.mean), "std": _round(c.std), "n": c.n, "seeds": " ".join(map(str, c.seeds)),
                "paper": c.cell.paper, "paper_spread": "" if c.cell.paper_spread is None else c.cell.paper_spread,
                "diff": _round(c.diff), "profiles": " ".join(sorted({r.profile or "" for r in c.runs})).strip(),
                "training_data": " | ".join(sorted({r.train_data for r in c.runs})),
                "commits": " ".join(sorted({_short(r.train_commit) for r in c.runs})),
                "refused": c.refused or "", "notes": "; ".join(c.notes)})
    return buffer.getvalue()


def _round(value: Optional[float]):
    return "" if value is None else round(value, 4)


def runs_csv(records, root: Optional[Path] = None) -> str:
    """One line per run: its seed, profile, metrics (%) and provenance."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, RUN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        where = r.run_dir
        if root is not None:
            try:
                where = r.run_dir.resolve().relative_to(Path(root).resolve())
            except ValueError:
                pass
        setup = r.eval_setup
        writer.writerow({"config": r.config_name, "seed": r.seed, "profile": r.profile or "",
                         **{k: _round(r.metric(k)) for k in METRICS},
                         "training_data": r.train_data, "evaluation_data": setup["data_source"] or "",
                         "images_per_set": setup["images_per_set"] or "", "train_commit": r.train_commit or "",
                         "eval_commit": r.eval_commit or "", "run_dir": str(where)})
    return buffer.getvalue()


def write_tables(tables, records, out, roots=(), show_empty: bool = False) -> dict:
    """Write tables.md, tables.csv and runs.csv into ``out``; returns their paths by name."""
    from augmax_lib.train.checkpoint import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"tables.md": out / "tables.md", "tables.csv": out / "tables.csv", "runs.csv": out / "runs.csv"}
    atomic_write_text(paths["tables.md"], render_markdown(tables, roots, show_empty, records))
    atomic_write_text(paths["tables.csv"], cells_csv(tables))
    atomic_write_text(paths["runs.csv"], runs_csv(records, out))
    return paths


def export_runs(records, dest) -> list:
    """Copy each run's small files (EXPORTED_FILES, no checkpoints) to ``dest/<config>/seed<k>/``; returns them."""
    dest = Path(dest)
    targets = {}
    for r in records:
        target = dest / r.config_name / f"seed{r.seed}"
        if target in targets and targets[target] != r.run_dir:
            raise TablesError(f"two runs of {r.config_name} seed {r.seed} ({targets[target]} and {r.run_dir}) would "
                              f"be exported to {target}; export one runs folder (one profile) at a time")
        targets[target] = r.run_dir
    copied = []
    for target, source in targets.items():
        if target.resolve() == source.resolve():
            continue
        for name in EXPORTED_FILES:
            if (source / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, target / name)
                copied.append(target / name)
    return copied
