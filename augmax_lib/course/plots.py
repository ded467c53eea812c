"""Figures of the course: image grids, heatmaps, training curves, 2-D embeddings (matplotlib).

Images may be tensors (C, H, W) / (N, C, H, W) uint8 in [0, 255] or float in [0, 1], numpy HWC arrays or
PIL images; every function returns the matplotlib Figure.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["to_uint8_hwc", "image_grid", "image_row", "heatmap", "curves", "embedding_scatter", "bar_groups"]


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


def image_row(images, labels: Optional[Sequence[str]] = None, title: str = "", cell: float = 1.2):
    """N images side by side with a label under each."""
    return image_grid([list(images)], col_labels=labels, title=title, cell=cell)


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


def embedding_scatter(points: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], class_names=None,
                      title: str = "", markers: str = "o^sxDv*P"):
    """2-D points of several image kinds (marker per kind) coloured by class, one legend for each."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(6.2, 4.8))
    cmap = plt.get_cmap("tab10")
    kinds = list(points)
    for i, kind in enumerate(kinds):
        p, y = np.asarray(points[kind]), np.asarray(labels[kind])
        ax.scatter(p[:, 0], p[:, 1], c=[cmap(int(v) % 10) for v in y], marker=markers[i % len(markers)],
                   s=22, alpha=0.75, linewidths=0.6 if markers[i % len(markers)] in "xP*" else 0.3,
                   edgecolors="black" if markers[i % len(markers)] not in "xP*" else None)
    kind_handles = [Line2D([], [], marker=markers[i % len(markers)], color="gray", ls="", label=k)
                    for i, k in enumerate(kinds)]
    legend = ax.legend(handles=kind_handles, loc="upper left", fontsize=8, title="images")
    ax.add_artist(legend)
    present = sorted({int(v) for y in labels.values() for v in np.asarray(y)})
    class_handles = [Line2D([], [], marker="o", color=cmap(c % 10), ls="",
                            label=class_names[c] if class_names else str(c)) for c in present]
    ax.legend(handles=class_handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title="class")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
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
