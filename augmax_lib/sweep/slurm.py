"""Asking Slurm about jobs and cancelling them: ``sacct`` for states, ``scancel`` to stop them.

Job ids are strings: ``1234`` or an array task ``1234_5``. States are sacct's first word (``RUNNING``,
``PENDING``, ``REQUEUED``, ``CANCELLED by 42`` -> ``CANCELLED``).
"""
from __future__ import annotations

import re
import subprocess
from typing import Iterable, Optional

__all__ = ["ALIVE", "WAITING", "ENDED", "sacct_states", "scancel", "is_live"]

# A job in one of these states still runs, or will (Slurm requeues a preempted or timed-out job with its id).
ALIVE = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED", "STAGE_OUT",
                   "SIGNALING", "STOPPED"})
WAITING = frozenset({"PENDING", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
                   "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})


def is_live(state: Optional[str]) -> Optional[bool]:
    """True when a job in ``state`` runs or waits to, False when it ended, None when the state is unknown."""
    if state is None:
        return None
    if state in ALIVE or state in WAITING:
        return True
    return False if state in ENDED else None


def _expand(job_id: str) -> list:
    """sacct's id of pending array tasks ``1234_[0-3,7%2]`` as ``1234_0 ... 1234_7``; other ids as they are."""
    match = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not match:
        return [job_id]
    base, spec = match.group(1), match.group(2).split("%")[0]
    ids = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        ids += [f"{base}_{k}" for k in range(int(low), int(high or low) + 1)]
    return ids


def sacct_states(job_ids: Iterable[str], timeout_s: float = 60.0) -> Optional[dict]:
    """``{job id: state}`` for the jobs sacct knows among ``job_ids`` (one call for all); None when sacct cannot
    be asked (not on a cluster, or it failed)."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return {}
    try:
        answer = subprocess.run(["sacct", "--noheader", "--parsable2", "--format=JobID,State", f"--jobs={','.join(ids)}"],
                                capture_output=True, text=True, timeout=timeout_s, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    wanted, states = set(ids), {}
    for line in answer.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 2 or fields[0] in ("", "JobID") or "." in fields[0]:
            continue  # a header, or a job step (1234.batch): the job's own line says its state
        state = fields[1].split()[0] if fields[1].strip() else "UNKNOWN"
        for job_id in _expand(fields[0]):
            # An array job's base id stands for its tasks; a later line (the newest record) wins.
            if job_id in wanted:
                states[job_id] = state
            elif "_" not in job_id:
                for task in (w for w in wanted if w.split("_")[0] == job_id and w not in states):
                    states[task] = state
    return states


def scancel(job_ids: Iterable[str], timeout_s: float = 60.0) -> None:
    """Cancel the Slurm jobs ``job_ids``; raise RuntimeError with scancel's message when it fails."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return
    try:
        subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=timeout_s, check=True)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"scancel {' '.join(ids)} failed: {(err.stderr or err.stdout or '').strip()}") from None
    except (OSError, subprocess.SubprocessError) as err:
        raise RuntimeError(f"scancel {' '.join(ids)} failed: {err}") from None
