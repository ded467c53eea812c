"""The poster's tables from a runs folder: mean and spread over seeds, beside the published numbers.

:func:`collect_runs` reads every training run under a folder (``results.json`` with its
``evaluation/results.json``), :func:`build_tables` fills each cell of :data:`augmax_lib.paper_numbers.TABLES`
by one rule (:func:`fits`): a cell takes only runs trained and evaluated on its data set whose training recipe,
budget included, is what the cell's config gives under the run's profile, whatever config name they were run
under. Runs of a table's configs on another data set fill a copy of that table labelled with their data set,
without the poster's numbers. :func:`write_tables` writes ``tables.md``, ``tables.csv`` (one line per cell) and
``runs.csv`` (one line per run). A cell whose runs differ in profile/config, data, evaluation or commit is not
averaged; its note says what differs.
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
from augmax_lib.paper_numbers import METRICS, TABLES, Cell
from augmax_lib.train.checkpoint import RESUMABLE_KEYS
from augmax_lib.train.config import same_setting

__all__ = ["RunRecord", "CellResult", "TableResult", "collect_runs", "build_tables", "fits", "run_profile", "render_markdown",
           "cells_csv", "runs_csv", "write_tables", "export_runs", "same_code", "EXPORTED_FILES", "CODE_PATHS",
           "TablesError"]

# Keys that may differ between the seeds of one cell: they do not change what is computed
# (the same list as a resumable run's, plus the seed itself).
# What a resumed run may change (augmax_lib.train.checkpoint), less the evaluation section, plus the seed.
_FREE_KEYS = tuple(k for k in RESUMABLE_KEYS if k != "eval") + ("train.seed",)
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
        """The config keys that define what was trained and how it is evaluated (seed and logistics left out)."""
        return {k: v for k, v in _flatten(self.config).items() if not _free(k)}

    @property
    def training(self) -> dict:
        """The recipe without its ``eval`` section: what was trained, at which budget."""
        return _training(self.recipe)

    @property
    def train_dataset(self) -> str:
        """The data set the run trained on (its config's ``data.dataset``)."""
        return str(self.config.get("data", {}).get("dataset"))

    @property
    def eval_dataset(self) -> Optional[str]:
        """The data set the evaluation ran on (None when not evaluated)."""
        return (self.evaluation or {}).get("dataset")

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
    dataset: str = ""                 # the data set of the runs (the cell's own, or another in an "other data" table)

    @property
    def comparable(self) -> bool:
        """Whether the runs were trained and evaluated on the poster's data set for this cell (then a diff is shown)."""
        return self.dataset == self.cell.dataset

    @property
    def diff(self) -> Optional[float]:
        return None if self.mean is None or not self.comparable else self.mean - self.cell.paper


@dataclass
class TableResult:
    """One poster table filled from runs: its cells row by row, and whether the poster's numbers apply."""

    key: str
    title: str
    row_headers: tuple
    columns: tuple
    column_labels: dict
    note: str
    cells: list                       # CellResult, row by row, column by column
    comparable: bool = True           # False: runs on another data set than the poster's, shown without its numbers

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


# ------------------------------------------------------------------------------ which runs fill a cell
# One rule, used by `tables`, the course and the results chapter: a cell takes only runs trained and evaluated on
# its data set whose training recipe, budget included, is exactly what the cell's config gives under the run's
# profile. Runs of another config count when their recipe is that same recipe ("the same training"); runs on
# another data set fill a table of their own, labelled with their data set and shown without the poster's numbers.
def _training(recipe: dict) -> dict:
    return {k: v for k, v in recipe.items() if not (k == "eval" or k.startswith("eval."))}


@functools.lru_cache(maxsize=1)
def _config_files() -> dict:
    """Config name -> YAML path of every config under configs/ (empty when the repository's configs/ is absent)."""
    import yaml

    from augmax_lib.train.config import PROFILES_DIR

    out = {}
    root = PROFILES_DIR.parent
    for path in sorted(root.glob("*/*.yaml")) if root.is_dir() else []:
        if path.parent.name == "profiles":
            continue
        try:
            name = (yaml.safe_load(path.read_text()) or {}).get("name")
        except yaml.YAMLError:
            continue
        if name:
            out[name] = path
    return out


def _profiles() -> tuple:
    from augmax_lib.train.config import PROFILES_DIR

    return tuple(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))) if PROFILES_DIR.is_dir() else ()


