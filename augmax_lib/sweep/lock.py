"""The lock on a run folder: ``<out>/<config>/seed<k>.lock`` names the job that owns the run.

A sweep takes the lock before it submits a job and records the job's id in it; the job lets it go when it
finishes or fails. A preempted or timed-out Slurm job keeps it: Slurm requeues the job with the same id. A
sweep never submits a run whose lock is held by a job that is pending, running or requeued (asked of sacct,
or, for local jobs, of the process table), and takes over a lock whose job is gone.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Optional

from .slurm import is_live

__all__ = ["lock_path", "read_lock", "acquire_lock", "update_lock", "release_lock", "lock_holder"]


def lock_path(run_dir) -> Path:
    """The lock file of the run folder ``run_dir`` (beside it, so that the run folder holds only the run)."""
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".lock")


def read_lock(run_dir) -> Optional[dict]:
    """The lock's record, or None when the run is not locked (or the file is unreadable)."""
    try:
        record = json.loads(lock_path(run_dir).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def pid_alive(pid) -> bool:
    """Whether a process of this id runs on this machine (True when that cannot be told)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True
    return True


def lock_holder(record: Optional[dict], slurm: Optional[dict]) -> tuple:
    """Whether the lock's job still holds the run: (True, why), (False, why) or (None, why) when it cannot be told.

    ``slurm``: sacct's states by job id (None: sacct could not be asked).
    """
    if not record:
        return False, "not locked"
    job_id = record.get("job_id")
    if record.get("executor") == "slurm":
        if not job_id:  # taken by a sweep that is submitting now (or that died while it did)
            alive = pid_alive(record.get("pid")) if record.get("host") == socket.gethostname() else None
            return (alive, f"being submitted by {record.get('host')} pid {record.get('pid')}") if alive is not False \
                else (False, "its sweep died before submitting")
        state = (slurm or {}).get(str(job_id))
        live = is_live(state)
        if slurm is None or state is None:
            return None, f"Slurm job {job_id} (sacct cannot say whether it still runs)"
        return live, f"Slurm job {job_id} {state}"
    if record.get("host") != socket.gethostname():
        return None, f"a {record.get('executor', '?')} job on {record.get('host')} (cannot be checked from here)"
    pids = [p for p in (record.get("pid"), job_id) if str(p).isdigit() and int(p) > 1]  # never pid 0: a group
    alive = any(pid_alive(p) for p in pids)
    return alive, f"{record.get('executor', 'local')} job {job_id or '?'} (pid {', '.join(map(str, pids))})"


def acquire_lock(run_dir, executor: str, slurm: Optional[dict] = None) -> tuple:
    """Take the lock of ``run_dir`` for a job this process submits: (True, record) or (False, the holder's record).

    A lock whose job is gone is taken over; one whose job may still run is left alone.
    """
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"executor": executor, "job_id": None, "host": socket.gethostname(), "pid": os.getpid(),
              "taken": time.time(), "token": uuid.uuid4().hex}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            held = read_lock(run_dir)
            if held is None:  # being written this instant, or damaged: look again once
                time.sleep(0.1)
                held = read_lock(run_dir)
            if held is not None and lock_holder(held, slurm)[0] is not False:
                return False, held
            try:  # the holder is gone: take the lock over (the next attempt creates it afresh)
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record) + "\n")
        return True, record
    return False, read_lock(run_dir) or {}


def update_lock(run_dir, record: dict, **changes) -> dict:
    """Record ``changes`` (e.g. the job id once submitted) in a lock this process holds; the new record."""
    from augmax_lib._io import atomic_write_text

    new = {**record, **changes}
    atomic_write_text(lock_path(run_dir), json.dumps(new) + "\n")
    return new


def release_lock(run_dir, job_id=None, token: Optional[str] = None) -> bool:
    """Let go of the lock if it is this job's (same ``job_id``, or the same ``token``); True when removed."""
    held = read_lock(run_dir)
    if held is None:
        return False
    mine = (token is not None and held.get("token") == token) or \
           (job_id is not None and str(held.get("job_id")) == str(job_id))
    if not mine:
        return False
    try:
        lock_path(run_dir).unlink()
    except FileNotFoundError:
        return False
    return True
