"""Widgets that keep working in a static page: precomputed frames in a ``Stack``, switched by a ``jslink``ed control.

The frames are rendered once, at execution time, into PNG ``Image`` widgets. The control (slider, dropdown or
toggle buttons) is linked to the Stack's ``selected_index`` on the JavaScript side, so the widget state that
Jupyter saves in the notebook is all a page needs: no Python callback, no kernel. Each widget also carries a
static figure of its frames, shown under it, for print and PDF.

    frame_slider(frames, labels, description="step")            # IntSlider -> Stack
    frame_picker(frames, labels, description="op", kind="dropdown")
    frame_grid(rows_of_frames, row_labels, col_labels, ...)      # Dropdown picks the row, slider the column
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

__all__ = ["FrameWidget", "frame_slider", "frame_picker", "frame_grid"]


def _to_pil(frame, min_height: int):
    """A frame (matplotlib Figure, PIL image, uint8/float array or tensor) as an RGB PIL image."""
    from PIL import Image

    if hasattr(frame, "savefig"):  # matplotlib Figure: rendered once, then closed
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        frame.savefig(buffer, format="png", dpi=frame.dpi, bbox_inches="tight")
        plt.close(frame)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")
    if isinstance(frame, Image.Image):
        image = frame.convert("RGB")
    else:
        from .plots import to_uint8_hwc

        array = frame
        if hasattr(array, "dim") and array.dim() == 4:  # a batch of images: side by side with a 2-px gap
            array = _batch_strip(array)
        image = Image.fromarray(to_uint8_hwc(array))
    if image.height < min_height:  # small images (32 px) are enlarged with nearest neighbours, crisp pixels
        factor = math.ceil(min_height / image.height)
        image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    return image


def _batch_strip(batch):
    import torch

    from .plots import to_uint8_hwc

    images = [to_uint8_hwc(x) for x in batch]
    h = images[0].shape[0]
    gap = np.full((h, 2, 3), 255, dtype=np.uint8)
    parts = []
    for i, im in enumerate(images):
        parts += [im] + ([gap] if i < len(images) - 1 else [])
    return torch.from_numpy(np.concatenate(parts, axis=1)).permute(2, 0, 1)


@dataclass
class FrameWidget:
    """The widget box, its control(s), the Stack(s) and the static figure; displays both in a notebook."""

    widget: object
    controls: list
    stacks: list
    static_figure: object = None
    links: list = field(default_factory=list)

    @property
    def control(self):
        return self.controls[0]

    @property
    def stack(self):
        return self.stacks[0]

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
        if self.static_figure is not None:
            display(self.static_figure)


def _require_widgets():
    try:
        import ipywidgets
    except ImportError as err:  # pragma: no cover - the book extra is missing
        raise ImportError("augmax_lib.course.widgets needs ipywidgets (pip install 'augmax_lib[book]')") from err
    return ipywidgets


def _image_widgets(pngs: Sequence[bytes]):
    w = _require_widgets()
    return [w.Image(value=png, format="png", layout=w.Layout(max_width="100%", object_fit="contain"))
            for png in pngs]


def _label_stack(labels: Sequence[str], description: str):
    w = _require_widgets()
    return w.Stack([w.HTML(f"<b>{description}</b> {label}" if description else f"<b>{label}</b>")
                    for label in labels], selected_index=0)


def _check_frames(frames, labels, what: str = "frames"):
    frames = list(frames)
    if not frames:
        raise ValueError(f"{what}: expected at least one frame, got none")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"labels: expected {len(frames)} labels (one per frame), got {len(labels)}")
    return frames, [str(x) for x in labels] if labels is not None else [str(i) for i in range(len(frames))]


def _static(pils, labels, title, max_frames: int):
    import matplotlib.pyplot as plt

    from .plots import image_grid

    n = len(pils)
    keep = sorted({round(i * (n - 1) / max(1, min(n, max_frames) - 1)) for i in range(min(n, max_frames))})
    arrays = [np.asarray(pils[i]) for i in keep]
    names = [labels[i] for i in keep]
    if pils[0].width / pils[0].height < 2.5:  # small frames side by side, labelled above
        fig = image_grid([arrays], col_labels=names, title=title, cell=1.4)
    else:  # wide frames (strips of images) one under the other, labelled on the left
        fig = image_grid([[a] for a in arrays], row_labels=names, title=title, cell=0.9)
    plt.close(fig)  # shown by FrameWidget, not again by the inline backend
    return fig


def frame_slider(frames, labels: Optional[Sequence[str]] = None, description: str = "", *, static: bool = True,
                 static_title: str = "", static_max: int = 8, min_height: int = 96) -> FrameWidget:
    """An IntSlider that pages through precomputed ``frames``, linked on the JavaScript side (works kernel-less).

    ``labels`` (one per frame) are shown above the image and under the static figure's panels; the static
    figure shows up to ``static_max`` evenly spaced frames.
    """
    w = _require_widgets()
    frames, labels = _check_frames(frames, labels)
    pils = [_to_pil(f, min_height) for f in frames]
    stack = w.Stack(_image_widgets([_png(p) for p in pils]), selected_index=0)
    names = _label_stack(labels, description)
    slider = w.IntSlider(value=0, min=0, max=len(frames) - 1, step=1, description=description,
                         continuous_update=True, readout=False)  # the label line shows the frame's own label
    links = [w.jslink((slider, "value"), (stack, "selected_index")),
             w.jslink((slider, "value"), (names, "selected_index"))]
    box = w.VBox([slider, names, stack])
    figure = _static(pils, labels, static_title, static_max) if static else None
    return FrameWidget(box, [slider], [stack, names], figure, links)


def frame_picker(frames, labels: Sequence[str], description: str = "", *, kind: str = "dropdown",
                 static: bool = True, static_title: str = "", static_max: int = 8,
                 min_height: int = 96) -> FrameWidget:
    """A Dropdown (``kind="dropdown"``) or ToggleButtons (``"toggle"``) choosing one of ``frames`` by label."""
    w = _require_widgets()
    frames, labels = _check_frames(frames, labels)
    if kind not in ("dropdown", "toggle"):
        raise ValueError(f"kind: expected 'dropdown' or 'toggle', got {kind!r}")
    pils = [_to_pil(f, min_height) for f in frames]
    stack = w.Stack(_image_widgets([_png(p) for p in pils]), selected_index=0)
    cls = w.Dropdown if kind == "dropdown" else w.ToggleButtons
    control = cls(options=labels, index=0, description=description)
    links = [w.jslink((control, "index"), (stack, "selected_index"))]
    box = w.VBox([control, stack])
    figure = _static(pils, labels, static_title, static_max) if static else None
    return FrameWidget(box, [control], [stack], figure, links)


def frame_grid(frames: Sequence[Sequence], row_labels: Sequence[str], col_labels: Sequence[str],
               row_description: str = "", col_description: str = "", *, static: bool = True,
               static_title: str = "", static_images=None, min_height: int = 96) -> FrameWidget:
    """Frames on a rows x columns grid: a Dropdown picks the row, an IntSlider the column (both jslinked).

    One outer Stack holds a Stack per row; the dropdown drives the outer one and the slider every inner one.
    The static figure is ``static_images`` (a figure of your own) or a grid of all frames.
    """
    w = _require_widgets()
    rows = [list(r) for r in frames]
    if len(rows) != len(row_labels):
        raise ValueError(f"row_labels: expected {len(rows)} labels, got {len(row_labels)}")
    if any(len(r) != len(col_labels) for r in rows):
        raise ValueError(f"frames: every row must hold {len(col_labels)} frames (one per column label)")
    pil_rows = [[_to_pil(f, min_height) for f in r] for r in rows]
    inner = [w.Stack(_image_widgets([_png(p) for p in r]), selected_index=0) for r in pil_rows]
    outer = w.Stack(inner, selected_index=0)
    picker = w.Dropdown(options=[str(x) for x in row_labels], index=0, description=row_description)
    # No readout: it would count columns from 0 where the label line above the image names them ("severity 1").
    slider = w.IntSlider(value=0, min=0, max=len(col_labels) - 1, description=col_description, readout=False)
    names = _label_stack([str(c) for c in col_labels], col_description)
    links = [w.jslink((picker, "index"), (outer, "selected_index")),
             w.jslink((slider, "value"), (names, "selected_index"))]
    links += [w.jslink((slider, "value"), (stack, "selected_index")) for stack in inner]
    box = w.VBox([w.HBox([picker, slider]), names, outer])
    figure = None
    if static_images is not None:
        figure = static_images
    elif static:
        import matplotlib.pyplot as plt

        from .plots import image_grid

        figure = image_grid([[np.asarray(p) for p in r] for r in pil_rows], row_labels=list(row_labels),
                            col_labels=list(col_labels), title=static_title)
        plt.close(figure)
    return FrameWidget(box, [picker, slider], [outer, *inner, names], figure, links)


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()
