"""``python -m augmax_lib train``: train a model from a config file (see augmax_lib.train.engine).

Examples::

    python -m augmax_lib train --config configs/cifar10/resnet18_augmax_dubin.yaml --profile smoke
    python -m augmax_lib train --config configs/cifar10/resnet18_augmax_dubin.yaml --set train.epochs=50 --out runs/r18
    python -m augmax_lib train --config configs/cifar10/resnet18_augmax_dubin.yaml --out runs/r18 --resume
    python -m augmax_lib train --config configs/imagenet/resnet18_augmax_dubin.yaml --profile full --dry-run
    torchrun --nproc_per_node=4 -m augmax_lib train --config configs/imagenet/resnet18_augmax_dubin.yaml
"""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the train command."""
    parser.add_argument("--config", required=True, metavar="FILE", help="YAML config (one per paper row in configs/)")
    parser.add_argument("--profile", metavar="NAME", default=None,
                        help="overlay: smoke (seconds on a CPU), quick (minutes on a laptop), full (as published), "
                             "or a YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.epochs=10 --set method.lam=1 (repeatable)")
    parser.add_argument("--out", metavar="DIR", default=None, help="run directory (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (same config required)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="stop this session after N epochs (resume later with --resume)")
    parser.add_argument("--dry-run", action="store_true",
                        help="the config's own settings capped to 2 epochs of 2 steps of 16 images (and 256 training, "
                             "32 validation images): every code path of a long run, in seconds on a CPU")


def run(args: argparse.Namespace) -> int:
    """Train; print the run directory. Returns 0, or 2 with a one-line reason for a bad config, data or run dir."""
    from augmax_lib._checks import InputError, check_writable_folder, one_line, user_message
    from augmax_lib.train import CheckpointError, ConfigError, RunDirError, train

    if args.stop_after is not None and args.stop_after < 1:
        print("error: --stop-after: expected a number of epochs >= 1", file=sys.stderr)
        return 2
    try:
        if args.out and not args.resume:
            check_writable_folder(args.out, "--out")  # before the data is loaded, not at the first checkpoint
        overrides = args.overrides
        if args.dry_run:
            from augmax_lib.train.dry_run import with_dry_run

            overrides = with_dry_run(args.config, args.profile, overrides)
        run_dir = train(args.config, out=args.out, resume=args.resume, profile=args.profile,
                        overrides=overrides, stop_after=args.stop_after)
    except (ConfigError, CheckpointError, RunDirError, InputError) as err:
        print(f"error: {one_line(err) if isinstance(err, ConfigError) else user_message(err)}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under torchrun, only rank 0 reports
        print(run_dir)
    return 0