@functools.lru_cache(maxsize=1024)
def _expected(config_name: str, profile: Optional[str], data: tuple) -> Optional[tuple]:
    """The training recipe of ``config_name`` under ``profile`` with ``data`` (key=value overrides of the data
    section), as sorted items; None when the config or profile cannot be loaded here."""
    from augmax_lib.train.config import ConfigError, load_config

    path = _config_files().get(config_name)
    if path is None:
        return None
    try:
        config = load_config(path, profile or None, list(data))
    except (ConfigError, OSError):
        return None
    recipe = {k: v for k, v in _flatten(config).items() if not _free(k)}
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in _training(recipe).items()))


@functools.lru_cache(maxsize=256)
def _config_dataset(config_name: str) -> Optional[str]:
    """The data set a config names (``data.dataset``), None when it cannot be read here."""
    expected = _expected(config_name, None, ())
    return json.loads(dict(expected)["data.dataset"]) if expected else None


def _data_overrides(r: RunRecord, config_name: str) -> tuple:
    """Overrides that put ``config_name`` onto the run's own training data (none when it names that data set)."""
    if _config_dataset(config_name) == r.train_dataset:
        return ()
    options = json.dumps((r.config.get("data") or {}).get("options") or {}, sort_keys=True)
    return (f"data.dataset={r.train_dataset}", f"data.options={options}")


def _as_items(training: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in training.items()))


def _same_training(expected: Optional[tuple], mine: tuple) -> bool:
    """Whether a run's training items are what ``expected`` (from :func:`_expected`) asks for; a precision of "auto"
    there accepts the one the run resolved it to (augmax_lib.train.config.same_setting)."""
    if expected is None or len(expected) != len(mine):
        return False
    return all(ke == km and same_setting(ke, json.loads(vm), json.loads(ve))
               for (ke, ve), (km, vm) in zip(expected, mine))


def run_profile(r: RunRecord) -> Optional[str]:
    """The run's profile: the recorded one when it can be loaded here, else the one profile under
    configs/profiles/ (or none: "full") that gives the run's recipe; None when none does (a custom budget)."""
    mine = _as_items(r.training)
    recorded = Path(r.profile).stem if r.profile else None
    tries = ([recorded] if recorded else []) + [p for p in ("full", *_profiles()) if p != recorded]
    for profile in tries:
        if _same_training(_expected(r.config_name, profile, _data_overrides(r, r.config_name)), mine):
            return profile
    return None


def fits(r: RunRecord, cell_config: str, dataset: Optional[str] = None) -> bool:
    """Whether run ``r`` trained exactly what ``cell_config`` gives at the run's profile, on ``dataset`` (default:
    any; the poster's cells pass their own, the "other data" tables another one), and was evaluated on it."""
    if dataset is not None and r.train_dataset != dataset:
        return False
    if r.eval_dataset is not None and r.eval_dataset != r.train_dataset:
        return False
    if not _config_files():  # no configs/ here: only the config's own runs, their budgets unchecked
        return r.config_name == cell_config
    profile = run_profile(r)
    if profile is None:
        return False  # a budget no profile gives (overrides of the recipe): it fills no poster cell
    return _same_training(_expected(cell_config, profile, _data_overrides(r, cell_config)), _as_items(r.training))


