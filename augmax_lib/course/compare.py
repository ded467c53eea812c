"""Our runs beside the poster's rows: one summary line per run with its provenance, and the rows of a table.

The poster's numbers are never typed here: they come from the ``paper`` section of each config under
``configs/`` (what the run was trained to reproduce). Every summary carries the profile, data, seed,
evaluation size, device and commit its numbers come from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

__all__ = ["run_summary", "summary_frame", "table_configs", "pick_dataset", "plot_ours_vs_poster"]


def _pct(value) -> Optional[float]:
    return None if value is None else 100.0 * float(value)


def run_summary(run) -> dict:
    """One run's numbers (%, with standard errors where the evaluation used a subset) and where they come from.

    ``run``: an ``augmax_lib.course.shared_runs.Run`` (trained; evaluated for SA/RA). Keys: config, profile, data,
    seed, epochs, eval_images, sa, sa_se, ra, ra_se, spatial, cifar101_v4, cifar101_v6, val_acc (the best
    validation accuracy during training), paper_sa, paper_ra, paper_cifar101, paper_sta, paper_row,
    device, commit.
    """
    results = run.results or {}
    evaluation = run.evaluation or {}
    metrics = evaluation.get("metrics", {})
    paper = run.config.get("paper", {})
    train_prov = results.get("provenance", {})
    eval_prov = evaluation.get("provenance", {})
    commit = (eval_prov.get("git") or {}).get("commit") or train_prov.get("git_commit")
    spatial = metrics.get("spatial") or {}
    cifar101 = metrics.get("cifar101") or {}
    best = (results.get("best") or {}).get("row") or {}
    return {
        "config": run.name, "profile": run.profile, "data": run.data_source, "seed": run.seed,
        "epochs": results.get("epochs"), "eval_images": evaluation.get("eval_images", evaluation.get("images_per_set")),
        "sa": _pct(metrics.get("sa")), "sa_se": _pct(metrics.get("sa_se")),
        "ra": _pct(metrics.get("ra")), "ra_se": _pct(metrics.get("ra_se")),
        "spatial": _pct(spatial.get("worst_loss")),
        "cifar101_v4": _pct(cifar101.get("v4")), "cifar101_v6": _pct(cifar101.get("v6")),
        "val_acc": _pct(best.get("val_acc")),
        "paper_sa": paper.get("sa"), "paper_ra": paper.get("ra"), "paper_cifar101": paper.get("cifar101"),
        "paper_sta": paper.get("sta"), "paper_row": paper.get("row", ""),
        "device": eval_prov.get("device") or train_prov.get("device_name"),
        "commit": commit[:10] if commit else None,
    }


def summary_frame(runs: Mapping[str, object]) -> pd.DataFrame:
    """:func:`run_summary` of each run, one row per label of ``runs`` (a mapping label -> Run)."""
    if not runs:
        raise ValueError("runs: expected at least one run (a mapping of label -> Run)")
    frame = pd.DataFrame([run_summary(run) for run in runs.values()], index=pd.Index(list(runs), name="run"))
    return frame


def table_configs(folder: str, dataset: Optional[str] = None, configs_dir=None) -> pd.DataFrame:
    """The configs of one poster table (a folder under configs/, e.g. 'ablation_strategy') with their paper rows.

    ``dataset``: keep only configs whose file name starts with it (``cifar10_`` does not match ``cifar100_``).
    Columns: config (the name get_run takes), row, table, and the paper's sa/ra/mce/cifar101/sta, in the
    file's order of rows as the poster prints them (sorted by file name otherwise).
    """
    import yaml

    from .shared_runs import CONFIGS_DIR

    base = Path(configs_dir) if configs_dir is not None else CONFIGS_DIR
    path = base / folder
    if not path.is_dir():
        known = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        raise FileNotFoundError(f"folder: no config folder {str(path)!r}; known: {', '.join(known) or 'none'}")
    rows = []
    for file in sorted(path.glob("*.yaml")):
        if dataset is not None and not file.stem.startswith(f"{dataset}_"):
            continue
        raw = yaml.safe_load(file.read_text()) or {}
        paper = raw.get("paper") or {}
        rows.append({"config": f"{folder}/{file.stem}", "name": raw.get("name", file.stem), "row": paper.get("row", ""),
                     "table": paper.get("table", ""), **{k: paper.get(k) for k in ("sa", "ra", "mce", "cifar101", "sta")}})
    if not rows:
        raise FileNotFoundError(f"folder: no config in {str(path)!r}"
                                + (f" for data set {dataset!r}" if dataset else ""))
    return pd.DataFrame(sorted(rows, key=lambda r: _poster_position(r["name"])))


def _poster_position(name: str) -> tuple:
    """Where a config's row sits in the poster (augmax_lib.paper_numbers.TABLES), for printing rows in its order."""
    try:
        from augmax_lib.paper_numbers import TABLES
    except ImportError:
        return (1, 0, name)
    for t, table in enumerate(TABLES):
        for r, row in enumerate(table.rows):
            if any(cell.config == name for cell in row.cells.values()):
                return (0, t * 1000 + r, name)
    return (1, 0, name)


