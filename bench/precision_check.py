"""Does a speed setting move the quick trio's SA and RA by more than the spread between seeds?

Reads two sweep folders of the same configs (``python -m augmax_lib sweep ... --out DIR``): the adopted
setting (several seeds) and the reference numerics (fp32, at one or more of the same seeds). For each config it
prints the adopted setting's mean, sample standard deviation and range over seeds, and for each reference seed
the paired difference (reference minus adopted: same seed, data split and test subset). Then the test: were the
numerics no more than a reseed, each difference would have mean 0 and sd sqrt(2) x the seed spread (pooled
over the configs); differences beyond 1.96 of that are named.

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
    """The comparison as Markdown: a line per (config, metric, reference seed), the pooled test, then each
    config's mean change against its seed spread."""
    a, r = _runs(adopted), _runs(reference)
    names = sorted(set(a) & set(r))
    lines = [f"adopted: {adopted}  reference: {reference}", "",
             "| config | metric | adopted: mean +- sd [min, max] (seeds) | reference seed | reference | adopted, "
             "same seed | difference |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    diffs: dict = {"SA": [], "RA": []}
    variances: dict = {"SA": [], "RA": []}
    for name in names:
        seeds = sorted(a[name])
        for k, metric in ((0, "SA"), (1, "RA")):
            values = [a[name][s][k] for s in seeds]
            mean = statistics.fmean(values)
            sd = statistics.stdev(values) if len(values) > 1 else float("nan")
            if len(values) > 1:
                variances[metric].append((statistics.variance(values), len(values) - 1))
            for seed in sorted(set(r[name]) & set(seeds)):
                diff = r[name][seed][k] - a[name][seed][k]
                diffs[metric].append((name, seed, diff))
                lines.append(f"| {name} | {metric} | {mean:.2f} +- {sd:.2f} [{min(values):.2f}, {max(values):.2f}] "
                             f"({len(values)}, {a[name][seeds[0]][3]}) | {seed} | {r[name][seed][k]:.2f} "
                             f"({r[name][seed][3]}) | {a[name][seed][k]:.2f} | {diff:+.2f} |")
    # If the numerics only perturb training the way a new seed does, a same-seed difference is the difference of
    # two reseeded runs: mean 0, sd sqrt(2) sigma, with sigma the seed spread pooled over the configs (each
    # config's 3-seed sd alone is too rough an estimate).
    lines += ["", "| metric | pooled seed sd | sqrt(2) x sd | differences / (sqrt(2) x sd) | beyond 1.96 |",
              "| --- | ---: | ---: | --- | --- |"]
    for metric in ("SA", "RA"):
        dof = sum(d for _, d in variances[metric])
        if not dof or not diffs[metric]:
            continue
        pooled = (sum(v * d for v, d in variances[metric]) / dof) ** 0.5
        scale = 2 ** 0.5 * pooled
        ratios = [(name, seed, diff / scale) for name, seed, diff in diffs[metric]]
        beyond = [f"{name} seed {seed}" for name, seed, z in ratios if abs(z) > 1.96]
        lines.append(f"| {metric} | {pooled:.2f} | {scale:.2f} | "
                     + ", ".join(f"{name.split('_', 2)[-1]} {z:+.2f}" for name, _, z in ratios)
                     + f" | {', '.join(beyond) or 'none'} |")
    # The criterion read strictly: the change of each config's mean over the reference seeds (paired with
    # the adopted runs of the same seeds), against that config's own seed spread.
    lines += ["", "| config | metric | reference seeds | mean difference | adopted seed sd | below the sd |",
              "| --- | --- | ---: | ---: | ---: | --- |"]
    for name in names:
        seeds = sorted(a[name])
        shared = sorted(set(r[name]) & set(seeds))
        for k, metric in ((0, "SA"), (1, "RA")):
            if len(seeds) < 2 or not shared:
                continue
            change = statistics.fmean(r[name][s][k] - a[name][s][k] for s in shared)
            sd = statistics.stdev(a[name][s][k] for s in seeds)
            lines.append(f"| {name} | {metric} | {len(shared)} | {change:+.2f} | {sd:.2f} | "
                         f"{'yes' if abs(change) < sd else 'no'} |")
    lines += ["", "Training time (s), same seed: "
              + "; ".join(f"{name} seed {s}: {a[name][s][2]:.0f} adopted, {r[name][s][2]:.0f} reference"
                          for name in names for s in sorted(set(r[name]) & set(a[name])))]
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
