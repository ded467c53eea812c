"""`python -m augmax_lib tables`: the poster's numbers as transcribed (checked against REFERENCE.md and the
configs), cells averaged over seeds (numpy as the reference), mixed profiles/data/commits refused, exports
without checkpoints."""
from __future__ import annotations

import csv
import functools
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from augmax_lib.__main__ import main
from augmax_lib.paper_numbers import METRICS, TABLES, table
from augmax_lib.tables import TablesError, build_tables, collect_runs, export_runs, fits, render_markdown, run_profile, same_code
from augmax_lib.train import load_config

REPO = Path(__file__).resolve().parents[1]
REFERENCE_MD = Path("/work/shared/REFERENCE.md")
COMMIT = "a" * 40


@functools.lru_cache(maxsize=None)
def _configs() -> dict:
    """Every paper-row config in configs/, validated, by name: {name: (path, config)}."""
    out = {}
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        if "profiles" not in path.parts:
            config = load_config(path)
            out[config["name"]] = (path, config)
    return out


def _cell(key, row_label, column):
    t = table(key)
    row = next(r for r in t.rows if " ".join(r.labels) == row_label)
    return row.cells[column]


@pytest.mark.parametrize("key, row, column, value", [
    # Read off the poster (REFERENCE.md section 7 and the poster's tables), independently of the module.
    ("cifar10", "ResNet18 AugMax-DuBIN", "SA", 95.76), ("cifar10", "ResNet18 AugMax-DuBIN", "RA", 90.36),
    ("cifar10", "ResNeXt29 Normal", "RA", 71.70), ("cifar100", "WRN40-2 AugMix", "SA", 77.03),
    ("cifar100", "ResNeXt29 AugMax-DuBIN", "RA", 68.86), ("imagenet", "DeepAugment + AugMax-DuBIN", "mCE", 68.47),
    ("imagenet", "Normal", "RA", 30.91), ("tinyimagenet", "Normal", "mCE", 100.00),
    ("tinyimagenet", "AugMax-DuBIN", "SA", 62.21), ("table8", "AugMax-DuBN", "CIFAR100-C", 65.06),
    ("table10", "AdvMix diversity & adversity", "SA", 72.36), ("table10", "PGDAT hardness", "RA", 47.71),
    ("table11", "AugMax-DuBIN", "CIFAR10-STA", 63.20), ("table11", "Normal", "CIFAR10.1", 88.90),
])
def test_poster_numbers_as_read_off_the_poster(key, row, column, value):
    assert _cell(key, row, column).paper == value


def test_table8_keeps_the_posters_spreads():
    assert _cell("table8", "AugMix-DuBIN", "CIFAR100-C").paper_spread == 0.58
    assert _cell("table8", "AugMax-DuBIN", "CIFAR10-C").paper_spread == 0.16


@pytest.mark.skipif(not REFERENCE_MD.is_file(), reason="REFERENCE.md is only on the project's machine")
def test_main_tables_agree_with_reference_md_section_7():
    text = REFERENCE_MD.read_text().split("## 7.")[1].split("## 8.")[0]
    method_cols = ("Normal", "AugMix", "AugMax-DuBIN")
    checked = 0
    for line in text.splitlines():
        m = re.match(r"\| (CIFAR-10|CIFAR-100) \| (\S+) \| (.+) \|$", line.strip())
        if not m:
            continue
        key = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100"}[m.group(1)]
        for method, pair in zip(method_cols, m.group(3).split(" | ")):
            sa, ra = (float(v) for v in pair.split(" / "))
            assert _cell(key, f"{m.group(2)} {method}", "SA").paper == sa
            assert _cell(key, f"{m.group(2)} {method}", "RA").paper == ra
            checked += 1
    assert checked == 18
    for name, key in (("ImageNet ResNet18", "imagenet"), ("Tiny-ImageNet", "tinyimagenet")):
        block = text.split(name)[1].split(".\n")[0]
        found = re.findall(r"([A-Za-z+\- ]+?) (\d+\.\d+)/(\d+\.\d+)/(\d+\.\d+)", block)
        assert len(found) == 5
        for label, sa, ra, mce in found:
            label = label.strip(" ,:").replace("DeepAug+", "DeepAugment + ")
            for column, value in (("SA", sa), ("RA", ra), ("mCE", mce)):
                assert _cell(key, label, column).paper == float(value)


