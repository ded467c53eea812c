"""`python -m augmax_lib sweep`: one job per (config, seed) through submitit's debug and local executors on
tiny synthetic runs (complete runs skipped, partial ones resumed, failures reported while the rest go on), the
local executor's parallelism cap, and the Slurm array script submitit writes (with a stand-in sbatch)."""
from __future__ import annotations

import importlib
import json
import os
import pickle
import re
import stat
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from augmax_lib.__main__ import main
from augmax_lib.sweep import (
    JobSpec,
    SlurmOptions,
    SweepError,
    SweepJob,
    find_configs,
    job_status,
    launch,
    log_tail,
    plan,
    run_state,
)
from augmax_lib.tables import build_tables, collect_runs, render_markdown
from augmax_lib.train import load_config, train
from augmax_lib.train.config import dump_config

launch_module = importlib.import_module("augmax_lib.sweep.launch")
pytestmark = pytest.mark.filterwarnings("ignore:loading the SYNTHETIC data set")
REPO = Path(__file__).resolve().parents[1]
NORMAL = REPO / "configs" / "cifar10" / "resnet18_normal.yaml"
AUGMIX = REPO / "configs" / "cifar10" / "resnet18_augmix.yaml"
# A few seconds per job on one CPU thread: 200 synthetic images, a width-4 model, one epoch, SA on 100 images.
TINY = ("data.dataset=synthetic", "data.options.n=200", "data.train_size=128", "data.val_size=32",
        "train.batch_size=32", "train.eval_batch_size=128", "model.width=4", "train.progress=false",
        "eval.images_per_set=100")
EVAL = ("--skip", "ra", "spatial", "--quiet")


@pytest.fixture(scope="module")
def _cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")  # the synthetic sets are drawn once for the whole module


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, _cache):
    monkeypatch.setenv("AUGMAX_CACHE", str(_cache))
    monkeypatch.delenv("AUGMAX_DATA", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _plan(out, configs=(NORMAL,), seeds=(0,), overrides=TINY, **kw):
    return plan([str(c) for c in configs], list(seeds), out, "smoke", list(overrides), EVAL, **kw)


def test_plan_is_one_job_per_config_and_seed_with_folders_searched(tmp_path):
    expected = sorted(p for p in (REPO / "configs" / "cifar10").glob("*.yaml"))
    specs = plan([str(REPO / "configs" / "cifar10")], [0, 1], tmp_path / "runs")
    assert len(specs) == 2 * len(expected) == 18
    assert {Path(s.config) for s in specs} == {p.resolve() for p in expected}
    names = {yaml.safe_load(p.read_text())["name"] for p in expected}
    assert {(s.name, s.seed) for s in specs} == {(n, k) for n in names for k in (0, 1)}
    for s in specs:
        assert s.run_dir == str((tmp_path / "runs" / s.name / f"seed{s.seed}").resolve())
    # configs/ as a whole: every paper row, never the profiles.
    every = find_configs([str(REPO / "configs")])
    assert not any("profiles" in p.parts for p in every)
    assert len(every) == sum(1 for p in (REPO / "configs").rglob("*.yaml") if "profiles" not in p.parts)


def test_plan_refuses_bad_input_before_anything_runs(tmp_path):
    with pytest.raises(SweepError, match="--seeds"):
        _plan(tmp_path, seeds=())
    with pytest.raises(SweepError, match="use --seeds"):
        _plan(tmp_path, overrides=("train.seed=3",))
    with pytest.raises(SweepError, match="train.epochz"):
        _plan(tmp_path, overrides=("train.epochz=3",))
    with pytest.raises(SweepError, match="no such config"):
        plan([str(tmp_path / "missing.yaml")], [0], tmp_path)
    twin = tmp_path / "twin.yaml"
    twin.write_text(NORMAL.read_text())
    with pytest.raises(SweepError, match="same name"):
        plan([str(NORMAL), str(twin)], [0], tmp_path)
    assert not (tmp_path / "_sweep").exists()


def test_debug_sweep_trains_and_evaluates_each_seed_then_skips_them(tmp_path, capsys):
    out = tmp_path / "runs"
    specs = _plan(out, seeds=(0, 1))
    report = launch(specs, "debug", out)
    assert report.ok and sorted(report.done) == ["cifar10_resnet18_normal seed0", "cifar10_resnet18_normal seed1"]
    for seed in (0, 1):
        run = out / "cifar10_resnet18_normal" / f"seed{seed}"
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["train"]["seed"] == seed and config["model"]["width"] == 4  # profile, --set and seed applied
        evaluation = json.loads((run / "evaluation" / "results.json").read_text())
        assert evaluation["images_per_set"] == 100 and 0.0 <= evaluation["metrics"]["sa"] <= 1.0
        made = json.loads((run / "sweep.json").read_text())
        assert made["profile"] == "smoke" and made["seed"] == seed and list(made["evaluate_args"]) == list(EVAL)
        assert run_state(run).complete
        assert job_status(specs[seed]).state == "done"
    # What `tables` reads: both seeds of one config, at one profile. Trained on the synthetic set at a budget the
    # overrides changed, they fill no poster cell and are listed apart, with the reason.
    records = collect_runs([out])
    assert sorted(r.seed for r in records) == [0, 1] and {r.profile for r in records} == {"smoke"}
    tables = build_tables(records)
    cell = next(c for t in tables if t.key == "cifar10" for c in t.cells
                if c.cell.config == "cifar10_resnet18_normal" and c.column == "SA")
    assert cell.n == 0
    assert "| cifar10_resnet18_normal | 0, 1 |" in render_markdown(tables, records=records)
    assert "its budget is no profile's" in render_markdown(tables, records=records)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "_sweep" not in p.parts}
    again = launch(_plan(out, seeds=(0, 1)), "debug", out)
    assert sorted(again.skipped) == sorted(report.done) and not again.done
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}  # nothing rewritten
    assert "skip" in capsys.readouterr().out


