"""The progress bar of the library's long loops: ``tqdm.auto``, switched off by ``AUGMAX_PROGRESS=off``."""
from __future__ import annotations

import os

from tqdm.auto import tqdm as _auto_tqdm

__all__ = ["tqdm", "progress_off"]


def progress_off() -> bool:
    """Whether ``AUGMAX_PROGRESS`` asks for no bars (``off``, ``0``, ``false``, ``no``)."""
    return os.environ.get("AUGMAX_PROGRESS", "").strip().lower() in ("off", "0", "false", "no")


class tqdm(_auto_tqdm):
    """``tqdm.auto.tqdm`` that stays hidden under ``AUGMAX_PROGRESS=off``.

    Batch runs of the notebooks set it: in a kernel every bar is a widget, and papermill keeps the state of
    every widget it ever saw, closed or not, so hundreds of finished bars would be saved into the book.
    """

    def __init__(self, *args, **kwargs):
        if progress_off():
            kwargs["disable"] = True
        super().__init__(*args, **kwargs)
