"""Distributed training on the CPU: two gloo processes (torch.multiprocessing spawn, the environment torchrun
sets) complete a run whose checkpoint loads in one process, resume it exactly, and agree on gradients."""
from __future__ import annotations

import json
import os
import socket
import time
import warnings

import pytest
import torch
import torch.multiprocessing as mp

pytestmark = pytest.mark.filterwarnings("ignore:loading the SYNTHETIC data set")


def _free_ports(k: int) -> list:
    sockets = [socket.socket() for _ in range(k)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _step_options(name: str) -> dict:
    from augmax_lib.train.config import validate

    raw = {"name": name, "steps": 2}
    return {k: v for k, v in validate({"method": raw})["method"].items() if k != "name"}


def _worker(rank: int, world: int, ports: list, config: dict, out: str, report: str):
    warnings.simplefilter("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    ports = iter(ports)

    def next_group():  # a fresh port per process group: a rank must never reach the previous group's store
        os.environ["MASTER_PORT"] = str(next(ports))

    torch.set_num_threads(1)
    import torch.distributed as dist

    from augmax_lib.data import make_synthetic
    from augmax_lib.models import build_model
    from augmax_lib.train import distributed as du
    from augmax_lib.train import train
    from augmax_lib.train.methods import StepContext, get_step, training_routes

    next_group()
    train(config, out=out)  # joins and leaves the process group itself
    # Interrupted after the first epoch and resumed: every rank takes back its own random and BN states.
    next_group()
    train(config, out=f"{out}-parts", stop_after=1)
    next_group()
    train(config, out=f"{out}-parts", resume=True)

    # Gradients after one step must be the same on both ranks (each rank has its own images), also for a
    # dual-norm model trained through route "M" only (its auxiliary norms get no gradient).
    next_group()
    info = du.setup("cpu")
    data = make_synthetic(16, seed=rank, image_size=16)
    agree = {}
    for method in ("augmax", "pgdat"):
        torch.manual_seed(0)
        net = build_model("resnet18", 10, norm="dubin", width=4)
        options = _step_options(method)
        model = du.wrap_model(net, info, unused_parameters=len(training_routes({"name": method, **options})) < 2)
        ctx = StepContext(model, net, options, torch.Generator().manual_seed(rank))
        get_step(method)(ctx, data.images, data.labels).loss.backward()
        flat = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        agree[method] = all(torch.equal(gathered[0], g) for g in gathered[1:]) and flat.abs().sum().item() > 0
    du.cleanup(info)
    with open(f"{report}.{rank}", "w") as handle:
        json.dump(agree, handle)


def test_two_process_gloo_run(tmp_path):
    config = {"name": "ddp", "data": {"dataset": "synthetic", "val_size": 30, "options": {"n": 158, "image_size": 16}},
              "model": {"name": "resnet18", "width": 4, "norm": "dubin"}, "method": {"name": "augmax", "steps": 2},
              "train": {"epochs": 2, "batch_size": 32, "progress": False}}
    out, report = tmp_path / "run", tmp_path / "report"
    context = mp.spawn(_worker, args=(2, _free_ports(4), config, str(out), str(report)), nprocs=2, join=False)
    deadline = time.time() + 240
    while not context.join(timeout=2):  # raises if a worker failed
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two-process run did not finish within 240 s")

    from augmax_lib.train import load_run
    from augmax_lib.train.checkpoint import load_checkpoint

    model, loaded = load_run(out)  # in this single process
    assert loaded["method"]["name"] == "augmax"
    with torch.no_grad():
        assert model(torch.rand(2, 3, 16, 16)).shape == (2, 10)
    last = load_checkpoint(out / "last.pt")
    assert last["world_size"] == 2 and len(last["rng"]) == 2  # both ranks' random states, for resuming
    history = json.loads((out / "log.json").read_text())
    # 128 training images, global batch 32 split 16 + 16: four steps of 32 images each.
    assert history[0]["train_images_per_s"] > 0 and (out / "results.json").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["world_size"] == 2 and results["provenance"]["backend"] == "gloo"
    resumed = load_checkpoint(tmp_path / "run-parts" / "last.pt")
    assert resumed["epoch"] == last["epoch"] == 2
    for key, value in last["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for rank in range(2):
        assert json.loads((tmp_path / f"report.{rank}").read_text()) == {"augmax": True, "pgdat": True}