def test_partial_run_resumes_from_last_checkpoint(tmp_path):
    out = tmp_path / "runs"
    overrides = (*TINY, "train.epochs=2")
    spec = _plan(out, overrides=overrides)[0]
    train(spec.config, out=spec.run_dir, profile="smoke", overrides=spec.train_overrides(), stop_after=1)
    first_epoch = json.loads((Path(spec.run_dir) / "log.json").read_text())
    assert len(first_epoch) == 1 and run_state(spec.run_dir).kind == "partial"
    report = launch([spec], "debug", out)
    assert report.ok
    log = json.loads((Path(spec.run_dir) / "log.json").read_text())
    assert [row["epoch"] for row in log] == [1, 2]
    assert log[0] == first_epoch[0]  # epoch 1 was kept, not trained again


def test_run_of_another_config_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "runs"
    spec = _plan(out)[0]
    run = Path(spec.run_dir)
    run.mkdir(parents=True)
    other = load_config(NORMAL, "smoke", [*spec.train_overrides(), "train.epochs=7"])  # e.g. another profile
    (run / "config.yaml").write_text(dump_config(other))
    report = launch([spec], "debug", out)
    assert "holds a run of another config" in report.failed[spec.label]
    assert "train.epochs" in report.failed[spec.label]
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_a_failed_job_is_reported_with_its_reason_and_the_rest_go_on(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "needs_cifar100", "data": {"dataset": "cifar100",
                                                                       "root": str(tmp_path / "empty")}}))
    out = tmp_path / "runs"
    specs = plan([str(bad)], [0], out, "smoke", ["train.progress=false"], EVAL) + _plan(out)
    report = launch(specs, "debug", out)
    assert report.done == ["cifar10_resnet18_normal seed0"]
    assert list(report.failed) == ["needs_cifar100 seed0"]
    assert str(tmp_path / "empty") in report.failed["needs_cifar100 seed0"]  # where it looked for the data
    status = job_status(specs[0])
    assert status.state == "failed" and "cifar" in status.detail.lower()
    assert status.log  # the traceback's tail (the debug executor writes no log file)


