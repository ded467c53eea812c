"""Command-line arguments of an evaluation's settings, shared by ``evaluate`` and the sweep's ``--eval-args``.

:func:`add_evaluation_arguments` declares them; :func:`option_changes` and :func:`numerics_changes` turn the
parsed values that were given into field changes of :class:`EvalOptions` and :class:`Numerics` (what was not
given keeps the default, or a run's config); :func:`parse_evaluation_argv` does both for an argument list.
"""
from __future__ import annotations

import argparse
from typing import Sequence

__all__ = ["add_evaluation_arguments", "argument_problem", "option_changes", "numerics_changes",
           "parse_evaluation_argv"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """The settings of an evaluation (what it measures, on which images, how it computes) as options."""
    from augmax_lib.corruptions import ALL_CORRUPTIONS

    from .suite import METRICS

    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default 500)")
    parser.add_argument("--skip", nargs="+", default=None, choices=METRICS, metavar="METRIC",
                        help=f"leave out some of: {', '.join(METRICS)}")
    parser.add_argument("--corruptions", nargs="+", default=None, metavar="NAME",
                        help=f"evaluate only these corruptions (RA is then not the benchmark's): some of "
                             f"{', '.join(ALL_CORRUPTIONS)}")
    parser.add_argument("--generate-corruptions", nargs="?", const=True, default=None, type=_auto,
                        metavar="auto",
                        help="corrupt the test set on the fly with augmax_lib.corruptions instead of reading "
                             "CIFAR-10-C style files (always so for the synthetic set); "
                             "--generate-corruptions=auto: only where the published files are absent and the "
                             "test set is held in memory (a sweep over data sets of every kind)")
    parser.add_argument("--no-generated-jpeg", dest="generated_jpeg", action="store_false", default=None,
                        help="skip the JPEG quality-85 round trip that generated Tiny-ImageNet-C and ImageNet-C "
                             "images get by default, as the published files were saved (recorded in results.json)")
    parser.add_argument("--spatial-k", type=int, default=None, help="draws of the worst-of-k spatial attack")
    parser.add_argument("--images-per-set", type=_positive_int, default=None, metavar="N",
                        help="evaluate on N class-balanced test images, the same in the clean set, every corrupted "
                             "set and the spatial attack (default: the whole set, or a run's eval.images_per_set)")
    parser.add_argument("--subset-seed", type=int, default=None,
                        help="seed of the subset's indices (default 0, or a run's eval.subset_seed)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the spatial attack and generated corruptions")
    parser.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    speed = parser.add_argument_group("numerics (default: fp32, as the paper; a run's eval section may opt in)")
    speed.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16", "auto"),
                       help="forward passes in fp32 or under bf16/fp16 autocast (faster where the hardware has it; "
                            "may flip borderline predictions), or auto: bf16 where the device computes it natively, "
                            "else fp32; recorded in results.json")
    speed.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="channels-last memory format (faster on GPUs; same arithmetic)")
    speed.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")


def argument_problem(args: argparse.Namespace):
    """The first evaluation argument with a value that cannot work, as a one-line message; None if all can."""
    from augmax_lib.corruptions import ALL_CORRUPTIONS

    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch-size: expected a positive integer, got {args.batch_size}"
    if args.spatial_k is not None and args.spatial_k < 1:
        return f"--spatial-k: expected a positive number of draws, got {args.spatial_k}"
    unknown = [c for c in args.corruptions or () if c not in ALL_CORRUPTIONS]
    if unknown:
        return f"--corruptions: unknown name(s) {', '.join(unknown)}; expected some of {', '.join(ALL_CORRUPTIONS)}"
    return None


def _auto(text: str) -> str:
    if text != "auto":
        raise argparse.ArgumentTypeError(f"expected no value or 'auto', got {text!r}")
    return text


def option_changes(args: argparse.Namespace) -> dict:
    """The EvalOptions fields that the parsed ``args`` set explicitly."""
    given = {"batch_size": args.batch_size, "skip": tuple(args.skip) if args.skip else None,
             "corruptions": tuple(args.corruptions) if args.corruptions else None,
             "generate_corruptions": args.generate_corruptions or None,
             "spatial_k": args.spatial_k, "images_per_set": args.images_per_set, "subset_seed": args.subset_seed,
             "seed": args.seed, "progress": False if args.quiet else None}
    changes = {k: v for k, v in given.items() if v is not None}
    if args.generated_jpeg is False:  # --no-generated-jpeg: no round trip (None is a value of this field)
        changes["generated_jpeg_quality"] = None
    return changes


def numerics_changes(args: argparse.Namespace) -> dict:
    """The Numerics fields that the parsed ``args`` set explicitly."""
    given = {"precision": args.precision, "channels_last": args.channels_last, "compile": args.compile}
    return {k: v for k, v in given.items() if v is not None}


def parse_evaluation_argv(argv: Sequence[str]) -> tuple[dict, dict]:
    """(EvalOptions changes, Numerics changes) of evaluation options given as arguments, e.g. a sweep's
    ``--eval-args``; raises ValueError naming a bad or unknown argument."""
    parser = argparse.ArgumentParser(prog="evaluate", add_help=False, exit_on_error=False)
    add_evaluation_arguments(parser)
    try:
        args, unknown = parser.parse_known_args(list(argv))
    except (argparse.ArgumentError, SystemExit) as err:
        raise ValueError(f"evaluation arguments {' '.join(argv)!r}: {err}") from None
    if unknown:
        raise ValueError(f"evaluation arguments: unknown {' '.join(unknown)!r}; expected options of "
                         f"`python -m augmax_lib evaluate` about what to measure (e.g. --generate-corruptions)")
    problem = argument_problem(args)
    if problem:
        raise ValueError(problem)
    return option_changes(args), numerics_changes(args)
