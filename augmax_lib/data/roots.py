"""Where data sets and decoded caches live, and the error raised when a data set is missing."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .._checks import InputError

__all__ = ["DatasetNotFoundError", "DataFormatError", "how_to_replace", "resolve_root", "describe_root", "cache_dir"]

DATA_ENV = "AUGMAX_DATA"
CACHE_ENV = "AUGMAX_CACHE"
DEFAULT_ROOT = Path("~/.cache/augmax")


class DatasetNotFoundError(FileNotFoundError, InputError):
    """A data set is not where we looked; the message lists every place and how to get the files."""

    def __init__(self, name: str, looked: list, how: str, root_note: str = ""):
        self.name = name
        self.looked = [Path(p) for p in looked]
        self.how = how
        places = "\n".join(f"  - {p}" for p in self.looked)
        note = f" ({root_note})" if root_note else ""
        super().__init__(f"{name} not found{note}. Looked in:\n{places}\nHow to get it: {how}")


class DataFormatError(ValueError, InputError):
    """A data file exists but does not hold what its format promises (shape, dtype, labels, count)."""


@contextmanager
def how_to_replace(how: str):
    """Add ``how`` (how to get the files again) to the message of a DataFormatError raised inside, once."""
    try:
        yield
    except DataFormatError as err:
        if not getattr(err, "how", None) and err.args:
            err.how = how
            err.args = (f"{err.args[0]}. To get it again: {how}", *err.args[1:])
        raise


def resolve_root(root=None) -> Path:
    """The data root: ``root`` if given, else ``$AUGMAX_DATA``, else ``~/.cache/augmax``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV, "")
    if env:
        return Path(env).expanduser()
    return DEFAULT_ROOT.expanduser()


def describe_root(root=None) -> str:
    """Say where the data root came from, for error messages."""
    if root is not None and str(root) != "":
        return f"data root {Path(root).expanduser()} from the root argument"
    env = os.environ.get(DATA_ENV, "")
    if env:
        return f"data root {Path(env).expanduser()} from ${DATA_ENV}"
    return (f"data root {DEFAULT_ROOT.expanduser()} (the default; pass root=... or set ${DATA_ENV} "
            f"to use another folder)")


def cache_dir(cache=None) -> Path:
    """Folder for decoded arrays: ``cache`` if given, else ``$AUGMAX_CACHE``, else ``~/.cache/augmax/decoded``.

    Kept apart from the data root because data roots may be read-only shared folders.
    """
    if cache is not None and str(cache) != "":
        return Path(cache).expanduser()
    env = os.environ.get(CACHE_ENV, "")
    if env:
        return Path(env).expanduser()
    return (DEFAULT_ROOT / "decoded").expanduser()