class _FakeJob:
    """Done after a few polls; counts how many of its kind run at once."""

    running, most = 0, 0

    def __init__(self, spec):
        self.spec, self.polls, self.job_id = spec, 0, f"fake{spec['seed']}"
        type(self).running += 1
        type(self).most = max(type(self).most, type(self).running)

    def done(self):
        self.polls += 1
        if self.polls == 3:
            type(self).running -= 1
        return self.polls >= 3

    def exception(self):
        return None

    def results(self):
        return [{"state": "done"}]

    paths = None


class _FakeExecutor:
    def __init__(self):
        self.submitted = []

    def submit(self, fn, spec):
        assert isinstance(fn, SweepJob) and all(isinstance(v, (str, int, list, type(None))) for v in spec.values())
        self.submitted.append(spec)
        return _FakeJob(spec)

    def update_parameters(self, **kw):
        pass


def test_local_executor_never_runs_more_than_max_parallel_jobs(tmp_path, monkeypatch):
    fake = _FakeExecutor()
    monkeypatch.setattr(launch_module, "make_executor", lambda *a, **k: fake)
    monkeypatch.setattr(launch_module, "_record_submission", lambda *a, **k: 0.0)
    specs = _plan(tmp_path, seeds=range(7))
    report = launch(specs, "local", tmp_path, max_parallel=3, poll_s=0)
    assert len(fake.submitted) == 7 and len(report.done) == 7
    assert _FakeJob.most == 3


@pytest.mark.slow  # a fresh Python that imports torch, then a tiny run: ~15 s on a loaded 2-core machine
def test_local_executor_runs_a_job_in_a_subprocess(tmp_path):
    out = tmp_path / "runs"
    spec = _plan(out)[0]
    spec = JobSpec(**{**spec.to_dict(), "threads": 1})
    report = launch([spec], "local", out, max_parallel=1, options=SlurmOptions(timeout_min=10), poll_s=0.5)
    assert report.ok, report.failed
    submission = json.loads((Path(spec.record_dir) / "submission.json").read_text())
    assert submission["executor"] == "local" and Path(submission["stdout"]).is_file()
    state = json.loads((Path(spec.record_dir) / "state.json").read_text())
    assert state["state"] == "done" and state["pid"] != os.getpid()  # it ran in another process
    assert job_status(spec).state == "done"
    assert main(["sweep", "--status", "--out", str(out)]) == 0


def _fake_slurm(tmp_path, monkeypatch, states=("4242_0|RUNNING", "4242_1|PENDING", "4242_2|FAILED", "4242_3|PENDING")):
    """Stand-ins for srun, sbatch, sacct and scancel: sbatch answers with the job id in ``fake/next_id`` (and fails
    with ``fake/sbatch_error`` when that file exists), sacct prints ``fake/states``, each call is logged."""
    fake, bin_dir = tmp_path / "fake", tmp_path / "bin"
    fake.mkdir()
    bin_dir.mkdir()
    (fake / "next_id").write_text("4242")
    (fake / "states").write_text("JobID|State\n" + "\n".join(states) + "\n")
    sbatch = (f'echo sbatch >> {fake}/calls\n'
              f'if [ -f {fake}/sbatch_error ]; then cat {fake}/sbatch_error >&2; exit 1; fi\n'
              f'echo "Submitted batch job $(cat {fake}/next_id)"')
    for name, body in (("srun", "exit 0"), ("sbatch", sbatch),
                       ("sacct", f'echo "sacct $*" >> {fake}/calls\ncat {fake}/states'),
                       ("scancel", f'echo "scancel $*" >> {fake}/calls')):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return fake


