"""Plan a sweep (configs x seeds) and run it through submitit: in-process, local subprocesses or a Slurm array.

``debug`` runs the jobs one after another in this process. ``local`` starts each job as a subprocess; submitit's
LocalExecutor starts every job it is given at once, so at most ``max_parallel`` are handed to it at a time
(and each gets ``cores / max_parallel`` torch threads, or its own GPUs). ``slurm`` submits one job array
(``--array=0-(n-1)%max_parallel``) and returns; ``sweep --status`` follows it. A job with several tasks (one
per GPU, or ``tasks_per_job`` gloo processes on a CPU) trains with DDP.

Each run folder is locked (``<run>.lock``, see :mod:`.lock`) by the job that owns it, so that a second sweep
never submits a run whose job is still pending, running or requeued.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from .jobs import JobSpec, SweepError, SweepJob, config_conflicts, expected_config, record_dir, run_state, write_json
from .lock import acquire_lock, lock_holder, read_lock, release_lock, update_lock
from .logs import log_tail
from .slurm import sacct_states

__all__ = ["EXECUTORS", "SlurmOptions", "SweepReport", "find_configs", "plan", "make_executor", "launch",
           "default_gpus", "default_threads", "tasks_per_job"]

EXECUTORS = ("local", "slurm", "debug")
INSTALL_HINT = "the sweep needs submitit: pip install submitit==1.5.4 (or pip install -e '.[sweep]')"


@dataclass
class SlurmOptions:
    """Resources of each job; the Slurm-only ones are ignored by the other executors."""

    timeout_min: int = 1440
    gpus_per_job: int = 0
    tasks_per_job: Optional[int] = None  # processes per node (None: one per GPU, at least one)
    nodes: int = 1
    max_num_timeout: int = 3          # requeues after a time limit before submitit gives up (preemptions are free)
    signal_delay_s: int = 120         # the USR2 that asks the job to requeue comes this long before the limit
    cpus_per_job: Optional[int] = None
    mem_gb: Optional[float] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    setup: tuple = ()                 # shell lines run before the job (module load ..., source venv)
    extra: dict = field(default_factory=dict)  # further #SBATCH --key=value


@dataclass
class SweepReport:
    """What a sweep did: labels of jobs skipped (complete), held (a live job owns the run), finished, failed
    (with reasons) and submitted."""

    skipped: list = field(default_factory=list)
    held: list = field(default_factory=list)
    done: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    submitted: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def find_configs(paths) -> list:
    """YAML config files named by ``paths`` (files, or folders searched recursively; profiles/ folders left out)."""
    found = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.y*ml") if "profiles" not in p.relative_to(path).parts[:-1]
                           and p.suffix in (".yaml", ".yml"))
            if not files:
                raise SweepError(f"{text}: no .yaml configs in this folder")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise SweepError(f"{text}: no such config file or folder (expected e.g. "
                             f"configs/cifar10/resnet18_normal.yaml or configs/cifar10)")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def plan(configs, seeds, out, profile=None, overrides=(), eval_args=(), threads=None, dry_run: bool = False) -> list:
    """One :class:`JobSpec` per (config, seed), each config checked now (a bad --set fails before anything runs).

    ``dry_run``: each job is its config capped to a few steps and images (augmax_lib.train.dry_run).
    """
    from augmax_lib.train import ConfigError
    from augmax_lib.train.dry_run import dry_run_overrides

    if not seeds:
        raise SweepError("--seeds: expected at least one seed")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds: each seed once, got {list(seeds)}")
    for text in overrides:
        if text.split("=", 1)[0].strip() == "train.seed":
            raise SweepError("--set train.seed: the sweep sets the seed of each job; use --seeds")
    if profile and Path(profile).suffix in (".yaml", ".yml"):
        profile = str(Path(profile).resolve())
    out = Path(out).resolve()
    specs, names = [], {}
    for config in find_configs(configs):
        base = JobSpec(str(config), "", seeds[0], "", "", profile, tuple(overrides), tuple(eval_args), threads)
        try:
            expected = expected_config(base)
        except ConfigError as err:
            raise SweepError(f"{config}: {err}") from None
        name = expected["name"]
        config_overrides = tuple(overrides) + (tuple(dry_run_overrides(expected)) if dry_run else ())
        if name in names:
            raise SweepError(f"configs {names[name]} and {config} have the same name {name!r} (their runs would share "
                             f"{out / name}); give one another name")
        names[name] = config
        for seed in seeds:
            specs.append(JobSpec(str(config), name, int(seed), str(out / name / f"seed{seed}"),
                                 str(record_dir(out, name, seed)), profile, config_overrides, tuple(eval_args),
                                 threads))
    return specs


def _submitit():
    try:
        import submitit
    except ImportError:
        raise SweepError(INSTALL_HINT) from None
    return submitit


def make_executor(kind: str, folder, options: SlurmOptions, max_parallel: int, name: str = "augmax-sweep"):
    """A submitit executor for ``kind`` (DebugExecutor, LocalExecutor or SlurmExecutor) with the job resources set."""
    submitit = _submitit()
    tasks = tasks_per_job(options)
    if kind == "debug":
        if tasks > 1 or options.nodes > 1:
            raise SweepError("--executor debug runs one process per job; use local or slurm for multi-process jobs")
        return submitit.DebugExecutor(folder=str(folder))
    if kind == "local":
        if options.nodes > 1:
            raise SweepError(f"--nodes {options.nodes}: the local executor runs on this machine only; use slurm")
        executor = submitit.LocalExecutor(folder=str(folder), max_num_timeout=options.max_num_timeout)
        # Without timeout_min the LocalExecutor stops a job after 2 minutes.
        executor.update_parameters(timeout_min=int(options.timeout_min), gpus_per_node=options.gpus_per_job,
                                   tasks_per_node=tasks, signal_delay_s=int(options.signal_delay_s))
        return executor
    if kind != "slurm":
        raise SweepError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {kind!r}")
    try:
        executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=options.max_num_timeout)
    except RuntimeError as err:  # no srun on PATH
        raise SweepError(f"--executor slurm: {err} (run the sweep on a Slurm login node)") from None
    params = {"time": int(options.timeout_min), "job_name": name, "array_parallelism": max_parallel,
              "signal_delay_s": int(options.signal_delay_s), "nodes": int(options.nodes),
              # One task per GPU (or per process asked): a job with several trains with DDP (see SweepJob).
              "ntasks_per_node": tasks}
    if options.gpus_per_job:
        params["gpus_per_node"] = options.gpus_per_job
    if options.cpus_per_job:
        params["cpus_per_task"] = options.cpus_per_job
    if options.mem_gb:
        params["mem"] = f"{int(options.mem_gb)}GB" if float(options.mem_gb).is_integer() \
            else f"{int(options.mem_gb * 1024)}MB"
    for key in ("partition", "account", "qos"):
        if getattr(options, key):
            params[key] = getattr(options, key)
    if options.setup:
        params["setup"] = list(options.setup)
    if options.extra:
        params["additional_parameters"] = dict(options.extra)
    executor.update_parameters(**params)
    return executor


def _record_submission(spec: JobSpec, kind: str, job=None, submitted: Optional[float] = None) -> float:
    """Write the job's submission.json: before submitting (no job yet), then again with the job id and logs."""
    submitted = time.time() if submitted is None else submitted
    record = {"executor": kind, "submitted": submitted, "spec": spec.to_dict()}
    if job is not None:
        record["job_id"] = str(job.job_id)
        if kind != "debug":
            record.update(submitit_folder=str(job.paths.folder), stdout=str(job.paths.stdout),
                          stderr=str(job.paths.stderr))
    write_json(Path(spec.record_dir) / "submission.json", record)
    return submitted