def test_configs_paper_blocks_agree_with_the_module_and_every_cell_has_a_config():
    configs = {name: config for name, (_, config) in _configs().items()}
    metric_key = {"sa": "sa", "ra": "ra", "mce": "mce", "cifar101": "cifar101", "sta": "sta"}
    cells = [c for t in TABLES for r in t.rows for c in r.cells.values()]
    for cell in cells:
        assert cell.config in configs, cell.config
        assert configs[cell.config]["paper"][metric_key[cell.metric]] == pytest.approx(cell.paper), cell
    filled = {(c.config, c.metric) for c in cells}
    for name, config in configs.items():
        for metric, value in config["paper"].items():
            if metric in METRICS and value is not None:
                assert (name, metric) in filled, (name, metric)


# ----------------------------------------------------------------------------------------- fake runs
def _write_run(root, config_name, seed, sa=None, ra=None, profile="quick", commit=COMMIT, epochs=None,
               images_per_set=1000, data="CIFAR-10 (JPEG q75 mirror)", extra_metrics=None, evaluated=True,
               overrides=(), sweep=True):
    """A run folder as train + evaluate write it (only the keys the tables read), with known numbers.

    ``epochs`` overrides the profile's budget (a run no profile gives); ``overrides`` are further --set keys.
    """
    path = _configs()[config_name][0]
    config = load_config(path, profile, [f"train.seed={seed}", *overrides]
                         + ([f"train.epochs={epochs}"] if epochs is not None else []))
    epochs = config["train"]["epochs"]
    run = Path(root) / config_name / f"seed{seed}"
    (run / "evaluation").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "name": config_name, "config": config, "epochs": epochs, "data_source": data,
        "provenance": {"git_commit": commit}}))
    if sweep:
        (run / "sweep.json").write_text(json.dumps({"profile": profile, "seed": seed}))
    (run / "last.pt").write_bytes(b"checkpoint")
    (run / "best.pt").write_bytes(b"checkpoint")
    (run / "log.csv").write_text("epoch\n1\n")
    metrics = {}
    if sa is not None:
        metrics["sa"] = sa / 100
    if ra is not None:
        metrics.update(ra=ra / 100, corruption_source="generated", corruption_accuracy={"fog": {"1": ra / 100}})
    metrics.update(extra_metrics or {})
    if evaluated:
        (run / "evaluation" / "results.json").write_text(json.dumps({
            "dataset": config["data"]["dataset"], "data_source": data, "num_test_images": 10000, "images_per_set": images_per_set,
            "protocol": {"seed": 0}, "metrics": metrics, "skipped": {} if ra is not None else {"ra": "no files"},
            "provenance": {"git": {"commit": commit}}}))
    return run


def _cells(tables, key):
    return {(" ".join(c.row), c.column): c for t in tables if t.key == key for c in t.cells}


def test_cells_hold_mean_sample_sd_and_n_over_seeds_beside_the_paper(tmp_path):
    sa, ra = [41.0, 43.5, 44.1], [30.2, 29.0, 31.9]
    for seed in range(3):
        _write_run(tmp_path, "cifar10_resnet18_normal", seed, sa[seed], ra[seed])
    _write_run(tmp_path, "cifar10_resnet18_augmix", 0, 40.0, 35.0)
    tables = build_tables(collect_runs([tmp_path]))
    cells = _cells(tables, "cifar10")
    c = cells[("ResNet18 Normal", "SA")]
    assert c.n == 3 and c.seeds == (0, 1, 2)
    assert c.mean == pytest.approx(np.mean(sa)) and c.std == pytest.approx(np.std(sa, ddof=1))
    assert c.diff == pytest.approx(np.mean(sa) - 95.56)
    assert cells[("ResNet18 Normal", "RA")].std == pytest.approx(np.std(ra, ddof=1))
    one = cells[("ResNet18 AugMix", "RA")]
    assert one.n == 1 and one.std is None and one.mean == pytest.approx(35.0)
    assert cells[("ResNet18 AugMax-DuBIN", "SA")].n == 0
    md = render_markdown(tables)
    assert f"| ResNet18 | Normal | {np.mean(sa):.2f} ± {np.std(sa, ddof=1):.2f} (n=3) | 95.56 | " \
           f"{np.mean(sa) - 95.56:+.2f} |" in md
    assert "## CIFAR-10 / CIFAR-10-C" in md and "## ImageNet" not in md  # tables without runs are left out
    assert f"Runs: profile quick; training data CIFAR-10 (JPEG q75 mirror); commit {COMMIT[:10]}." in md
    assert "## ImageNet" in render_markdown(tables, show_empty=True)


