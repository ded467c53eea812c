"""Command line: ``python -m augmax_lib {corrupt,train,evaluate} ...``."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each command lives in augmax_lib/cli/<name>.py with add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "corrupt": "write CIFAR-10-C style corrupted test sets",
    "train": "train a model from a config file",
    "evaluate": "evaluate a run or a checkpoint (SA, RA, mCE, CIFAR-10.1, spatial attack)",
}


def build_parser() -> argparse.ArgumentParser:
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
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
