"""``python -m augmax_lib export``: ship finished runs as fp16 safetensors files with a hashed manifest.

Examples::

    python -m augmax_lib export runs/long --seed 0 --out augmax_lib/models/weights/long
    python -m augmax_lib export runs/long/cifar10_resnet18_normal/seed0 --out my_models

A folder that is not itself a run is searched for runs (``results.json`` with a config and an evaluation);
``--seed`` and ``--config`` pick among them. ``augmax_lib.models.pretrained`` loads what this writes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the export command."""
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_FOLDER", help="run folders, or folders holding runs")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the .safetensors files and manifest.json go")
    parser.add_argument("--seed", type=int, default=None, help="export only the runs of this seed")
    parser.add_argument("--config", action="append", default=[], metavar="NAME",
                        help="export only runs of this config name, e.g. cifar10_resnet18_normal (repeatable)")
    parser.add_argument("--collection", default=None, help="name recorded in the manifest (default: the --out folder's)")
    parser.add_argument("--device", default="cpu")


def _runs(paths, seed, configs) -> list[Path]:
    found = []
    for root in map(Path, paths):
        candidates = [root / "results.json"] if (root / "results.json").is_file() else sorted(root.rglob("results.json"))
        for path in candidates:
            if path.parent.name == "evaluation" or "_sweep" in path.parts:
                continue
            config = json.loads(path.read_text()).get("config") or {}
            if not config or (seed is not None and config["train"]["seed"] != seed):
                continue
            if configs and config.get("name") not in configs:
                continue
            found.append(path.parent)
    return found


def run(args: argparse.Namespace) -> int:
    """Export; 0 on success, 2 when no run matches or a run is not evaluated."""
    from augmax_lib._checks import check_writable_folder
    from augmax_lib.train.export import export_pretrained

    runs = _runs(args.runs, args.seed, set(args.config))
    if not runs:
        print(f"error: no finished run in {', '.join(args.runs)} matches (seed {args.seed}, configs "
              f"{args.config or 'any'})", file=sys.stderr)
        return 2
    names = [json.loads((r / "results.json").read_text())["config"]["name"] for r in runs]
    if len(set(names)) < len(names):
        print(f"error: several runs of one config ({', '.join(sorted(names))}); pick one with --seed", file=sys.stderr)
        return 2
    check_writable_folder(args.out, "--out")
    try:
        export_pretrained(runs, args.out, args.collection, device=args.device)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