def test_mixed_profiles_are_not_averaged_and_the_note_says_why(tmp_path):
    _write_run(tmp_path / "a", "cifar10_resnet18_normal", 0, 41.0, 30.0, profile="quick")
    _write_run(tmp_path / "a", "cifar10_resnet18_normal", 1, 42.0, 31.0, profile="quick")
    _write_run(tmp_path / "b", "cifar10_resnet18_normal", 2, 90.0, 70.0, profile="full")
    tables = build_tables(collect_runs([tmp_path]))
    c = _cells(tables, "cifar10")[("ResNet18 Normal", "SA")]
    assert c.mean is None and "mixed profiles" in c.refused
    assert "quick (seeds 0, 1)" in c.refused and "full (seed 2)" in c.refused
    md = render_markdown(tables)
    assert "not averaged [1]" in md and "[1] ResNet18 Normal, SA: mixed profiles" in md


@pytest.mark.parametrize("change, words", [
    (dict(commit="b" * 40), "mixed commits"),
    (dict(data="CIFAR-10"), "mixed training data"),
    (dict(images_per_set=500), "mixed evaluation data (images_per_set)"),
])
def test_mixed_commits_data_or_evaluation_are_refused(tmp_path, change, words):
    _write_run(tmp_path, "cifar10_resnet18_normal", 0, 41.0, 30.0)
    _write_run(tmp_path, "cifar10_resnet18_normal", 1, 42.0, 31.0, **change)
    cells = _cells(build_tables(collect_runs([tmp_path])), "cifar10")
    assert words in cells[("ResNet18 Normal", "SA")].refused
    if "commit" in words:
        allowed = _cells(build_tables(collect_runs([tmp_path]), allow_mixed_commits=True), "cifar10")
        assert allowed[("ResNet18 Normal", "SA")].mean == pytest.approx(41.5)


def test_a_cell_uses_runs_of_the_same_training_and_says_so(tmp_path):
    for seed, (c101, sta) in enumerate([(0.80, 0.25), (0.82, 0.27)]):
        _write_run(tmp_path, "cifar10_resnext29_normal", seed, 50.0, 40.0,
                   extra_metrics={"cifar101": {"v4": c101, "v6": 0.5}, "spatial": {"k": 10, "worst_loss": sta}})
    cells = _cells(build_tables(collect_runs([tmp_path])), "table11")
    c = cells[("Normal", "CIFAR10.1")]
    assert c.runs_of == "cifar10_resnext29_normal" and c.mean == pytest.approx(81.0)
    assert any("the same recipe and budget as other_shifts_cifar10_resnext29_normal" in note for note in c.notes)
    assert cells[("Normal", "CIFAR10-STA")].mean == pytest.approx(26.0)


def test_unmeasured_metrics_and_unevaluated_runs_are_noted(tmp_path):
    _write_run(tmp_path, "cifar10_resnet18_normal", 0, 41.0)                   # RA skipped
    _write_run(tmp_path, "cifar10_resnet18_normal", 1, evaluated=False)        # still training / evaluating
    c = _cells(build_tables(collect_runs([tmp_path])), "cifar10")[("ResNet18 Normal", "RA")]
    assert c.n == 0 and any("not measured in seed 0: no files" in n for n in c.notes)
    assert any("not evaluated yet (seed 1)" in n for n in c.notes)


def test_export_copies_small_files_only_and_tables_cli_reads_them(tmp_path, capsys):
    runs, dest = tmp_path / "runs", tmp_path / "results" / "quick"
    for seed in range(2):
        _write_run(runs, "cifar10_resnet18_augmax_dubin", seed, 40.0 + seed, 30.0)
    _write_run(runs, "cifar10_resnet18_augmix_original_recipe", 0, 60.0, 50.0)  # fills no poster cell
    assert main(["tables", str(runs), "--export", str(dest), "--quiet"]) == 0
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == sorted(["runs.csv", "tables.csv", "tables.md"] + [
        f"{name}/seed{s}/{f}" for name, seeds in (("cifar10_resnet18_augmax_dubin", (0, 1)),
                                                  ("cifar10_resnet18_augmix_original_recipe", (0,)))
        for s in seeds for f in ("results.json", "sweep.json", "log.csv", "evaluation/results.json")])
    md = (dest / "tables.md").read_text()
    assert "| cifar10_resnet18_augmix_original_recipe | 0 | 60.00 (n=1) | 50.00 (n=1) |" in md
    rows = list(csv.DictReader(io.StringIO((dest / "tables.csv").read_text())))
    sa = next(r for r in rows if r["config"] == "cifar10_resnet18_augmax_dubin" and r["metric"] == "sa")
    assert float(sa["mean"]) == pytest.approx(40.5) and sa["n"] == "2" and float(sa["paper"]) == 95.76
    assert float(sa["std"]) == pytest.approx(np.std([40.0, 41.0], ddof=1), abs=1e-4)
    runs_rows = list(csv.DictReader(io.StringIO((dest / "runs.csv").read_text())))
    assert [r["run_dir"] for r in runs_rows] == [f"cifar10_resnet18_augmax_dubin/seed{s}" for s in range(2)] + [
        "cifar10_resnet18_augmix_original_recipe/seed0"]
    # Two runs folders with the same (config, seed) cannot go to one export.
    _write_run(tmp_path / "other", "cifar10_resnet18_augmax_dubin", 0, 50.0, 30.0)
    with pytest.raises(TablesError, match="seed 0"):
        export_runs(collect_runs([runs, tmp_path / "other"]), tmp_path / "x")
    assert main(["tables", str(tmp_path / "missing")]) == 2
    assert "no such runs folder" in capsys.readouterr().err