def tasks_per_job(options: SlurmOptions) -> int:
    """Processes per node of each job: as asked, else one per GPU, at least one."""
    tasks = options.tasks_per_job if options.tasks_per_job is not None else max(1, options.gpus_per_job)
    if tasks < 1:
        raise SweepError(f"--tasks-per-job: expected >= 1, got {tasks}")
    if options.gpus_per_job and tasks != options.gpus_per_job:
        raise SweepError(f"--tasks-per-job {tasks} with --gpus-per-job {options.gpus_per_job}: DDP runs one process "
                         f"per GPU; give as many tasks as GPUs (or leave --tasks-per-job out)")
    return tasks


def _submission_failed(spec: JobSpec, kind: str, error: BaseException, lock: dict, report: SweepReport,
                       stream) -> None:
    """A job that could not be submitted: failed, with the submitter's error, and its run unlocked."""
    reason = f"submission failed: {_one_line(error)}"
    write_json(Path(spec.record_dir) / "state.json", {"state": "failed", "job_id": None, "started": time.time(),
                                                     "updated": time.time(), "error": reason})
    release_lock(spec.run_dir, token=lock.get("token"))
    report.failed[spec.label] = reason
    _say(f"FAILED  {spec.label}: {reason}", stream)


def _submit(executor, spec: JobSpec, kind: str, lock: dict):
    submitted = _record_submission(spec, kind)
    job = executor.submit(SweepJob(), spec.to_dict())
    _record_submission(spec, kind, job, submitted)
    if kind != "debug":  # a debug job has run by now
        update_lock(spec.run_dir, lock, job_id=str(job.job_id))
    return job


