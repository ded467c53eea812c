"""``sweep --status``: the state of every job from its run directory, its record files and, on Slurm, sacct.

States: done, running, pending (queued, or requeued after a preemption or a time limit), submitted (handed to
the executor, not started), failed (with the tail of its log), cancelled, interrupted (preempted, timed out or
killed, and not requeued; the next sweep resumes it), partial, trained (not evaluated) and not started. A Slurm
job's state is asked of sacct for every job with an id, whatever its own files say.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .jobs import JobSpec, read_json, run_state
from .lock import pid_alive, read_lock
from .logs import log_tail
from .slurm import ALIVE, WAITING, sacct_states

__all__ = ["JobStatus", "job_status", "job_statuses", "slurm_states", "recorded_specs", "format_status"]

_SLURM_ALIVE = ALIVE - {"REQUEUED"}
_SLURM_WAITING = WAITING | {"REQUEUED"}  # requeued: back in the queue, to start again from its last.pt


@dataclass
class JobStatus:
    """One job's state, a one-line detail and, for a failed job, the tail of its log."""

    spec: JobSpec
    state: str
    detail: str = ""
    log: list = field(default_factory=list)
    log_path: Optional[str] = None


def slurm_states(records) -> dict:
    """sacct's state of each Slurm job among ``records`` (submission or lock records; one sacct call for all; {}
    when sacct cannot be asked)."""
    ids = sorted({str(r["job_id"]) for r in records if r and r.get("executor") == "slurm" and r.get("job_id")})
    states = sacct_states(ids) if ids else {}
    return {k: v for k, v in (states or {}).items() if v != "UNKNOWN"}


def _alive(submission: Optional[dict], state: dict, slurm: Optional[str]) -> Optional[bool]:
    """Whether a job that says it runs still does: True, False or None (cannot tell from here)."""
    if submission and submission.get("executor") == "slurm":
        return None if slurm is None else slurm in _SLURM_ALIVE | _SLURM_WAITING
    if state.get("host") == socket.gethostname():
        return pid_alive(state.get("pid"))
    return None


def _failure_log(submission: Optional[dict], state: Optional[dict], lines: int) -> tuple:
    for key in ("stderr", "stdout"):
        path = (submission or {}).get(key)
        tail = log_tail(path, lines)
        if tail:
            return tail, path
    trace = (state or {}).get("traceback") or ""
    return [line for line in trace.splitlines() if line.strip()][-lines:], None


def _scores(run_dir: Path) -> str:
    results = read_json(run_dir / "evaluation" / "results.json") or {}
    m = results.get("metrics", {})
    return "  ".join(f"{k.upper()} {100 * m[k]:.2f}" for k in ("sa", "ra", "mce") if isinstance(m.get(k), (int, float)))


def job_status(spec: JobSpec, slurm: Optional[dict] = None, log_lines: int = 15) -> JobStatus:
    """The state of one job (see the module docstring); ``slurm``: states from :func:`slurm_states`
    (default: sacct is asked about this job alone)."""
    run_dir, records = Path(spec.run_dir), Path(spec.record_dir)
    disk = run_state(run_dir)
    submission = read_json(records / "submission.json")
    state = read_json(records / "state.json")
    lock = read_lock(run_dir)
    if slurm is None:
        slurm = slurm_states([submission, lock])
    job_id = (submission or {}).get("job_id") or (lock or {}).get("job_id")
    slurm_state = slurm.get(str(job_id)) if (submission or lock or {}).get("executor") == "slurm" else None
    if state and submission and state.get("started", 0) < submission.get("submitted", 0):
        state = None  # written by an earlier submission of this job
    where = f"{state.get('host', '?')} pid {state.get('pid', '?')}" if state else ""
    if submission and submission.get("job_id") and submission.get("executor") == "slurm":
        where = f"Slurm job {submission['job_id']}"
    progress = f"epoch {disk.epoch}/{disk.epochs}" if disk.epochs else ""
    if disk.complete:
        return JobStatus(spec, "done", _scores(run_dir))
    kind = (state or {}).get("state")
    if kind in ("running", "interrupted") and slurm_state in _SLURM_WAITING:
        return JobStatus(spec, "pending", f"{where} {slurm_state.lower()}"
                         + (f"; requeued at {disk.describe()}, resumes from its last.pt" if kind == "interrupted" else ""))
    if kind == "interrupted" and slurm_state in _SLURM_ALIVE:
        stage = "evaluating" if disk.kind == "trained" else progress or "starting"
        return JobStatus(spec, "running", f"{stage} ({where}, requeued after an interruption)")
    if kind == "running":
        alive = _alive(submission, state, slurm_state)
        if alive is False:
            return JobStatus(spec, "interrupted", f"{disk.describe()}; the next sweep resumes it")
        stage = "evaluating" if disk.kind == "trained" else progress or "starting"
        return JobStatus(spec, "running", f"{stage} ({where})" + ("" if alive else ", not confirmed"))
    if kind == "failed":
        tail, path = _failure_log(submission, state, log_lines)
        return JobStatus(spec, "failed", state.get("error", ""), tail, path)
    if kind == "interrupted":
        return JobStatus(spec, "interrupted", f"{disk.describe()}; the next sweep resumes it")
    if kind == "cancelled":
        return JobStatus(spec, "cancelled", f"{disk.describe()}; the next sweep resumes it")
    if submission and not state:
        if slurm_state in _SLURM_ALIVE:
            return JobStatus(spec, "running", f"starting ({where})")
        if slurm_state in _SLURM_WAITING:
            return JobStatus(spec, "pending", f"{where} {slurm_state.lower()}")
        if slurm_state is not None and slurm_state not in _SLURM_ALIVE:
            tail, path = _failure_log(submission, None, log_lines)
            return JobStatus(spec, "failed", f"{where} ended {slurm_state} before it started its run", tail, path)
        if submission.get("executor") == "slurm":
            return JobStatus(spec, "pending", where)
        return JobStatus(spec, "submitted", f"not started ({disk.describe()})")
    return JobStatus(spec, {"empty": "not started"}.get(disk.kind, disk.kind), disk.describe())


def job_statuses(specs, log_lines: int = 15) -> list:
    """The state of every job of ``specs``, with one sacct call for all the Slurm ones."""
    records = [read_json(Path(s.record_dir) / "submission.json") for s in specs]
    records += [read_lock(s.run_dir) for s in specs]
    slurm = slurm_states(records)
    return [job_status(s, slurm, log_lines) for s in specs]


def recorded_specs(out) -> list:
    """The jobs a sweep into ``out`` has submitted, from their records (sorted by config name and seed)."""
    specs = []
    for path in sorted(Path(out).glob("_sweep/*/seed*/submission.json")):
        record = read_json(path)
        if record and "spec" in record:
            specs.append(JobSpec.from_dict(record["spec"]))
    return sorted(specs, key=lambda s: (s.name, s.seed))


def format_status(statuses) -> str:
    """A table of the states, then a summary line; failed jobs are followed by their log tail."""
    if not statuses:
        return "no jobs"
    width = max(len(s.spec.name) for s in statuses)
    lines = [f"{'config':<{width}}  seed  {'state':<11}  detail"]
    for s in statuses:
        lines.append(f"{s.spec.name:<{width}}  {s.spec.seed:>4}  {s.state:<11}  {s.detail}".rstrip())
        if s.log:
            lines += [f"{'':<{width}}        | {line}" for line in s.log]
            if s.log_path:
                lines.append(f"{'':<{width}}        (log: {s.log_path})")
    counts = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return "\n".join(lines)