def _candidates(cell_config: str, dataset: str, records) -> tuple[Optional[str], list]:
    """(config whose runs fill the cell, those runs): the cell's own config first, else one of the same training."""
    matching = [r for r in records if fits(r, cell_config, dataset)]
    if not matching:
        return None, []
    own = [r for r in matching if r.config_name == cell_config]
    if own:
        return cell_config, own
    by_config = {}
    for r in matching:
        by_config.setdefault(r.config_name, []).append(r)
    name = sorted(by_config)[0]
    return name, by_config[name]


def _fill(result: CellResult, records, allow_mixed_commits: bool) -> CellResult:
    cell = result.cell
    result.runs_of, runs = _candidates(cell.config, result.dataset, records)
    if result.runs_of is None:
        return result
    if result.runs_of != cell.config:
        result.notes.append(f"from runs of {result.runs_of} (the same recipe and budget as {cell.config})")
    if not _config_files():
        result.notes.append("budget not checked: the repository's configs/ folder is not here")
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
    """One :class:`TableResult` per poster table, its cells filled from ``records`` by the rule above, then one per
    (poster table, other data set) that holds a run no poster table holds, labelled with that data set (no poster
    numbers)."""
    records = list(records)
    out = []
    for t in TABLES:
        cells = [_fill(CellResult(t.key, row.labels, col, row.cells[col], dataset=row.cells[col].dataset), records,
                       allow_mixed_commits) for row in t.rows for col in t.columns]
        out.append(TableResult(t.key, t.title, t.row_headers, t.columns, dict(t.column_labels), t.note, cells))
    # A table on another data set is made only for runs that no poster table holds: the CIFAR-10 trio fills the
    # CIFAR-10 table and does not make a "CIFAR-100 table on CIFAR-10" that repeats it.
    placed = {id(r) for table in out for c in table.cells for r in c.runs}
    for t in TABLES:
        poster_data = {c.dataset for row in t.rows for c in row.cells.values()}
        others = sorted({r.train_dataset for r in records} - poster_data)
        for dataset in others:
            cells = [_fill(CellResult(f"{t.key}@{dataset}", row.labels, col, row.cells[col], dataset=dataset),
                           records, allow_mixed_commits) for row in t.rows for col in t.columns]
            if not any(id(r) not in placed for c in cells for r in c.runs):
                continue
            source = sorted({r.train_data for c in cells for r in c.runs})
            out.append(TableResult(
                f"{t.key}@{dataset}", f"{t.title}: our rows on {', '.join(source)}", t.row_headers, t.columns,
                dict(t.column_labels), f"Trained and evaluated on {', '.join(source)}, not on the poster's "
                f"{' and '.join(sorted(poster_data))}: these numbers are not comparable with the poster's, which are "
                f"left out.", cells, comparable=False))
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
    evaluations = sorted({_evaluation_words(r) for r in runs})
    return (f"Runs: profile {', '.join(profiles)}; training data {', '.join(data)}; "
            f"commit {', '.join(commits)}"
            + (f" ({dirty} of {len(runs)} with uncommitted changes in the checkout)" if dirty else "") + ". "
            + f"Evaluation: {'; '.join(evaluations)}.")


def _evaluation_words(r: RunRecord) -> str:
    """How a run was evaluated, in words: test images per set and where the corrupted images came from."""
    e = r.evaluation or {}
    per_set, total = e.get("images_per_set"), e.get("num_test_images")
    images = (f"all {total:,} test images" if per_set == total or per_set is None else
              f"{per_set:,} of the {total:,} test images per set (class-balanced, the same in every set)")
    source = str((e.get("metrics") or {}).get("corruption_source") or "")
    if not source:
        corrupted = "no corrupted sets"
    elif "generated" in source.lower():
        corrupted = "corruptions generated by augmax_lib (not the published files)"
    else:
        corrupted = f"the published corrupted files ({source})"
    return f"{images}, {corrupted}"