def _say(text: str, stream) -> None:
    tqdm.write(text, file=stream)


def _triage(specs, stream, report: SweepReport) -> tuple:
    """The specs that still need work, and sacct's states of the jobs that locked runs; complete runs are skipped,
    runs of another config are failed here and runs that a live job holds are left to it."""
    todo = []
    locks = {spec.label: read_lock(spec.run_dir) for spec in specs}
    slurm_ids = [lock.get("job_id") for lock in locks.values() if lock and lock.get("executor") == "slurm"]
    slurm = sacct_states(slurm_ids) if slurm_ids else {}
    for spec in specs:
        conflicts = config_conflicts(spec)
        if conflicts:
            reason = (f"{spec.run_dir} holds a run of another config (" + "; ".join(conflicts[:4]) +
                      "); choose another --out or remove that run")
            report.failed[spec.label] = reason
            _say(f"FAILED  {spec.label}: {reason}", stream)
            continue
        state = run_state(spec.run_dir)
        holder, why = lock_holder(locks[spec.label], slurm)
        if state.complete:
            report.skipped.append(spec.label)
            _say(f"skip    {spec.label}: {state.describe()} ({spec.run_dir})", stream)
        elif holder is not False:
            report.held.append(spec.label)
            _say(f"held    {spec.label}: {why} owns {spec.run_dir}; not submitted again"
                 + ("" if holder else f" (if that job is gone, delete {Path(spec.run_dir).name}.lock beside the run)"),
                 stream)
        else:
            if state.kind != "empty":
                _say(f"resume  {spec.label}: {state.describe()}", stream)
            todo.append(spec)
    return todo, slurm


def _finish(spec: JobSpec, job, kind: str, report: SweepReport, stream) -> None:
    error = job.exception()
    if error is None:
        result = job.results()[0] or {}  # rank 0's (a multi-process job returns one result per task)
        report.done.append(spec.label)
        scores = "  ".join(f"{k.upper()} {result[k]:.2f}" for k in ("sa", "ra") if k in result)
        _say(f"done    {spec.label}: {scores or result.get('state', '')}  ({spec.run_dir})", stream)
        return
    reason = _one_line(error)
    report.failed[spec.label] = reason
    _say(f"FAILED  {spec.label}: {reason}", stream)
    if kind != "debug":
        tail = log_tail(job.paths.stderr, 15) or log_tail(job.paths.stdout, 15)
        if tail:
            _say("        | " + "\n        | ".join(tail), stream)
            _say(f"        (log: {job.paths.stderr})", stream)


