"""Does a speed setting move the quick trio's SA and RA by more than the spread between seeds?

Reads two sweep folders of the same configs (``python -m augmax_lib sweep ... --out DIR``): the adopted
setting (several seeds) and the reference numerics (fp32, at one or more of the same seeds). For each config it
prints the adopted setting's mean and sample standard deviation over seeds, and for each reference seed the
paired difference (reference minus adopted, same seed, same data split, same test subset) beside that spread.

    python bench/precision_check.py runs/quick runs/quick-fp32 --out bench/results/precision-check.md
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _runs(folder: Path) -> dict:
    """{config name: {seed: (sa %, ra %, train s, numerics)}} of every evaluated run under ``folder``."""
    out: dict = {}
    for path in sorted(folder.glob("*/seed*/evaluation/results.json")):
        run = path.parent.parent
        trained = json.loads((run / "results.json").read_text())
        metrics = json.loads(path.read_text())["metrics"]
        train = trained["config"]["train"]
        numerics = f"{train['precision']}{' + channels-last' if train['channels_last'] else ''}"
        out.setdefault(run.parent.name, {})[int(run.name[4:])] = (
            100 * metrics["sa"], 100 * metrics["ra"], trained.get("wall_time_s"), numerics)
    return out


def report(adopted: Path, reference: Path) -> str:
    """The comparison as a Markdown table, one line per (config, metric, reference seed)."""
    a, r = _runs(adopted), _runs(reference)
    lines = [f"adopted: {adopted}  reference: {reference}", "",
             "Two runs of the same config at different seeds differ by sqrt(2) sd on average; a change of numerics",
             "that stays within that (and within the adopted seeds' range) is indistinguishable from a reseed.", "",
             "| config | metric | adopted: mean +- sd [min, max] (seeds) | reference seed | reference | adopted, "
             "same seed | difference | sqrt(2) sd | within |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name in sorted(set(a) & set(r)):
        seeds = sorted(a[name])
        for k, metric in ((0, "SA"), (1, "RA")):
            values = [a[name][s][k] for s in seeds]
            mean = statistics.fmean(values)
            sd = statistics.stdev(values) if len(values) > 1 else float("nan")
            ref_values = []
            for seed in sorted(set(r[name]) & set(seeds)):
                ref = r[name][seed][k]
                ref_values.append(ref)
                diff = ref - a[name][seed][k]
                inside = abs(diff) <= 2 ** 0.5 * sd and min(values) <= ref <= max(values)
                lines.append(f"| {name} | {metric} | {mean:.2f} +- {sd:.2f} [{min(values):.2f}, {max(values):.2f}] "
                             f"({len(values)}, {a[name][seeds[0]][3]}) | {seed} | {ref:.2f} ({r[name][seed][3]}) | "
                             f"{a[name][seed][k]:.2f} | {diff:+.2f} | {2 ** 0.5 * sd:.2f} | "
                             f"{'yes' if inside else 'NO'} |")
    lines += ["", "Training time (s), same seed: "
              + "; ".join(f"{name} seed {s}: {a[name][s][2]:.0f} adopted, {r[name][s][2]:.0f} reference"
                          for name in sorted(set(a) & set(r)) for s in sorted(set(r[name]) & set(a[name])))]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adopted", type=Path, help="sweep folder of the adopted setting (several seeds)")
    parser.add_argument("reference", type=Path, help="sweep folder of the reference numerics (fp32)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    text = report(args.adopted, args.reference)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
