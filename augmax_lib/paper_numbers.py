"""The AugMax poster's published numbers (%), one table per poster table, keyed by our config names.

Transcribed once, here, from the poster (Wang et al., NeurIPS 2021): the main results on CIFAR-10/100,
ImageNet and Tiny-ImageNet, Table 8 (normalisation ablation, with its +- spreads), Table 10 (strategy
ablation) and Table 11 (other distribution shifts). ``python -m augmax_lib tables`` puts our runs beside
these; the configs' ``paper:`` blocks must agree with them (tests/test_tables.py checks both).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Metric", "METRICS", "Cell", "Row", "Table", "TABLES", "table"]


@dataclass(frozen=True)
class Metric:
    """A number in the tables: its label, where it sits in an evaluation results.json, and its direction."""

    key: str
    label: str
    path: tuple            # keys into results["metrics"]; the value there is a fraction in [0, 1]
    higher_is_better: bool = True


METRICS = {
    "sa": Metric("sa", "SA (%)", ("sa",)),
    "ra": Metric("ra", "RA (%)", ("ra",)),
    "mce": Metric("mce", "mCE (%)", ("mce",), higher_is_better=False),
    # CIFAR-10.1 v4: the reference code's default version (REFERENCE.md section 6).
    "cifar101": Metric("cifar101", "CIFAR-10.1 (%)", ("cifar101", "v4")),
    # CIFAR10-STA: worst-of-10 spatial attack keeping the highest-loss draw, as the reference does.
    "sta": Metric("sta", "CIFAR10-STA (%)", ("spatial", "worst_loss")),
}


@dataclass(frozen=True)
class Cell:
    """One published number: the config whose runs fill it, the metric, the value, the data set it was trained and
    evaluated on, and its +- (Table 8 only)."""

    config: str
    metric: str
    paper: float
    dataset: str = "cifar10"
    paper_spread: Optional[float] = None


@dataclass(frozen=True)
class Row:
    """A table row: its labels (one per row header) and its cells by column name."""

    labels: tuple
    cells: dict


@dataclass(frozen=True)
class Table:
    """A poster table: key (file-safe), title, row headers, column names (each one metric) and rows."""

    key: str
    title: str
    row_headers: tuple
    columns: tuple
    rows: tuple
    note: str = ""
    column_labels: dict = field(default_factory=dict)  # column -> printed label (default: the metric's)


def _main_cifar(dataset: str, title: str, numbers: dict) -> Table:
    rows = []
    for (model, method), (sa, ra) in numbers.items():
        config = f"{dataset}_{model}_{method}"
        shown = {"resnet18": "ResNet18", "wrn40_2": "WRN40-2", "resnext29": "ResNeXt29"}[model]
        method_label = {"normal": "Normal", "augmix": "AugMix", "augmax_dubin": "AugMax-DuBIN"}[method]
        rows.append(Row((shown, method_label), {"SA": Cell(config, "sa", sa, dataset),
                                                "RA": Cell(config, "ra", ra, dataset)}))
    return Table(dataset, title, ("Model", "Method"), ("SA", "RA"), tuple(rows))


def _main_imagenet(dataset: str, title: str, numbers: dict) -> Table:
    labels = {"normal": "Normal", "augmix": "AugMix", "augmax_dubin": "AugMax-DuBIN",
              "deepaug_augmix": "DeepAugment + AugMix", "deepaug_augmax_dubin": "DeepAugment + AugMax-DuBIN"}
    rows = []
    for method, (sa, ra, mce) in numbers.items():
        config = f"{dataset}_resnet18_{method}"
        rows.append(Row((labels[method],), {"SA": Cell(config, "sa", sa, dataset), "RA": Cell(config, "ra", ra, dataset),
                                            "mCE": Cell(config, "mce", mce, dataset)}))
    return Table(dataset, title, ("Method",), ("SA", "RA", "mCE"), tuple(rows),
                 note="ResNet18. mCE anchors: AlexNet on ImageNet-C, a normally trained ResNet18 on Tiny-ImageNet-C.")


# Main results (poster "Main Results"; REFERENCE.md section 7): (SA, RA).
_CIFAR10 = {
    ("resnet18", "normal"): (95.56, 74.75), ("resnet18", "augmix"): (95.79, 89.49),
    ("resnet18", "augmax_dubin"): (95.76, 90.36),
    ("wrn40_2", "normal"): (94.78, 73.71), ("wrn40_2", "augmix"): (95.67, 89.01),
    ("wrn40_2", "augmax_dubin"): (95.68, 90.67),
    ("resnext29", "normal"): (95.60, 71.70), ("resnext29", "augmix"): (96.25, 89.08),
    ("resnext29", "augmax_dubin"): (96.39, 92.11),
}
_CIFAR100 = {
    ("resnet18", "normal"): (77.99, 48.46), ("resnet18", "augmix"): (78.23, 62.67),
    ("resnet18", "augmax_dubin"): (78.69, 65.75),
    ("wrn40_2", "normal"): (76.19, 46.80), ("wrn40_2", "augmix"): (77.03, 64.56),
    ("wrn40_2", "augmax_dubin"): (76.80, 66.35),
    ("resnext29", "normal"): (79.95, 47.76), ("resnext29", "augmix"): (78.58, 65.37),
    ("resnext29", "augmax_dubin"): (80.70, 68.86),
}
# (SA, RA, mCE)
_IMAGENET = {
    "normal": (69.83, 30.91, 87.47), "augmix": (68.06, 34.58, 83.08), "augmax_dubin": (67.62, 35.01, 82.56),
    "deepaug_augmix": (65.32, 45.84, 69.29), "deepaug_augmax_dubin": (64.43, 46.55, 68.47),
}
_TINYIMAGENET = {
    "normal": (61.64, 23.91, 100.00), "augmix": (61.79, 36.85, 83.04), "augmax_dubin": (62.21, 38.67, 80.72),
    "deepaug_augmix": (59.59, 40.67, 78.28), "deepaug_augmax_dubin": (59.72, 40.99, 77.83),
}

# Table 8: RA (%) on CIFAR10-C and CIFAR100-C, WRN40-2, as (value, +-) per data set.
_TABLE8 = {
    "augmix_bn": ("AugMix-BN", (89.01, 0.03), (64.56, 0.04)),
    "augmix_ibn": ("AugMix-IBN", (89.17, 0.24), (63.94, 0.28)),
    "augmix_dubn": ("AugMix-DuBN", (89.11, 0.21), (64.07, 0.38)),
    "augmix_dubin": ("AugMix-DuBIN", (89.74, 0.35), (65.02, 0.58)),
    "augmax_dubn": ("AugMax-DuBN", (89.60, 0.62), (65.06, 0.28)),
    "augmax_dubin": ("AugMax-DuBIN", (90.67, 0.16), (66.31, 0.24)),
}

# Table 10: CIFAR-100(-C), ResNet18: (label, strategy, SA, RA).
_TABLE10 = {
    "normal": ("Normal", "-", 77.99, 48.46),
    "augmix": ("AugMix", "diversity", 78.23, 62.67),
    "pgdat": ("PGDAT", "hardness", 60.94, 47.71),
    "fat": ("FAT", "hardness", 61.51, 48.70),
    "advmax": ("AdvMax", "hardness", 56.61, 38.65),
    "augmix_pgdat": ("AugMix+PGDAT", "diversity & adversity", 61.68, 51.39),
    "advmix": ("AdvMix", "diversity & adversity", 72.36, 56.89),
    "augmax_dubin": ("AugMax-DuBIN", "diversity & adversity", 78.52, 64.02),
}

# Table 11: ResNeXt29 trained on CIFAR-10: (CIFAR10.1, CIFAR10-STA).
_TABLE11 = {
    "normal": ("Normal", 88.90, 30.30),
    "augmix": ("AugMix", 88.90, 54.30),
    "augmax_dubin": ("AugMax-DuBIN", 90.64, 63.20),
}

TABLES: tuple = (
    _main_cifar("cifar10", "CIFAR-10 / CIFAR-10-C (main results)", _CIFAR10),
    _main_cifar("cifar100", "CIFAR-100 / CIFAR-100-C (main results)", _CIFAR100),
    _main_imagenet("imagenet", "ImageNet / ImageNet-C (main results)", _IMAGENET),
    _main_imagenet("tinyimagenet", "Tiny-ImageNet / Tiny-ImageNet-C (main results)", _TINYIMAGENET),
    Table("table8", "Normalisation ablation (Table 8)", ("Method",), ("CIFAR10-C", "CIFAR100-C"),
          tuple(Row((label,), {"CIFAR10-C": Cell(f"ablation_norm_cifar10_wrn40_2_{key}", "ra", c10[0], "cifar10", c10[1]),
                               "CIFAR100-C": Cell(f"ablation_norm_cifar100_wrn40_2_{key}", "ra", c100[0], "cifar100",
                                                  c100[1])})
                for key, (label, c10, c100) in _TABLE8.items()),
          note="RA (%) with WRN40-2; the poster's +- is its spread over runs.",
          column_labels={"CIFAR10-C": "CIFAR10-C RA (%)", "CIFAR100-C": "CIFAR100-C RA (%)"}),
    Table("table10", "Strategy ablation (Table 10)", ("Method", "Strategy"), ("SA", "RA"),
          tuple(Row((label, strategy), {"SA": Cell(f"ablation_strategy_cifar100_resnet18_{key}", "sa", sa, "cifar100"),
                                        "RA": Cell(f"ablation_strategy_cifar100_resnet18_{key}", "ra", ra, "cifar100")})
                for key, (label, strategy, sa, ra) in _TABLE10.items()),
          note="CIFAR-100(-C) with ResNet18."),
    Table("table11", "Other distribution shifts (Table 11)", ("Method",), ("CIFAR10.1", "CIFAR10-STA"),
          tuple(Row((label,), {"CIFAR10.1": Cell(f"other_shifts_cifar10_resnext29_{key}", "cifar101", c101, "cifar10"),
                               "CIFAR10-STA": Cell(f"other_shifts_cifar10_resnext29_{key}", "sta", sta, "cifar10")})
                for key, (label, c101, sta) in _TABLE11.items()),
          note="ResNeXt29 trained on CIFAR-10; CIFAR-10.1 v4, worst-of-10 spatial attack (highest loss).",
          column_labels={"CIFAR10.1": "CIFAR10.1 (%)", "CIFAR10-STA": "CIFAR10-STA (%)"}),
)

def table(key: str) -> Table:
    """The table named ``key`` (cifar10, cifar100, imagenet, tinyimagenet, table8, table10, table11)."""
    for t in TABLES:
        if t.key == key:
            return t
    raise KeyError(f"table: expected one of {', '.join(t.key for t in TABLES)}, got {key!r}")