def _one_line(error: BaseException) -> str:
    """The last meaningful line of a job's error (submitit wraps a job's traceback in FailedJobError)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line.split(":")[0] or "Exception" in line.split(":")[0]]
    return (errors[-1] if errors else lines[-1] if lines else type(error).__name__)[:500]


def _gpu_slots(options: SlurmOptions, max_parallel: Optional[int]) -> list:
    """Local executor: which GPUs each concurrent job may use (empty lists on a CPU machine; None: every slot)."""
    if not options.gpus_per_job:
        return [[] for _ in range(max_parallel or 1)]
    import torch

    count = torch.cuda.device_count()
    if count < options.gpus_per_job:
        raise SweepError(f"--gpus-per-job {options.gpus_per_job}: this machine has {count} GPU(s)")
    slots = [list(range(i * options.gpus_per_job, (i + 1) * options.gpus_per_job))
             for i in range(count // options.gpus_per_job)]
    return slots[:max_parallel]


def launch(specs, kind: str = "local", out="runs", max_parallel: Optional[int] = None,
           options: Optional[SlurmOptions] = None, poll_s: float = 2.0, stream=None) -> SweepReport:
    """Run (debug, local) or submit (slurm) every job of ``specs`` that is not complete and not held by a live job;
    print one line per job. ``max_parallel`` None: the whole Slurm array at once, or one local job per GPU slot."""
    stream = stream or sys.stdout
    if kind not in EXECUTORS:
        raise SweepError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {kind!r}")
    options = options or SlurmOptions()
    if max_parallel is not None and max_parallel < 1:
        raise SweepError(f"--max-parallel: expected >= 1, got {max_parallel}")
    tasks_per_job(options)  # a bad combination fails before any lock is taken
    report = SweepReport()
    todo, slurm = _triage(specs, stream, report)
    locks = {}
    for spec in list(todo):  # taken now, so that a sweep started meanwhile cannot submit the same run
        taken, record = acquire_lock(spec.run_dir, kind, slurm)
        if taken:
            locks[spec.label] = record
        else:
            todo.remove(spec)
            report.held.append(spec.label)
            _say(f"held    {spec.label}: another sweep took {Path(spec.run_dir).name}.lock just now "
                 f"({record.get('host')} pid {record.get('pid')}); not submitted again", stream)
    if not todo:
        return report
    if max_parallel is None:  # Slurm: the whole array at once; local: one job per GPU slot (one on a CPU)
        max_parallel = len(todo) if kind == "slurm" else max(1, len(_gpu_slots(options, None)))
    if max_parallel < 1:
        raise SweepError(f"--max-parallel: expected >= 1, got {max_parallel}")
    try:
        # Slurm: a folder per job (%j); the local controller would create a literal "%j" folder, so one flat folder.
        folder = Path(out).resolve() / "_sweep" / "submitit" / ("%j" if kind == "slurm" else "")
        executor = make_executor(kind, folder, options, max_parallel)
    except BaseException:
        for spec in todo:
            release_lock(spec.run_dir, token=locks[spec.label]["token"])
        raise
    if kind == "slurm":
        submitted = [_record_submission(spec, kind) for spec in todo]
        try:
            jobs = executor.map_array(SweepJob(), [s.to_dict() for s in todo])
        except Exception as err:  # sbatch refused the array (bad partition, account, limits...)  # noqa: BLE001
            for spec in todo:
                _submission_failed(spec, kind, err, locks[spec.label], report, stream)
            return report
        for spec, job, when in zip(todo, jobs, submitted):
            _record_submission(spec, kind, job, when)
            update_lock(spec.run_dir, locks[spec.label], job_id=str(job.job_id))
            report.submitted.append(spec.label)
        first = str(jobs[0].job_id).split("_")[0] if jobs else "?"
        _say(f"submitted Slurm array {first} ({len(jobs)} jobs, at most {max_parallel} at once); follow it with "
             f"python -m augmax_lib sweep --status --out {out}", stream)
        return report
    bar = tqdm(total=len(todo), desc="sweep", unit="job", file=stream, dynamic_ncols=True)
    pending, running = list(todo), {}
    try:
        if kind == "debug":
            while pending:
                spec = pending.pop(0)
                job = _submit(executor, spec, kind, locks[spec.label])
                _finish(spec, job, kind, report, stream)  # a debug job runs here, in this process
                release_lock(spec.run_dir, token=locks[spec.label]["token"])
                bar.update(1)
            return report
        slots = _gpu_slots(options, max_parallel)
        free = list(range(len(slots)))
        while pending or running:
            while pending and free:
                spec, slot = pending.pop(0), free.pop(0)
                if options.gpus_per_job:  # each concurrent job on its own GPUs
                    executor.update_parameters(visible_gpus=slots[slot])
                try:
                    running[_submit(executor, spec, kind, locks[spec.label])] = (spec, slot)
                except Exception as err:  # noqa: BLE001 - the job could not start; the rest go on
                    _submission_failed(spec, kind, err, locks[spec.label], report, stream)
                    free.append(slot)
                    bar.update(1)
            time.sleep(poll_s)
            for job in [j for j in running if j.done()]:
                spec, slot = running.pop(job)
                free.append(slot)
                release_lock(spec.run_dir, token=locks[spec.label]["token"])
                _finish(spec, job, kind, report, stream)
                bar.update(1)
        return report
    except KeyboardInterrupt:
        _say("interrupted: runs keep their last.pt; the next sweep resumes them", stream)
        raise
    finally:
        for spec in pending:  # never submitted: their runs are free again
            release_lock(spec.run_dir, token=locks[spec.label]["token"])
        bar.close()


def default_gpus(kind: str) -> int:
    """GPUs per job when not given: one on Slurm, one for a local job on a machine with a GPU, else none."""
    if kind == "slurm":
        return 1
    if kind != "local":
        return 0
    import torch

    return 1 if torch.cuda.is_available() else 0


def default_threads(kind: str, max_parallel: Optional[int], gpus_per_job: int, tasks: int = 1) -> Optional[int]:
    """Torch threads per process of a local CPU job: the cores shared out between the processes that run at once."""
    if kind != "local" or gpus_per_job:
        return None
    return max(1, (os.cpu_count() or 1) // ((max_parallel or 1) * max(1, tasks)))
