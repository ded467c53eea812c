"""One config key's description: default, accepted type, help, choices and bounds (the schema's unit)."""
from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Option", "opt"]


@dataclasses.dataclass(frozen=True)
class Option:
    """One config key: its default, accepted type, help line and optional choices / bounds."""

    default: Any
    type: type
    help: str
    choices: tuple | None = None
    nullable: bool = False
    item: type | None = None  # element type of a list option
    minimum: float | None = None


def opt(default, type_, help_, **kw) -> Option:
    """An :class:`Option` (positional shorthand for the schema's tables)."""
    return Option(default, type_, help_, **kw)
