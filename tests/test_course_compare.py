"""augmax_lib.course.compare: run summaries with provenance, a poster table's configs, the data-set fallback."""

import pandas as pd
import pytest
import yaml

from augmax_lib.course.compare import pick_dataset, plot_ours_vs_poster, run_summary, summary_frame, table_configs


class FakeRun:
    """What run_summary reads from augmax_lib.course.shared_runs.Run."""

    def __init__(self, results, evaluation, config):
        self.results, self.evaluation, self.config = results, evaluation, config
        self.name, self.profile, self.seed, self.data_source = config["name"], "quick", 2, "CIFAR-10 (test)"


def _run(sa=0.9, ra=0.7):
    config = {"name": "cifar10_resnet18_normal", "paper": {"row": "ResNet18 Normal", "sa": 95.56, "ra": 74.75}}
    results = {"epochs": 5, "best": {"row": {"val_acc": 0.8}},
               "provenance": {"git_commit": "a" * 40, "device_name": "CPU (x86_64, 2 threads)"}}
    evaluation = {"eval_images": 2000, "metrics": {"sa": sa, "sa_se": 0.01, "ra": ra, "ra_se": 0.005,
                                                   "spatial": {"worst_loss": 0.3}, "cifar101": {"v6": 0.8}},
                  "provenance": {"git": {"commit": "b" * 40, "dirty": False}, "device": "cpu (x86_64, 2 threads)"}}
    return FakeRun(results, evaluation, config)


def test_run_summary_gives_percent_and_where_the_numbers_come_from():
    s = run_summary(_run())
    assert s["sa"] == pytest.approx(90.0) and s["ra"] == pytest.approx(70.0) and s["ra_se"] == pytest.approx(0.5)
    assert s["spatial"] == pytest.approx(30.0) and s["cifar101_v6"] == pytest.approx(80.0)
    assert s["cifar101_v4"] is None and s["val_acc"] == pytest.approx(80.0)
    assert (s["paper_sa"], s["paper_ra"], s["paper_row"]) == (95.56, 74.75, "ResNet18 Normal")
    assert (s["profile"], s["seed"], s["epochs"], s["eval_images"]) == ("quick", 2, 5, 2000)
    assert s["commit"] == "b" * 10  # the evaluation's commit, which made the numbers
    assert s["device"].startswith("cpu")


def test_unevaluated_run_has_no_numbers_and_the_frame_keeps_labels():
    bare = FakeRun({}, None, {"name": "x", "paper": {}})
    frame = summary_frame({"A": _run(0.5), "B": bare})
    assert list(frame.index) == ["A", "B"]
    assert frame.loc["A", "sa"] == pytest.approx(50.0) and pd.isna(frame.loc["B", "sa"])
    with pytest.raises(ValueError, match="runs"):
        summary_frame({})


def test_table_configs_reads_paper_rows_and_filters_by_data_set(tmp_path):
    folder = tmp_path / "ablation_x"
    folder.mkdir()
    for name, ra in (("cifar10_a", 1.5), ("cifar100_a", 2.5), ("cifar10_b", 3.5)):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({"name": f"ablation_x_{name}",
                                                             "paper": {"row": f"row {name}", "ra": ra}}))
    table = table_configs("ablation_x", "cifar10", configs_dir=tmp_path)
    assert list(table["config"]) == ["ablation_x/cifar10_a", "ablation_x/cifar10_b"]
    assert list(table["ra"]) == [1.5, 3.5] and table["sa"].isna().all()
    with pytest.raises(FileNotFoundError, match="known: ablation_x"):
        table_configs("nothing", configs_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="imagenet"):
        table_configs("ablation_x", "imagenet", configs_dir=tmp_path)


def test_repository_strategy_table_comes_in_the_posters_order():
    table = table_configs("ablation_strategy")
    methods = [row.split(" ", 1)[1] for row in table["row"]]
    assert methods == ["Normal", "AugMix", "PGDAT", "FAT", "AdvMax", "AugMix+PGDAT", "AdvMix", "AugMax-DuBIN"]


def test_pick_dataset_falls_back_and_says_why(tmp_path):
    used, note = pick_dataset("cifar100", tmp_path)
    assert used == "synthetic" and "cifar100" in note and "cifar10 (" in note and "SYNTHETIC" in note
    assert pick_dataset("synthetic", tmp_path) == ("synthetic", "")


def test_plot_ours_vs_poster_draws_both_panels():
    import matplotlib
    matplotlib.use("Agg")
    frame = summary_frame({"A": _run(0.5, 0.4), "B": _run(0.6, 0.5)})
    fig = plot_ours_vs_poster(frame, title="t")
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "poster"


def test_plot_ours_vs_poster_names_rows_in_a_legend_never_over_the_points():
    import matplotlib
    matplotlib.use("Agg")
    # Two rows 0.1 point apart and a third far away: each is named once, in the legend, and no text sits on the axes.
    frame = summary_frame({"AdvMax": _run(0.500, 0.400), "AugMax-DuBIN": _run(0.501, 0.401), "Far": _run(0.7, 0.6)})
    fig = plot_ours_vs_poster(frame)
    assert all(not ax.texts for ax in fig.axes)
    legend = fig.axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["AdvMax", "AugMax-DuBIN", "Far"]
    # the same row has the same colour in both panels
    colours = [[c.lines[0].get_color() for c in ax.containers] for ax in fig.axes[:2]]
    assert len(colours[0]) == 3 and colours[0] == colours[1]
