"""``python -m augmax_lib tables``: the poster's tables from the runs under one or more folders.

Examples::

    python -m augmax_lib tables runs/quick                   # writes runs/quick/tables.md, tables.csv, runs.csv
    python -m augmax_lib tables runs/quick --export results/quick   # copy the runs' small JSON files, then tables

Each cell holds the mean and sample standard deviation over seeds and the number of seeds, with the poster's
number (augmax_lib/paper_numbers.py) and the difference beside it. Runs of one cell made with different
profiles, data, evaluation settings or commits are not averaged; the cell's note says what differs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the tables command."""
    parser.add_argument("roots", nargs="+", metavar="RUNS_DIR",
                        help="folders searched for runs (results.json with evaluation/results.json), e.g. runs/quick")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where tables.md, tables.csv and runs.csv go (default: the first RUNS_DIR, or --export)")
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="first copy every run's small files (results.json, evaluation/results.json, "
                             "config.yaml, log.csv, sweep.json; no checkpoints) to DIR/<config>/seed<k>/, "
                             "then make the tables from DIR")
    parser.add_argument("--all", action="store_true", help="also write tables that have no runs")
    parser.add_argument("--allow-mixed-commits", action="store_true",
                        help="average runs made at different git commits (by default such a cell is refused)")
    parser.add_argument("--quiet", action="store_true", help="do not print the Markdown")


def run(args: argparse.Namespace) -> int:
    """Write the tables; 0 on success, 2 when a folder is missing or an export would overwrite one run by another."""
    from augmax_lib._checks import InputError, check_writable_folder
    from augmax_lib.tables import TablesError, build_tables, collect_runs, export_runs, render_markdown, write_tables

    try:
        records = collect_runs(args.roots)
        roots = list(args.roots)
        out = Path(args.out or args.export or args.roots[0])
        check_writable_folder(out, "--out" if args.out else ("--export" if args.export else "RUNS_DIR"))
        if args.export:
            check_writable_folder(args.export, "--export")
            copied = export_runs(records, args.export)
            print(f"tables: copied {len(copied)} file(s) of {len(records)} run(s) to {args.export}", file=sys.stderr)
            records, roots = collect_runs([args.export]), [args.export]
    except (TablesError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tables = build_tables(records, allow_mixed_commits=args.allow_mixed_commits)
    paths = write_tables(tables, records, out, roots, show_empty=args.all)
    if not args.quiet:
        print(render_markdown(tables, roots, show_empty=args.all, records=records))
    evaluated = sum(r.evaluation is not None for r in records)
    print(f"tables: {len(records)} run(s), {evaluated} evaluated; wrote "
          + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0
