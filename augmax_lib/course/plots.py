"""Figures of the course: image grids, heatmaps, training curves, class means of 2-D embeddings (matplotlib).

Images may be tensors (C, H, W) / (N, C, H, W) uint8 in [0, 255] or float in [0, 1], numpy HWC arrays or
PIL images; every function returns the matplotlib Figure.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["to_uint8_hwc", "image_grid", "heatmap", "curves", "class_means_panels", "bar_groups"]


def to_uint8_hwc(image) -> np.ndarray:
    """One image as a uint8 (H, W, 3) numpy array (from a CHW tensor, an HWC array or a PIL image)."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() != 3:
            raise ValueError(f"image: expected one image (C, H, W), got shape {tuple(t.shape)}")
        if t.dtype != torch.uint8:
            t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
        arr = t.permute(1, 2, 0).numpy()
    else:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


def _as_rows(images, ncols: Optional[int]) -> list[list]:
    if isinstance(images, torch.Tensor):
        if images.dim() == 5:
            return [[images[r, c] for c in range(images.shape[1])] for r in range(images.shape[0])]
        if images.dim() == 4:
            flat = list(images)
        else:
            raise ValueError(f"images: expected (R, C, ch, H, W) or (N, ch, H, W), got shape {tuple(images.shape)}")
    elif images and isinstance(images[0], (list, tuple)):
        return [list(row) for row in images]
    elif images and isinstance(images[0], torch.Tensor) and images[0].dim() == 4:
        return [list(row) for row in images]
    else:
        flat = list(images)
    ncols = ncols or len(flat)
    return [flat[i:i + ncols] for i in range(0, len(flat), ncols)]


def image_grid(images, row_labels: Optional[Sequence[str]] = None, col_labels: Optional[Sequence[str]] = None,
               title: str = "", ncols: Optional[int] = None, cell: float = 1.0, fontsize: int = 8, gap: int = 2):
    """A grid of images: rows x columns (a nested list, an (R, C, ch, H, W) tensor, or N images in ``ncols``).

    The images are pasted into one mosaic (white ``gap`` pixels between them) drawn with a single ``imshow``,
    so a 19 x 6 grid costs one image, not 114 axes; ``cell`` is the size of one image in inches.
    """
    import matplotlib.pyplot as plt

    rows = _as_rows(images, ncols)
    nrows, ncols = len(rows), max(len(r) for r in rows)
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"row_labels: expected {nrows} labels, got {len(row_labels)}")
    if col_labels is not None and len(col_labels) != ncols:
        raise ValueError(f"col_labels: expected {ncols} labels, got {len(col_labels)}")
    arrays = [[to_uint8_hwc(im) if im is not None else None for im in row] for row in rows]
    h = max(a.shape[0] for row in arrays for a in row if a is not None)
    w = max(a.shape[1] for row in arrays for a in row if a is not None)
    canvas = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(arrays):
        for c, a in enumerate(row):
            if a is not None:
                top, left = r * (h + gap) + (h - a.shape[0]) // 2, c * (w + gap) + (w - a.shape[1]) // 2
                canvas[top:top + a.shape[0], left:left + a.shape[1]] = a
    aspect = w / h
    label_w = 0.12 * max((len(str(x)) for x in row_labels), default=0) if row_labels is not None else 0.1
    fig_w = label_w + cell * aspect * ncols + 0.2
    fig_h = cell * nrows + 0.3 * bool(col_labels) + 0.35 * bool(title) + 0.1
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([c * (w + gap) + w / 2 for c in range(ncols)] if col_labels is not None else [],
                  [str(x) for x in col_labels] if col_labels is not None else [], fontsize=fontsize)
    ax.xaxis.tick_top()
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(nrows)] if row_labels is not None else [],
                  [str(x) for x in row_labels] if row_labels is not None else [], fontsize=fontsize)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    fig.tight_layout(pad=0.3)
    return fig


