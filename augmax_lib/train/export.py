"""Ship trained runs as pretrained models: fp16 safetensors files and a manifest with hashes, configs and metrics.

    python -m augmax_lib export runs/long --seed 0 --out augmax_lib/models/weights/long

Each run's best checkpoint is written as ``<config name>.safetensors`` (fp16 weights, the model spec in its
header; ``augmax_lib.models.pretrained`` loads it). The manifest records the file's sha256 and size, the run's
config, profile, seed, commit and data, the metrics of its evaluation, and the clean test accuracy of the
exported fp16 weights measured right after writing them (with the run's evaluation numerics and in fp32), so a
loader can check that the file reproduces what the run measured.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import torch

from augmax_lib._io import atomic_write_text
from augmax_lib.models.pretrained import FORMAT, MANIFEST, load_pretrained_file, save_pretrained

from .run_models import load_run

__all__ = ["export_pretrained", "model_spec"]


def model_spec(config: dict, num_classes: int) -> dict:
    """What ``augmax_lib.models.pretrained.model_from_spec`` needs to rebuild the model of ``config``."""
    m = config["model"]
    mean, std = m.get("input_mean"), m.get("input_std")
    if mean is None and m["name"].endswith("_imagenet"):
        from augmax_lib.data import IMAGENET_MEAN, IMAGENET_STD

        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    return {"name": m["name"], "norm": m["norm"], "width": m["width"], "kwargs": dict(m["kwargs"]),
            "num_classes": int(num_classes), "input_mean": mean, "input_std": std}


def _clean_accuracy(model, test, numerics: dict, device) -> float:
    from augmax_lib.evaluate.accuracy import clean_accuracy
    from augmax_lib.evaluate.inference import with_numerics

    return float(clean_accuracy(with_numerics(model, **numerics), test, device=device, progress=False))


def export_pretrained(run_dirs: Iterable, out, collection: Optional[str] = None, device="cpu",
                      log=print) -> dict:
    """Export each run of ``run_dirs`` (finished and evaluated) into ``out``; returns the manifest written there."""
    from augmax_lib.data import load_dataset

    out = Path(out)
    entries = {}
    for run_dir in map(Path, run_dirs):
        results = json.loads((run_dir / "results.json").read_text())
        evaluation_path = run_dir / "evaluation" / "results.json"
        if not evaluation_path.is_file():
            raise FileNotFoundError(f"{run_dir}: not evaluated yet (no evaluation/results.json); run "
                                    f"`python -m augmax_lib evaluate --run {run_dir}` first")
        evaluation = json.loads(evaluation_path.read_text())
        model, config = load_run(run_dir, "best", device=device)
        name = config["name"]
        spec = model_spec(config, model_classes(model))
        prov = results.get("provenance", {})
        metadata = {"config_name": name, "profile": config.get("profile"), "seed": config["train"]["seed"],
                    "train_commit": prov.get("git_commit"), "data_source": results.get("data_source"),
                    "best_epoch": (results.get("best") or {}).get("epoch")}
        file = f"{name}.safetensors"
        sha = save_pretrained(model, out / file, spec, metadata)
        shipped, _ = load_pretrained_file(out / file, sha, device)
        d = config["data"]
        test = load_dataset(d["dataset"], "test", root=d["root"])
        numerics = evaluation.get("protocol", {}).get("numerics") or {"precision": "fp32"}
        numerics = {k: numerics[k] for k in ("precision", "channels_last") if k in numerics}
        metrics = evaluation.get("metrics", {})
        spatial = metrics.get("spatial") or {}
        entries[name] = {
            "file": file, "sha256": sha, "bytes": (out / file).stat().st_size, "weights": "float16",
            "model": spec, **metadata, "config": config,
            "metrics": {"sa": metrics.get("sa"), "ra": metrics.get("ra"), "sta": spatial.get("worst_loss"),
                        "corruption_source": metrics.get("corruption_source"),
                        "test_images_per_set": evaluation.get("images_per_set"), "numerics": numerics},
            "exported": {"sa": _clean_accuracy(shipped, test, numerics, device),
                         "sa_fp32": _clean_accuracy(shipped, test, {"precision": "fp32"}, device),
                         "test_images": len(test)},
        }
        e = entries[name]
        log(f"export: {name} -> {out / file} ({e['bytes'] / 1e6:.2f} MB, sha256 {sha[:12]}...): SA of the run "
            f"{100 * (e['metrics']['sa'] or float('nan')):.2f}%, of the fp16 file {100 * e['exported']['sa']:.2f}% "
            f"({numerics.get('precision')}) and {100 * e['exported']['sa_fp32']:.2f}% (fp32)")
    manifest = {"format": FORMAT, "collection": collection or out.name, "models": entries}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, default=str) + "\n")
    return manifest


def model_classes(model: torch.nn.Module) -> int:
    """The number of classes of a classifier (the out_features of its last linear layer)."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return int(last[-1].out_features)
