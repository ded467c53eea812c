"""What each course notebook costs: the times book/run_notebooks.py measured, per profile, read back by the notebooks.

``book/run_notebooks.py --record-times`` writes ``book/notebook_times.json`` after a complete, successful run of
every notebook in order (one entry per profile: date, commit, machine, whether the runs folder started empty,
and each notebook's seconds and the runs it trained). Each notebook opens with :func:`cost_table`, so the
reader knows what a chapter costs before running it; nobody types a time.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Optional

from .shared_runs import CONFIGS_DIR

__all__ = ["TIMES_FILE", "load_times", "record_times", "cost_table", "machine_description"]

TIMES_FILE = CONFIGS_DIR.parent / "book" / "notebook_times.json"


def machine_description() -> str:
    """'2-core AMD EPYC CPU (x86_64, fp32: no native bf16)' or the GPU's name: where the times were measured (the
    CPU's bf16 support decides the quick profile's arithmetic, and so its speed)."""
    import os

    import torch

    from augmax_lib._device import cpu_model, native_bf16

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} GPU"
    arithmetic = "bf16: native" if native_bf16("cpu") else "fp32: no native bf16"
    return f"{os.cpu_count()}-core {cpu_model() or platform.machine()} CPU ({platform.machine()}, {arithmetic})"


def load_times(path=None) -> dict:
    """The recorded times: ``{profile: {"date", "commit", "machine", "cold", "notebooks": {name: {...}}}}``."""
    path = Path(path) if path is not None else TIMES_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def record_times(profile: str, outcomes: list, *, commit: str, cold: bool, path=None, date: Optional[str] = None):
    """Store one profile's run: ``outcomes`` are dicts with notebook, status, seconds and trained (config names)."""
    import datetime as dt

    path = Path(path) if path is not None else TIMES_FILE
    times = load_times(path)
    times[str(profile)] = {
        "date": date or dt.date.today().isoformat(), "commit": commit, "machine": machine_description(),
        "cold": bool(cold),
        "notebooks": {o["notebook"]: {"seconds": round(float(o["seconds"]), 1), "trained": list(o.get("trained", []))}
                      for o in outcomes},
    }
    path.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")
    return times


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def cost_table(notebook: str, path=None) -> str:
    """Markdown: what ``notebook`` (its file name) took in every profile the runner recorded, with when and where."""
    times = load_times(path)
    rows = []
    for profile in sorted(times, key=lambda p: (p not in ("smoke", "quick", "long", "full"), p)):
        entry = times[profile]
        mine = entry.get("notebooks", {}).get(notebook)
        if mine is None:
            continue
        total = sum(n["seconds"] for n in entry["notebooks"].values())
        trained = ", ".join(mine.get("trained") or []) or "nothing (its models were trained earlier or ship with the library)"
        rows.append(f"| {profile} | {_duration(mine['seconds'])} | {trained} | {_duration(total)} for the whole "
                    f"book, {'from an empty runs folder' if entry.get('cold') else 'some runs already there'}; "
                    f"{entry['machine']}, {entry['date']}, commit `{str(entry['commit'])[:10]}` |")
    if not rows:
        return (f"*No recorded time for `{notebook}` yet: `python book/run_notebooks.py --record-times` measures "
                f"every notebook.*")
    return "\n".join(["| profile | this notebook | trained here | measured |", "| --- | ---: | --- | --- |", *rows,
                      "", "*Measured by `book/run_notebooks.py --record-times`, which runs every notebook in order; "
                          "a notebook run alone also trains the runs an earlier notebook would have made.*"])