def heatmap(table, row_labels: Optional[Sequence[str]] = None, col_labels: Optional[Sequence[str]] = None,
            title: str = "", fmt: str = "{:.0f}", scale: float = 1.0, cmap: str = "viridis", vmin=None, vmax=None,
            colorbar_label: str = "", ax=None, annotate: bool = True):
    """A table (pandas DataFrame or 2-D array) as a coloured grid with each value written in its cell."""
    import matplotlib.pyplot as plt

    if hasattr(table, "to_numpy"):
        row_labels = list(table.index) if row_labels is None else row_labels
        col_labels = list(table.columns) if col_labels is None else col_labels
        values = table.to_numpy(dtype=float)
    else:
        values = np.asarray(table, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"table: expected a 2-D table, got shape {values.shape}")
    values = values * scale
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.2 + 0.6 * values.shape[1], 0.8 + 0.32 * values.shape[0]))
    else:
        fig = ax.figure
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in (col_labels or range(values.shape[1]))])
    ax.set_yticks(range(values.shape[0]), [str(r) for r in (row_labels or range(values.shape[0]))])
    if annotate:
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                # Dark text on light cells, light on dark, read from the cell's own colour (any colormap).
                red, green, blue, _ = image.cmap(image.norm(v))
                light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
                ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=7,
                        color="black" if light else "white")
    bar = fig.colorbar(image, ax=ax)
    if colorbar_label:
        bar.set_label(colorbar_label)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def curves(logs: Mapping[str, object], columns: Sequence[str] = ("train_loss", "train_acc", "val_acc"),
           x: str = "epoch", title: str = "", percent: Sequence[str] = ("train_acc", "val_acc")):
    """One panel per log column, one line per run: ``logs`` maps a run label to its per-epoch DataFrame."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(3.4 * len(columns), 2.8), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for label, log in logs.items():
            if column in log:
                y = log[column] * (100 if column in percent else 1)
                ax.plot(log[x], y, marker="o", ms=3, label=label)
        ax.set_xlabel(x)
        ax.set_title(column + (" (%)" if column in percent else ""), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_means_panels(points: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], class_names=None,
                       title: str = "", reference: Optional[str] = None):
    """One panel per image kind, on shared axes: each class's mean (a dot) and spread (the 1-sd ellipse of its
    points) in 2-D, instead of thousands of overlapping points. ``reference`` (a kind) is drawn as grey crosses in
    every other panel, so that each panel shows where the classes moved from."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    kinds = list(points)
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.9 * len(kinds) + 1.4, 3.3), sharex=True, sharey=True,
                             squeeze=False)
    cmap = plt.get_cmap("tab10")
    present = sorted({int(v) for y in labels.values() for v in np.asarray(y)})

    def stats(kind):
        p, y = np.asarray(points[kind], dtype=float), np.asarray(labels[kind])
        out = {}
        for c in present:
            q = p[y == c]
            if len(q):
                out[c] = (q.mean(0), np.cov(q.T) if len(q) > 2 else np.zeros((2, 2)))
        return out

    for ax, kind in zip(axes[0], kinds):
        for c, (mean, cov) in stats(kind).items():
            values, vectors = np.linalg.eigh(cov)
            angle = float(np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1])))
            width, height = 2 * np.sqrt(np.clip(values[::-1], 0, None))
            ax.add_patch(Ellipse(mean, width, height, angle=angle, facecolor=cmap(c % 10), alpha=0.18,
                                 edgecolor=cmap(c % 10), lw=1))
            ax.plot(*mean, "o", color=cmap(c % 10), ms=6, mec="black", mew=0.5)
        if reference is not None and kind != reference:
            for c, (mean, _) in stats(reference).items():
                ax.plot(*mean, "x", color="gray", ms=6, mew=1.2)
        ax.set_title(kind, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.autoscale_view()
    handles = [Line2D([], [], marker="o", color=cmap(c % 10), ls="", mec="black", mew=0.5,
                      label=class_names[c] if class_names else str(c)) for c in present]
    if reference is not None:
        handles.append(Line2D([], [], marker="x", color="gray", ls="", label=f"{reference} means"))
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, title="class")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def bar_groups(values: Mapping[str, Sequence[float]], categories: Sequence[str], ylabel: str = "", title: str = "",
               fmt: str = "{:.1f}", ax=None):
    """Grouped bars: one group per category, one bar per series in ``values``, each bar labelled."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(categories) * max(1, len(values)) / 2, 3.0))
    else:
        fig = ax.figure
    width = 0.8 / max(1, len(values))
    for i, (name, vals) in enumerate(values.items()):
        xs = np.arange(len(categories)) + (i - (len(values) - 1) / 2) * width
        bars = ax.bar(xs, vals, width, label=name)
        ax.bar_label(bars, labels=[fmt.format(v) for v in vals], fontsize=7)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
