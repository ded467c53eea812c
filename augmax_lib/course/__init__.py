"""What the course notebooks need beyond the library: shared runs, notebook parameters, plots, static widgets.

``shared_runs.get_run`` loads, resumes or trains the run of a config in a profile (nothing is trained twice);
``params.resolve`` turns a notebook's parameters cell into a :class:`~augmax_lib.course.params.Setup`;
``plots`` draws image grids, heatmaps and curves; ``widgets`` shows precomputed frames behind controls that
are linked on the JavaScript side, so a static page keeps working without a kernel. ``plots`` and ``widgets``
need the ``book`` extra (matplotlib, ipywidgets).
"""
import importlib
from pathlib import Path

# Every module of this folder loads on first use (``augmax_lib.course.plots``), so importing the package is cheap.
_SUBMODULES = tuple(sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_")))


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'augmax_lib.course' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