def render_markdown(tables, roots=(), show_empty: bool = False, records=()) -> str:
    """All tables as Markdown: ours (mean ± sd, n seeds), the poster's number, and the difference.

    ``records``, when given, adds a list of the runs whose configs fill no cell (e.g. AugMix's own recipe).
    """
    count = len({str(r.run_dir) for t in tables for c in t.cells for r in c.runs})
    evaluated = len({str(r.run_dir) for r in records if r.evaluation is not None} | {
        str(r.run_dir) for t in tables for c in t.cells for r in c.runs})
    runs = f"{count} evaluated run(s)" if evaluated == count else f"{evaluated} evaluated run(s), {count} of them in the tables"
    lines = ["# AugMax reproduction: our runs beside the poster", "",
             f"Made by `python -m augmax_lib tables` from {runs}"
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
        per_column = 3 if t.comparable else 1
        for col in t.columns:
            label = t.column_labels.get(col) or METRICS[_column_metric(t, col)].label
            header += [label, "paper", "diff"][:per_column]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("| " + " | ".join(["---"] * len(t.row_headers) + ["---:"] * (per_column * len(t.columns)))
                     + " |")
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
                out += [text, _paper(c.cell), _num(c.diff, signed=True)][:per_column]
            lines.append("| " + " | ".join(out) + " |")
        if notes:
            lines.append("")
            lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
        lines.append("")
    used = {str(r.run_dir) for t in tables for c in t.cells for r in c.runs}
    others = {}
    for r in records:
        if str(r.run_dir) not in used and r.evaluation is not None:
            others.setdefault((r.config_name, outside_reason(r)), []).append(r)
    if others:
        lines += ["## Runs outside the poster's tables", "", "| Config | Seeds | SA (%) | RA (%) | Why not in a table |",
                  "| --- | --- | ---: | ---: | --- |"]
        for (name, why), runs in sorted(others.items()):
            cols = []
            for key in ("sa", "ra"):
                values = [v for v in (r.metric(key) for r in runs) if v is not None]
                cols.append(f"{statistics.fmean(values):.2f} (n={len(values)})" if values else "-")
            lines.append(f"| {name} | {', '.join(str(r.seed) for r in runs)} | {cols[0]} | {cols[1]} | {why} |")
        lines += ["", "These are not checked for mixed profiles or commits; see runs.csv for each run.", ""]
    return "\n".join(lines).rstrip() + "\n"


def outside_reason(r: RunRecord) -> str:
    """Why a run fills no cell of the poster's tables (nor of an "other data" table)."""
    table_configs = {c.config for t in TABLES for row in t.rows for c in row.cells.values()}
    if _config_files() and run_profile(r) is None:
        return "its budget is no profile's (keys of the recipe were overridden)"
    if r.eval_dataset is not None and r.eval_dataset != r.train_dataset:
        return f"trained on {r.train_dataset}, evaluated on {r.eval_dataset}"
    if r.config_name not in table_configs and not any(fits(r, c) for c in table_configs):
        return "not a row of the poster's tables"
    return "its cells are filled from other runs"


def _column_metric(t: TableResult, col: str) -> str:
    return next(c.cell.metric for c in t.cells if c.column == col)


CELL_COLUMNS = ("table", "table_title", "row", "column", "metric", "config", "runs_of", "dataset", "comparable", "mean",
                "std", "n", "seeds", "paper", "paper_spread", "diff", "profiles", "training_data", "evaluation",
                "commits", "refused", "notes")
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
                "dataset": c.dataset, "comparable": int(c.comparable),
                "mean": _round(c.mean), "std": _round(c.std), "n": c.n, "seeds": " ".join(map(str, c.seeds)),
                "paper": c.cell.paper if c.comparable else "",
                "paper_spread": "" if c.cell.paper_spread is None or not c.comparable else c.cell.paper_spread,
                "diff": _round(c.diff), "profiles": " ".join(sorted({r.profile or "" for r in c.runs})).strip(),
                "training_data": " | ".join(sorted({r.train_data for r in c.runs})),
                "evaluation": " | ".join(sorted({_evaluation_words(r) for r in c.runs})),
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
    from augmax_lib._io import atomic_write_text

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