def test_commits_that_differ_only_outside_the_code_count_as_one(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    commits = []
    for path, text in (("augmax_lib/ops.py", "a = 1\n"), ("README.md", "words\n"), ("augmax_lib/ops.py", "a = 2\n"),
                       ("configs/x.yaml", "name: x\n")):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
        git("add", path)
        git("commit", "-q", "-m", path)
        commits.append(git("rev-parse", "HEAD"))
    repo = str(tmp_path)
    assert same_code(commits[0], commits[1], repo)        # only the README changed
    assert not same_code(commits[1], commits[2], repo)    # the library changed
    assert not same_code(commits[2], commits[3], repo)    # a config changed
    assert not same_code(commits[0], "f" * 40, repo)      # a commit git does not know
    assert not same_code(None, commits[0], repo)


# ------------------------------------------------------------------- one rule: data set and budget of a cell
def test_a_run_at_another_budget_fills_no_cell_and_is_listed_with_the_reason(tmp_path):
    _write_run(tmp_path, "cifar10_resnet18_normal", 0, 41.0, 30.0, epochs=5)      # quick trains 6 epochs
    _write_run(tmp_path, "cifar10_resnet18_normal", 1, 43.0, 31.0)
    records = collect_runs([tmp_path])
    assert [run_profile(r) for r in records] == [None, "quick"]
    c = _cells(build_tables(records), "cifar10")[("ResNet18 Normal", "SA")]
    assert c.n == 1 and c.seeds == (1,) and c.mean == pytest.approx(43.0)
    md = render_markdown(build_tables(records), records=records)
    assert "| cifar10_resnet18_normal | 0 | 41.00 (n=1) | 30.00 (n=1) | its budget is no profile's" in md


def test_rows_on_another_data_set_get_a_table_of_their_own_without_the_posters_numbers(tmp_path):
    # Table 10 is on CIFAR-100; its FAT row trained on CIFAR-10 fills no poster cell.
    _write_run(tmp_path, "ablation_strategy_cifar100_resnet18_fat", 0, 30.0, 25.0, overrides=["data.dataset=cifar10"])
    tables = build_tables(collect_runs([tmp_path]))
    assert _cells(tables, "table10")[("FAT hardness", "SA")].n == 0
    other = next(t for t in tables if t.key == "table10@cifar10")
    assert not other.comparable and "CIFAR-10 (JPEG q75 mirror)" in other.title
    fat = _cells(tables, "table10@cifar10")[("FAT hardness", "SA")]
    assert fat.mean == pytest.approx(30.0) and fat.diff is None and not fat.comparable
    md = render_markdown(tables)
    section = md[md.index("## Strategy ablation (Table 10): our rows on CIFAR-10"):]
    assert "| Method | Strategy | SA (%) | RA (%) |" in section and "61.51" not in section  # FAT's poster SA
    assert "| FAT | hardness | 30.00 (n=1) | 25.00 (n=1) |" in section
    rows = list(csv.DictReader(io.StringIO(__import__("augmax_lib.tables", fromlist=["x"]).cells_csv(tables))))
    fat_row = next(r for r in rows if r["table"] == "table10@cifar10" and r["row"] == "FAT hardness"
                   and r["column"] == "SA")
    assert fat_row["diff"] == "" and fat_row["dataset"] == "cifar10"


def test_the_same_training_means_the_same_recipe_and_budget(tmp_path, monkeypatch):
    import augmax_lib.tables as tables_lib
    import augmax_lib.train.config as config_lib

    # A profile whose ablation rows get a smaller budget than the main rows: the main WRN40-2 AugMax-DuBIN run
    # (the same recipe otherwise) must not fill Table 8's AugMax-DuBIN cell.
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "small.yaml").write_text("data: {train_size: 512}\nablations:\n  train: {epochs: 2}\n")
    monkeypatch.setattr(config_lib, "PROFILES_DIR", profiles)
    for cached in (tables_lib._config_files, tables_lib._expected, tables_lib._config_dataset):
        cached.cache_clear()
    monkeypatch.setattr(tables_lib, "_config_files", functools.lru_cache(maxsize=1)(
        lambda: {name: path for name, (path, _) in _configs().items()}))
    try:
        main_run = _write_run(tmp_path / "runs", "cifar10_wrn40_2_augmax_dubin", 0, 50.0, 40.0, profile="small")
        records = collect_runs([tmp_path / "runs"])
        assert fits(records[0], "cifar10_wrn40_2_augmax_dubin")
        assert not fits(records[0], "ablation_norm_cifar10_wrn40_2_augmax_dubin")
        cell = _cells(build_tables(records), "table8")[("AugMax-DuBIN", "CIFAR10-C")]
        assert cell.n == 0 and main_run.is_dir()
        _write_run(tmp_path / "runs", "ablation_norm_cifar10_wrn40_2_augmax_dubin", 0, 45.0, 35.0, profile="small")
        cell = _cells(build_tables(collect_runs([tmp_path / "runs"])), "table8")[("AugMax-DuBIN", "CIFAR10-C")]
        assert cell.n == 1 and cell.mean == pytest.approx(35.0)
    finally:
        for cached in (tables_lib._expected, tables_lib._config_dataset):
            cached.cache_clear()