def _calls(fake, name):
    path = fake / "calls"
    return [line for line in (path.read_text().splitlines() if path.exists() else []) if line.split()[0] == name]


def _status_rows(out, capsys):
    assert main(["sweep", "--status", "--out", str(out)]) == 0
    return {tuple(line.split()[:3]) for line in capsys.readouterr().out.splitlines()}


def test_slurm_sweep_submits_one_array_with_the_resources_asked(tmp_path, monkeypatch, capsys):
    _fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "runs"
    code = main(["sweep", str(NORMAL), str(AUGMIX), "--seeds", "0", "1", "--profile", "quick", "--out", str(out),
                 "--executor", "slurm", "--max-parallel", "3", "--slurm-partition", "gpu", "--gpus-per-job", "2",
                 "--cpus-per-job", "8", "--mem-gb", "32", "--timeout-min", "600", "--slurm-account", "proj",
                 "--slurm-setup", "source .venv/bin/activate", "--slurm-arg", "constraint=h100"])
    assert code == 0
    assert "submitted Slurm array 4242 (4 jobs" in capsys.readouterr().out
    scripts = list((out / "_sweep" / "submitit").rglob("*submission.sh"))
    assert len(scripts) == 1
    lines = scripts[0].read_text().splitlines()
    for expected in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2",
                     "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB", "#SBATCH --time=600",
                     "#SBATCH --array=0-3%3", "#SBATCH --account=proj", "#SBATCH --constraint=h100",
                     "source .venv/bin/activate"):
        assert expected in lines, expected
    assert any(re.fullmatch(r"#SBATCH --signal=USR2@\d+", line) for line in lines)  # the requeue signal
    assert any(line.startswith("srun") and "submitit.core._submit" in line for line in lines)
    # Each array task's pickle holds a SweepJob and a dict of paths and strings (no model objects).
    pickles = sorted((out / "_sweep" / "submitit").rglob("4242_*_submitted.pkl"))
    assert len(pickles) == 4
    for path in pickles:
        with open(path, "rb") as f:
            delayed = pickle.load(f)
        assert isinstance(delayed.function, SweepJob)
        (spec,) = delayed.args
        assert set(spec) >= {"config", "seed", "run_dir", "profile", "overrides"}
        assert all(isinstance(v, (str, int, list, type(None))) for v in spec.values())
    records = sorted((out / "_sweep").glob("*/seed*/submission.json"))
    assert {json.loads(p.read_text())["job_id"] for p in records} == {"4242_0", "4242_1", "4242_2", "4242_3"}
    # --status asks sacct (here a stand-in) once for all jobs.
    rows = _status_rows(out, capsys)
    assert ("cifar10_resnet18_normal", "0", "running") in rows
    assert ("cifar10_resnet18_normal", "1", "pending") in rows
    assert ("cifar10_resnet18_augmix", "0", "failed") in rows  # array task 2 ended FAILED before it started
    assert ("cifar10_resnet18_augmix", "1", "pending") in rows


def test_slurm_executor_off_a_cluster_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(SweepError, match="srun"):
        launch(_plan(tmp_path), "slurm", tmp_path)


def test_checkpoint_requeues_the_same_spec():
    spec = {"config": "/c.yaml", "name": "c", "seed": 1, "run_dir": "/r", "record_dir": "/s"}
    delayed = SweepJob().checkpoint(spec)
    assert isinstance(delayed.function, SweepJob) and delayed.args == (spec,)


