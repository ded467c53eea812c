"""Reproduction at scale: every (config, seed) as a submitit job that trains and evaluates one run.

``plan`` turns configs and seeds into :class:`JobSpec` s, ``launch`` runs or submits them (debug, local,
slurm), ``job_status`` reports on them (asking sacct), ``cancel.cancel_jobs`` stops them. A lock beside each run
folder names the job that owns it, so that no run is ever submitted twice. Runs land in
``<out>/<config name>/seed<k>/``; the sweep's own records and submitit's logs in ``<out>/_sweep/``.
"""
from .jobs import JobSpec, RunState, SweepError, SweepJob, run_state
from .launch import (
    EXECUTORS,
    SlurmOptions,
    SweepReport,
    default_gpus,
    default_threads,
    find_configs,
    launch,
    make_executor,
    plan,
    tasks_per_job,
)
from .lock import acquire_lock, lock_path, read_lock, release_lock
from .logs import log_tail
from .status import JobStatus, format_status, job_status, job_statuses, recorded_specs, slurm_states

__all__ = ["JobSpec", "RunState", "SweepError", "SweepJob", "run_state", "EXECUTORS", "SlurmOptions", "SweepReport",
           "default_gpus", "default_threads", "find_configs", "launch", "make_executor", "plan", "tasks_per_job", "log_tail",
           "acquire_lock", "lock_path", "read_lock", "release_lock",
           "JobStatus", "format_status", "job_status", "job_statuses", "recorded_specs", "slurm_states"]