def test_a_run_without_a_recorded_profile_is_matched_to_the_profile_that_gives_its_recipe(tmp_path):
    _write_run(tmp_path, "cifar10_resnet18_augmix", 0, 50.0, 40.0, profile="smoke", sweep=False)
    record = collect_runs([tmp_path])[0]
    record.profile = None  # an old run: neither sweep.json nor its config says which profile made it
    record.config = {k: v for k, v in record.config.items() if k != "profile"}
    assert run_profile(record) == "smoke"


def test_runs_in_a_table_of_their_own_data_set_are_not_repeated_under_another_tables_title(tmp_path):
    # The CIFAR-10 main trio fills the CIFAR-10 table; the CIFAR-100 main table's cells match the same model and
    # method, but a "CIFAR-100 table on CIFAR-10" would only repeat those runs.
    for seed in (0, 1):
        _write_run(tmp_path, "cifar10_resnet18_normal", seed, 41.0 + seed, 30.0)
    tables = build_tables(collect_runs([tmp_path]))
    assert _cells(tables, "cifar10")[("ResNet18 Normal", "SA")].n == 2
    assert not [t.key for t in tables if "@" in t.key]
    # A run no poster table holds still gets its table on its own data set, beside the repeated ones.
    _write_run(tmp_path, "ablation_strategy_cifar100_resnet18_fat", 0, 30.0, 25.0, overrides=["data.dataset=cifar10"])
    tables = build_tables(collect_runs([tmp_path]))
    assert "table10@cifar10" in [t.key for t in tables]


def test_a_profile_asking_for_auto_precision_takes_runs_of_either_but_does_not_mix_them(tmp_path):
    # quick asks for precision auto: a run made where bf16 is native recorded bf16, one made elsewhere fp32.
    _write_run(tmp_path / "a", "cifar10_resnet18_normal", 0, 41.0, 30.0, overrides=["train.precision=bf16"])
    _write_run(tmp_path / "a", "cifar10_resnet18_normal", 1, 43.0, 32.0, overrides=["train.precision=bf16"])
    _write_run(tmp_path / "b", "cifar10_resnet18_normal", 0, 42.0, 31.0, overrides=["train.precision=fp32"])
    for folder, mean in (("a", 42.0), ("b", 42.0)):
        c = _cells(build_tables(collect_runs([tmp_path / folder])), "cifar10")[("ResNet18 Normal", "SA")]
        assert c.mean == pytest.approx(mean) and c.refused is None
    _write_run(tmp_path / "a", "cifar10_resnet18_normal", 2, 44.0, 33.0, overrides=["train.precision=fp32"])
    c = _cells(build_tables(collect_runs([tmp_path / "a"])), "cifar10")[("ResNet18 Normal", "SA")]
    assert c.mean is None and "mixed configs: train.precision = bf16 (seeds 0, 1) vs fp32 (seed 2)" in c.refused
    # fp16 is not what auto ever gives: such a run fills no cell of the quick profile.
    _write_run(tmp_path / "c", "cifar10_resnet18_normal", 0, 42.0, 31.0, overrides=["train.precision=fp16"])
    assert _cells(build_tables(collect_runs([tmp_path / "c"])), "cifar10")[("ResNet18 Normal", "SA")].n == 0