def test_status_sees_a_dead_job_as_interrupted_and_log_tails_collapse_progress_bars(tmp_path):
    spec = _plan(tmp_path)[0]
    records = Path(spec.record_dir)
    records.mkdir(parents=True)
    (records / "submission.json").write_text(json.dumps({"executor": "local", "submitted": 1.0}))
    import socket

    (records / "state.json").write_text(json.dumps({"state": "running", "started": 2.0, "host": socket.gethostname(),
                                                    "pid": 2 ** 22 + 12345}))
    assert job_status(spec).state == "interrupted"
    (records / "state.json").write_text(json.dumps({"state": "running", "started": 2.0, "host": socket.gethostname(),
                                                    "pid": os.getpid()}))
    assert job_status(spec).state == "running"
    log = tmp_path / "job.err"
    log.write_text("start\nepoch 1:  10%\repoch 1:  50%\repoch 1: 100%\n\nTraceback\nValueError: x\n")
    assert log_tail(log, 3) == ["epoch 1: 100%", "Traceback", "ValueError: x"]
    assert log_tail(tmp_path / "absent.err") == []


def test_cli_without_configs_is_an_error(capsys):
    assert main(["sweep"]) == 2
    assert "config" in capsys.readouterr().err
    assert sys.modules["augmax_lib.cli.sweep"]


def _slurm_sweep(out, *extra):
    return main(["sweep", str(NORMAL), "--seeds", "0", "--profile", "quick", "--out", str(out),
                 "--executor", "slurm", *extra])


def test_a_requeued_job_is_reported_running_and_never_submitted_twice(tmp_path, monkeypatch, capsys):
    fake = _fake_slurm(tmp_path, monkeypatch, states=["4242|PENDING"])
    out = tmp_path / "runs"
    assert _slurm_sweep(out) == 0
    assert len(_calls(fake, "sbatch")) == 1  # one job: submitit submits it alone, not as an array
    spec = _plan(out, overrides=())[0]
    lock = json.loads((Path(spec.run_dir).parent / "seed0.lock").read_text())
    assert lock["job_id"] == "4242" and lock["executor"] == "slurm"
    # The job ran, then was preempted: its state file says so, and Slurm requeued it (same id).
    state = {"job_id": "4242", "host": "node7", "pid": 99, "started": time.time() + 1}
    (Path(spec.record_dir) / "state.json").write_text(json.dumps({**state, "state": "interrupted"}))
    (fake / "states").write_text("4242|REQUEUED\n")
    assert ("cifar10_resnet18_normal", "0", "pending") in _status_rows(out, capsys)
    (fake / "states").write_text("4242|RUNNING\n4242.batch|RUNNING\n")
    assert ("cifar10_resnet18_normal", "0", "running") in _status_rows(out, capsys)
    # A second sweep asks sacct, finds the job alive and submits nothing.
    (fake / "next_id").write_text("4243")
    assert _slurm_sweep(out) == 0
    printed = capsys.readouterr().out
    assert "held" in printed and "Slurm job 4242 RUNNING" in printed and "1 left to their running job" in printed
    assert len(_calls(fake, "sbatch")) == 1
    # Once Slurm has given up on it (its last time limit), the run is free and the next sweep resubmits it.
    (fake / "states").write_text("4242|TIMEOUT\n")
    assert ("cifar10_resnet18_normal", "0", "interrupted") in _status_rows(out, capsys)
    assert _slurm_sweep(out) == 0
    assert len(_calls(fake, "sbatch")) == 2
    assert json.loads((Path(spec.run_dir).parent / "seed0.lock").read_text())["job_id"] == "4243"


def test_a_lock_sacct_cannot_vouch_for_is_left_alone(tmp_path, monkeypatch, capsys):
    fake = _fake_slurm(tmp_path, monkeypatch, states=["4242|PENDING"])
    out = tmp_path / "runs"
    assert _slurm_sweep(out) == 0
    (fake / "states").write_text("")  # sacct no longer knows the job (e.g. purged from its database)
    assert _slurm_sweep(out) == 0
    assert "cannot say whether it still runs" in capsys.readouterr().out and len(_calls(fake, "sbatch")) == 1


