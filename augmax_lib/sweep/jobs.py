"""One sweep job: a (config, seed) pair trained and evaluated into ``<out>/<config name>/seed<k>/``.

A job receives a :class:`JobSpec` as a plain dict of paths and strings (never a model) and runs an
ordinary ``train`` (resuming from ``last.pt`` when the run is partial) and then ``evaluate --run``.
:class:`SweepJob` is a submitit ``Checkpointable``: on preemption or time-out Slurm requeues it with the
same spec, and training picks up from the last epoch's checkpoint.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from augmax_lib._checks import InputError

from .lock import release_lock

try:  # the engine (pip install submitit); only its Checkpointable base class is needed here
    from submitit.helpers import Checkpointable, DelayedSubmission
except ImportError:  # pragma: no cover - sweep.launch says how to install it
    Checkpointable = object
    DelayedSubmission = None

__all__ = ["JobSpec", "RunState", "SweepError", "SweepJob", "run_state", "config_conflicts", "expected_config",
           "record_dir", "read_json", "write_json"]


class SweepError(InputError, RuntimeError):
    """A sweep that cannot go on as asked: a bad argument or a run directory that holds another run."""


@dataclass(frozen=True)
class JobSpec:
    """Everything a job needs, as paths and strings: config file, seed, run directory, profile and overrides."""

    config: str                      # absolute path of the YAML config
    name: str                        # the config's name (the run directory's parent folder)
    seed: int
    run_dir: str                     # absolute: <out>/<name>/seed<seed>
    record_dir: str                  # absolute: <out>/_sweep/<name>/seed<seed>
    profile: Optional[str] = None
    overrides: tuple = ()            # --set KEY=VALUE, in order (train.seed is added last)
    eval_args: tuple = ()            # extra arguments of `evaluate --run`
    threads: Optional[int] = None    # torch threads in the job (local executor: cores / parallel jobs)
    root: str = field(default_factory=os.getcwd)  # working directory of the job

    @property
    def label(self) -> str:
        return f"{self.name} seed{self.seed}"

    def train_overrides(self) -> list:
        """The job's ``--set`` overrides with its seed."""
        return [*self.overrides, f"train.seed={self.seed}"]

    def train_command(self, resume: bool = False) -> list:
        """The equivalent `python -m augmax_lib train` arguments (shown in logs and records)."""
        argv = ["train", "--config", self.config, "--out", self.run_dir]
        if self.profile:
            argv += ["--profile", self.profile]
        for text in self.train_overrides():
            argv += ["--set", text]
        return argv + (["--resume"] if resume else [])

    def evaluate_command(self) -> list:
        """The equivalent `python -m augmax_lib evaluate` arguments."""
        return ["evaluate", "--run", self.run_dir, *self.eval_args]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["overrides"], out["eval_args"] = list(self.overrides), list(self.eval_args)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "JobSpec":
        data = dict(data)
        data["overrides"], data["eval_args"] = tuple(data.get("overrides", ())), tuple(data.get("eval_args", ()))
        return cls(**data)


def record_dir(out, name: str, seed: int) -> Path:
    """Where the sweep keeps a job's submission and state files."""
    return Path(out) / "_sweep" / name / f"seed{seed}"