def pick_dataset(wanted: str, root=None, fallbacks=("cifar10", "synthetic")) -> tuple[str, str]:
    """The first of ``wanted`` and ``fallbacks`` whose test set loads from ``root``, and a note saying why.

    The note is empty when ``wanted`` itself is there; otherwise it names what was missing and what is used.
    """
    from augmax_lib.data import DatasetNotFoundError, load_dataset

    if wanted == "synthetic":
        return wanted, ""
    missing = []
    for name in (wanted, *[f for f in fallbacks if f != wanted]):
        if name == "synthetic":
            break
        try:
            load_dataset(name, "test", root=root)
        except DatasetNotFoundError as err:
            # The error's first line up to where it names the data root: no path of this machine on the page.
            missing.append(f"{name} ({str(err).splitlines()[0].split(' (data root')[0]})")
            continue
        if name == wanted:
            return name, ""
        return name, (f"{wanted} is not in the data root, so these rows run on {name} instead: the numbers are "
                      f"not comparable with the poster's {wanted} columns. Missing: {'; '.join(missing)}")
    return "synthetic", (f"none of {', '.join([wanted, *fallbacks[:-1]])} is in the data root: these rows run on the "
                         f"SYNTHETIC shapes, which say nothing about the poster's numbers. Missing: {'; '.join(missing)}")


def plot_ours_vs_poster(frame: pd.DataFrame, labels=None, title: str = "", ours_label: str = "ours",
                        x: str = "sa", y: str = "ra", poster_label: str = "poster"):
    """Two panels with the same rows: our ``y`` against ``x`` (error bars where known) and the poster's.

    ``frame``: a :func:`summary_frame`-like table (columns x, y, x_se, y_se, paper_x, paper_y). Each row keeps one
    colour and marker in both panels and is named once, in a legend beside them: no text is drawn over the
    points, so rows with close numbers never print their names over each other. A row without a number is
    left out of that panel.
    """
    import matplotlib.pyplot as plt

    labels = list(frame.index) if labels is None else list(labels)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    cmap = plt.get_cmap("tab10")
    markers = "osD^vP*Xhp"
    handles = {}
    for ax, prefix, name in ((axes[0], "", ours_label), (axes[1], "paper_", poster_label)):
        for i, (label, (_, row)) in enumerate(zip(labels, frame.iterrows())):
            xv, yv = row.get(prefix + x), row.get(prefix + y)
            if xv is None or yv is None or pd.isna(xv) or pd.isna(yv):
                continue
            xerr = row.get(f"{x}_se") if not prefix else None
            yerr = row.get(f"{y}_se") if not prefix else None
            drawn = ax.errorbar(xv, yv, xerr=None if xerr is None or pd.isna(xerr) else xerr,
                                yerr=None if yerr is None or pd.isna(yerr) else yerr, fmt=markers[i % len(markers)],
                                color=cmap(i % 10), ms=7, capsize=3, mec="black", mew=0.5, label=str(label))
            handles.setdefault(str(label), drawn)
        ax.set_xlabel(f"{x.upper()} (%)")
        ax.set_ylabel(f"{y.upper()} (%)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[1].legend(handles=list(handles.values()), labels=list(handles), fontsize=8, loc="upper left",
                   bbox_to_anchor=(1.02, 1.0))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
