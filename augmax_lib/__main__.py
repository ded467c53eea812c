"""Command line: ``python -m augmax_lib {corrupt,train,evaluate,sweep,tables,export} ...``."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each command lives in augmax_lib/cli/<name>.py with add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "corrupt": "write CIFAR-10-C style corrupted test sets",
    "train": "train a model from a config file",
    "evaluate": "evaluate a run or a checkpoint (SA, RA, mCE, CIFAR-10.1, spatial attack)",
    "sweep": "train and evaluate configs x seeds as jobs (debug, local, Slurm); --status follows them",
    "tables": "the poster's tables from a runs folder: mean and spread over seeds beside the published numbers",
    "export": "ship finished runs as fp16 safetensors files with a hashed manifest (augmax_lib.models.pretrained)",
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser with one sub-command per entry of COMMANDS."""
    parser = argparse.ArgumentParser(prog="python -m augmax_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"augmax_lib.cli.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    """Run one command; a user error prints one clear line and returns 2."""
    from augmax_lib._checks import InputError, user_message
    from augmax_lib._malloc import keep_freed_memory

    args = build_parser().parse_args(argv)
    keep_freed_memory()  # every command loops over large tensors; see augmax_lib/_malloc.py
    try:
        return int(args._run(args) or 0)
    except InputError as err:  # a bad file, folder or argument: one line, no traceback (bugs keep theirs)
        print(f"python -m augmax_lib {args.command}: error: {user_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