def test_a_failed_sbatch_marks_its_jobs_failed_with_the_error(tmp_path, monkeypatch, capsys):
    fake = _fake_slurm(tmp_path, monkeypatch, states=[])
    (fake / "sbatch_error").write_text("sbatch: error: invalid partition specified: gpux\n")
    out = tmp_path / "runs"
    assert main(["sweep", str(NORMAL), str(AUGMIX), "--seeds", "0", "--profile", "quick", "--out", str(out),
                 "--executor", "slurm", "--slurm-partition", "gpux"]) == 1
    assert "invalid partition" in capsys.readouterr().out
    rows = _status_rows(out, capsys)
    assert {r for r in rows if r[0].startswith("cifar10")} == {("cifar10_resnet18_normal", "0", "failed"),
                                                               ("cifar10_resnet18_augmix", "0", "failed")}
    assert not list(out.rglob("*.lock"))  # nothing holds the runs: the next sweep submits them
    (fake / "sbatch_error").unlink()
    assert main(["sweep", str(NORMAL), "--seeds", "0", "--profile", "quick", "--out", str(out),
                 "--executor", "slurm"]) == 0


def test_cluster_defaults_and_long_job_options_reach_the_script(tmp_path, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "runs"
    assert main(["sweep", str(NORMAL), str(AUGMIX), "--seeds", "0", "1", "--profile", "quick", "--out", str(out),
                 "--executor", "slurm", "--max-num-timeout", "20", "--signal-delay-s", "300", "--nodes", "2"]) == 0
    lines = next((out / "_sweep" / "submitit").rglob("*submission.sh")).read_text().splitlines()
    # One GPU and one task per job unless told otherwise; the whole array at once; the requeue signal 300 s early.
    for expected in ("#SBATCH --gpus-per-node=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --nodes=2",
                     "#SBATCH --array=0-3%4", "#SBATCH --signal=USR2@300"):
        assert expected in lines, expected
    with open(next((out / "_sweep" / "submitit").rglob("4242_0_submitted.pkl")), "rb") as f:
        assert pickle.load(f)._timeout_countdown == 20


def test_cancel_stops_the_jobs_that_still_run(tmp_path, monkeypatch, capsys):
    fake = _fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "runs"
    assert main(["sweep", str(NORMAL), str(AUGMIX), "--seeds", "0", "1", "--profile", "quick", "--out", str(out),
                 "--executor", "slurm"]) == 0
    capsys.readouterr()
    assert main(["sweep", "--cancel", "--out", str(out)]) == 0
    assert "3 job(s) cancelled of 4" in capsys.readouterr().out
    (call,) = _calls(fake, "scancel")
    assert sorted(call.split()[1:]) == ["4242_0", "4242_1", "4242_3"]  # 4242_2 had already failed
    (fake / "states").write_text("4242_0|CANCELLED by 1\n4242_1|CANCELLED\n4242_2|FAILED\n4242_3|CANCELLED\n")
    rows = _status_rows(out, capsys)
    assert ("cifar10_resnet18_normal", "0", "cancelled") in rows and ("cifar10_resnet18_augmix", "0", "failed") in rows
    assert [p.name for p in out.rglob("*.lock")] == ["seed0.lock"]  # the failed job's lock (sacct: gone)
    assert _slurm_sweep(out) == 0 and len(_calls(fake, "sbatch")) == 2


def test_a_local_job_with_two_processes_trains_with_ddp_over_gloo(tmp_path):
    out = tmp_path / "runs"
    specs = _plan(out, overrides=TINY + ("train.steps_per_epoch=2",), threads=1)
    report = launch(specs, "local", out, options=SlurmOptions(timeout_min=10, tasks_per_job=2), poll_s=0.5)
    assert report.ok, report.failed
    results = json.loads((Path(specs[0].run_dir) / "results.json").read_text())
    assert results["provenance"]["world_size"] == 2 and results["provenance"]["backend"] == "gloo"
    assert (Path(specs[0].run_dir) / "evaluation" / "results.json").is_file()
    assert not list(out.rglob("*.lock"))