def read_json(path) -> Optional[dict]:
    """The JSON object in ``path``, or None when the file is absent or unreadable (e.g. being replaced)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path, obj) -> None:
    """Write ``obj`` to ``path`` atomically (temporary file + rename)."""
    from augmax_lib._io import atomic_write_text

    atomic_write_text(Path(path), json.dumps(obj, indent=1, default=str) + "\n")


# ------------------------------------------------------------------------------------------- run state
@dataclass(frozen=True)
class RunState:
    """What a run directory holds: 'evaluated', 'trained' (not evaluated), 'partial' (resumable) or 'empty'."""

    kind: str
    epoch: int = 0
    epochs: Optional[int] = None

    @property
    def complete(self) -> bool:
        return self.kind == "evaluated"

    def describe(self) -> str:
        if self.kind == "partial":
            return f"partial (epoch {self.epoch}/{self.epochs or '?'})"
        return {"evaluated": "trained and evaluated", "trained": "trained, not evaluated",
                "empty": "not started"}[self.kind]


def _epochs_of(run_dir: Path) -> tuple:
    """(epochs done, epochs planned) from the run's log.json and config.yaml (cheap: no checkpoint loaded)."""
    rows = read_json(run_dir / "log.json")
    done = len(rows) if isinstance(rows, list) else 0
    try:
        planned = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["epochs"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        planned = None
    return done, planned


def run_state(run_dir) -> RunState:
    """The state of the training run in ``run_dir`` (see :class:`RunState`)."""
    run_dir = Path(run_dir)
    trained = (run_dir / "results.json").is_file()
    if trained and (run_dir / "evaluation" / "results.json").is_file():
        return RunState("evaluated", *_epochs_of(run_dir))
    if trained:
        return RunState("trained", *_epochs_of(run_dir))
    if (run_dir / "last.pt").is_file():
        return RunState("partial", *_epochs_of(run_dir))
    return RunState("empty")


def expected_config(spec: JobSpec) -> dict:
    """The validated config the job trains (file < profile < --set < seed), as `train` would build it."""
    from augmax_lib.train import load_config

    return load_config(spec.config, spec.profile, spec.train_overrides())


def config_conflicts(spec: JobSpec) -> list:
    """Keys whose values differ between the run directory's config.yaml and the job's config ([] if none or new)."""
    from augmax_lib.train.checkpoint import config_mismatches

    saved_path = Path(spec.run_dir) / "config.yaml"
    if not saved_path.is_file():
        return []
    try:
        saved = yaml.safe_load(saved_path.read_text())
    except yaml.YAMLError as err:
        return [f"config.yaml is not valid YAML ({err})"]
    return config_mismatches(saved, expected_config(spec))


# ------------------------------------------------------------------------------------------------- job
def _environment() -> tuple:
    """(global rank, number of tasks, job id) under submitit; (0, 1, None) when called directly."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.global_rank, env.num_tasks, env.job_id
    except (ImportError, RuntimeError):
        return 0, 1, None


class SweepJob(Checkpointable):
    """Train then evaluate one (config, seed); skip what is done, resume what is partial.

    Called with ``JobSpec.to_dict()``; returns a small dict (``state``, ``run_dir``, ``sa``, ``ra``). Rank 0
    writes ``state.json`` in the record folder (running / done / failed / interrupted) and, once trained,
    ``sweep.json`` in the run directory (how the run was made: profile, overrides, seed, evaluation arguments).
    """

    def __call__(self, spec: dict) -> dict:
        spec_obj = JobSpec.from_dict(spec)
        rank, tasks, job_id = _environment()
        if tasks > 1:  # one task per GPU: torch.distributed from the Slurm/submitit environment, as torchrun would
            from submitit.helpers import TorchDistributedEnvironment

            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        state_file = Path(spec_obj.record_dir) / "state.json"
        started = time.time()
        base = {"job_id": job_id, "host": socket.gethostname(), "pid": os.getpid(), "started": started}
        if rank == 0:
            write_json(state_file, {**base, "state": "running", "updated": time.time()})
        try:
            result = self._run(spec_obj, rank)
        except (SystemExit, KeyboardInterrupt) as err:
            # Preemption or time-out (submitit exits after requeueing) or Ctrl-C: last.pt stays for the resume, and
            # the lock stays with the job id, which Slurm requeues.
            if rank == 0:
                write_json(state_file, {**base, "state": "interrupted", "updated": time.time(),
                                        "error": f"{type(err).__name__}: {err}"})
            raise
        except BaseException as err:
            if rank == 0:
                write_json(state_file, {**base, "state": "failed", "updated": time.time(),
                                        "error": f"{type(err).__name__}: {err}",
                                        "traceback": traceback.format_exc()[-4000:]})
                release_lock(spec_obj.run_dir, job_id=job_id)  # a failed job is not requeued
            raise
        if rank == 0:
            write_json(state_file, {**base, "state": "done", "updated": time.time(), "result": result})
            release_lock(spec_obj.run_dir, job_id=job_id)
        return result

    def _run(self, spec: JobSpec, rank: int) -> dict:
        from augmax_lib.evaluate import evaluate_run, run_numerics, run_options
        from augmax_lib.evaluate.arguments import parse_evaluation_argv
        from augmax_lib.train import load_config, train

        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        os.chdir(spec.root)
        run_dir = Path(spec.run_dir)
        conflicts = config_conflicts(spec)
        if conflicts:
            raise SweepError(f"{run_dir} holds a run of another config (" + "; ".join(conflicts[:4]) +
                             "); choose another --out or remove that run")
        state = run_state(run_dir)
        if state.complete:
            return {"state": "skipped", "run_dir": str(run_dir), **_headline(run_dir)}
        if state.kind != "trained":
            resume = state.kind == "partial"
            print(f"[sweep] {spec.label}: python -m augmax_lib {shlex.join(spec.train_command(resume))}", flush=True)
            train(spec.config, out=run_dir, resume=resume, profile=spec.profile, overrides=spec.train_overrides())
        if rank != 0:
            return {"state": "trained", "run_dir": str(run_dir)}
        write_json(run_dir / "sweep.json", {
            "config": spec.name, "config_file": spec.config, "seed": spec.seed, "profile": spec.profile,
            "overrides": list(spec.overrides), "evaluate_args": list(spec.eval_args),
            "train_command": ["python", "-m", "augmax_lib", *spec.train_command()],
            "evaluate_command": ["python", "-m", "augmax_lib", *spec.evaluate_command()]})
        print(f"[sweep] {spec.label}: python -m augmax_lib {shlex.join(spec.evaluate_command())}", flush=True)
        try:
            option_changes, numerics_changes = parse_evaluation_argv(spec.eval_args)
        except ValueError as err:
            raise SweepError(f"--eval-args: {err}") from None
        config = load_config(run_dir / "config.yaml")
        evaluate_run(run_dir, run_options(config, **option_changes), run_numerics(config, **numerics_changes),
                     extra={"sweep": spec.label, "evaluate_args": list(spec.eval_args)})
        return {"state": "done", "run_dir": str(run_dir), **_headline(run_dir)}

    def checkpoint(self, spec: dict) -> "DelayedSubmission":
        """On preemption or time-out: requeue the same spec; the requeued job resumes from last.pt."""
        return DelayedSubmission(SweepJob(), spec)


def _headline(run_dir: Path) -> dict:
    """SA and RA (%) of an evaluated run, for progress lines."""
    results = read_json(run_dir / "evaluation" / "results.json") or {}
    metrics = results.get("metrics", {})
    return {k: 100 * metrics[k] for k in ("sa", "ra") if isinstance(metrics.get(k), (int, float))}
