"""``sweep --cancel``: stop a sweep's jobs that still run or wait (scancel on Slurm, SIGINT to a local job)."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from .jobs import SweepError, read_json, write_json
from .lock import lock_holder, read_lock, release_lock
from .slurm import is_live, sacct_states, scancel

__all__ = ["cancel_jobs"]


def _job_of(spec) -> tuple:
    """(executor, job id, lock record) of a job's newest submission."""
    lock = read_lock(spec.run_dir)
    submission = read_json(Path(spec.record_dir) / "submission.json") or {}
    executor = (lock or submission).get("executor")
    job_id = (lock or {}).get("job_id") or submission.get("job_id")
    return executor, job_id, lock


def cancel_jobs(specs) -> list:
    """Cancel every job of ``specs`` that is pending, running or requeued; returns ``(label, job id, how)`` of each.

    Each cancelled job's state becomes 'cancelled' and its run's lock is released; its last.pt stays, so the
    next sweep resumes the run.
    """
    jobs = [(spec, *_job_of(spec)) for spec in specs]
    slurm_ids = [job_id for _, executor, job_id, _ in jobs if executor == "slurm" and job_id]
    states = sacct_states(slurm_ids) if slurm_ids else {}
    if slurm_ids and states is None:
        raise SweepError("--cancel: sacct cannot be asked which jobs still run (run it on the cluster's login node)")
    to_scancel, cancelled = [], []
    for spec, executor, job_id, lock in jobs:
        if executor == "slurm" and job_id and is_live(states.get(str(job_id))):
            to_scancel.append(str(job_id))
            cancelled.append((spec, str(job_id), "scancel"))
        elif executor == "local" and lock and lock_holder(lock, None)[0]:
            if lock.get("host") != socket.gethostname():
                raise SweepError(f"--cancel: {spec.label} runs on {lock.get('host')}; cancel it there")
            if job_id:  # the job's controller stops its tasks (SIGINT, then SIGKILL) and exits
                try:
                    os.kill(int(job_id), signal.SIGINT)
                except ProcessLookupError:
                    pass
                cancelled.append((spec, str(job_id), "SIGINT"))
    scancel(to_scancel)
    for spec, job_id, _ in cancelled:
        write_json(Path(spec.record_dir) / "state.json", {"state": "cancelled", "job_id": job_id,
                                                         "started": time.time(), "updated": time.time()})
        release_lock(spec.run_dir, job_id=job_id)
    return [(spec.label, job_id, how) for spec, job_id, how in cancelled]
