"""Generated versus published corruption files: what the difference changes in a model's accuracy.

Hendrycks' scripts write CIFAR-10-C with ``np.uint8(x)``, which truncates each pixel towards zero, and
``augmax_lib.corruptions`` does the same by default (``rounding="nearest"`` rounds instead).
:func:`quantisation_effect` measures what that one choice is worth, on the same corrupted float images
quantised both ways. :func:`generated_vs_published` compares, image for image, the evaluation's generated
sets (``augmax_lib.evaluate.generated_corruptions``) with published files when those are in the data root.
"""
from __future__ import annotations

import pandas as pd
import torch

from augmax_lib._checks import to_float
from augmax_lib._progress import tqdm

__all__ = ["quantise", "quantisation_effect", "generated_vs_published"]


def quantise(x: torch.Tensor, rule: str) -> torch.Tensor:
    """Float images in [0, 1] to uint8 by ``rule``: 'round' (nearest level, the library's ``rounding="nearest"``)
    or 'truncate' (``np.uint8``: the generators' rule and the library's default)."""
    if not x.dtype.is_floating_point:
        raise TypeError(f"x: expected float images in [0, 1], got {x.dtype}")
    scaled = x.mul(255.0).clamp(0, 255)
    if rule == "round":
        return scaled.round().to(torch.uint8)
    if rule == "truncate":
        return scaled.floor().to(torch.uint8)
    raise ValueError(f"rule: expected 'round' or 'truncate', got {rule!r}")


def _images_labels(data):
    images, labels = (data.images, data.labels) if hasattr(data, "images") else data
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("data: expected an ImageSet or (images, labels) with uint8 images (N, C, H, W)")
    return images, labels


@torch.no_grad()
def _predict(model, x: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    from augmax_lib.evaluate import eval_mode

    out = []
    with eval_mode(model):
        for part in x.split(batch_size):
            out.append(model(to_float(part.to(device))).argmax(1).cpu())
    return torch.cat(out)


def _cell_generator(seed: int, corruption: str, severity: int, device) -> torch.Generator:
    from augmax_lib.corruptions import ALL_CORRUPTIONS

    # The same seeding as augmax_lib.evaluate.generated_corruptions, so the images are the evaluation's.
    index = list(ALL_CORRUPTIONS).index(corruption)
    return torch.Generator(device=device).manual_seed(seed * 1000 + index * 10 + severity)


def quantisation_effect(model, data, corruptions=None, severities=(1, 2, 3, 4, 5), *, preset: str = "cifar",
                        seed: int = 0, device=None, batch_size: int = 500, progress: bool = True) -> pd.DataFrame:
    """Accuracy on each corrupted set quantised by rounding and by truncation (the published files' rule and our default).

    ``model``: one model, or a mapping label -> model (the corrupted images are made once for all).
    Rows: (corruption, severity), with the model's label first for a mapping. Columns: ``acc_round``,
    ``acc_truncate``, ``mean_level_gap`` (mean grey levels by which rounding is brighter) and ``flipped``
    (fraction of images whose prediction differs).
    """
    from augmax_lib.corruptions import corrupt
    from augmax_lib.data import BENCHMARK_CORRUPTIONS
    from augmax_lib.evaluate.inference import model_device

    images, labels = _images_labels(data)
    corruptions = list(BENCHMARK_CORRUPTIONS if corruptions is None else corruptions)
    models = dict(model) if isinstance(model, dict) else {None: model}
    if not models:
        raise ValueError("model: expected a model or a non-empty mapping of label -> model")
    device = torch.device(device) if device is not None else model_device(next(iter(models.values())))
    rows = []
    cells = [(c, s) for c in corruptions for s in severities]
    for c, s in tqdm(cells, desc="round vs truncate", unit="set", disable=not progress):
        g = _cell_generator(seed, c, s, device)
        parts = [corrupt(to_float(x.to(device)), c, s, preset=preset, generator=g).cpu()
                 for x in images.split(batch_size)]
        x = torch.cat(parts)
        rounded, truncated = quantise(x, "round"), quantise(x, "truncate")
        gap = float((rounded.double() - truncated.double()).mean())
        for label, net in models.items():
            p_round, p_trunc = _predict(net, rounded, device, batch_size), _predict(net, truncated, device, batch_size)
            rows.append({"model": label, "corruption": c, "severity": s,
                         "acc_round": float((p_round == labels).double().mean()),
                         "acc_truncate": float((p_trunc == labels).double().mean()),
                         "mean_level_gap": gap, "flipped": float((p_round != p_trunc).double().mean())})
    frame = pd.DataFrame(rows)
    if None in models:
        return frame.drop(columns="model").set_index(["corruption", "severity"])
    return frame.set_index(["model", "corruption", "severity"])


def generated_vs_published(model, test, dataset: str = "cifar10", root=None, corruptions=None,
                           severities=(1, 2, 3, 4, 5), *, n: int | None = None, seed: int = 0, device=None,
                           batch_size: int = 500, progress: bool = True):
    """Image-for-image comparison of generated and published corrupted sets, or None when no file is present.

    ``test``: the clean test set (ImageSet) the published files were made from, in the same order; the
    generated images are the evaluation's (``augmax_lib.evaluate.generated_corruptions`` with ``seed``).
    ``n``: use the first ``n`` test images. Rows: (corruption, severity) for each corruption whose file is
    present. Columns: ``acc_generated``, ``acc_published``, ``mean_level_diff`` (published minus generated,
    grey levels) and ``agree`` (fraction of images with the same prediction on both).
    """
    from augmax_lib.data import BENCHMARK_CORRUPTIONS, ImageSet, has_corrupted, load_corrupted
    from augmax_lib.evaluate import generated_corruptions
    from augmax_lib.evaluate.inference import model_device

    images, labels = _images_labels(test)
    if n is not None:
        images, labels = images[:n], labels[:n]
    corruptions = list(BENCHMARK_CORRUPTIONS if corruptions is None else corruptions)
    present = [c for c in corruptions if all(has_corrupted(dataset, c, s, root) for s in severities)]
    if not present:
        return None
    device = torch.device(device) if device is not None else model_device(model)
    preset = {32: "cifar", 64: "tinyimagenet"}.get(images.shape[-1], "imagenet")
    clean = test.subset(torch.arange(len(labels))) if hasattr(test, "subset") else ImageSet(images, labels)
    generated = generated_corruptions(clean, preset=preset, seed=seed, device=device, batch_size=batch_size)
    rows = []
    cells = [(c, s) for c in present for s in severities]
    for c, s in tqdm(cells, desc="generated vs published", unit="set", disable=not progress):
        published = load_corrupted(dataset, c, s, root)
        if len(published) < len(labels):
            raise ValueError(f"{c} severity {s}: the published file holds {len(published)} images per severity, "
                             f"fewer than the {len(labels)} test images compared")
        pub_x, pub_y = published.images[:len(labels)], published.labels[:len(labels)]
        if not torch.equal(pub_y, labels):
            raise ValueError(f"{c} severity {s}: the published labels differ from the test set's; the files are "
                             f"not in test-set order")
        gen_x = generated(c, s).images
        p_gen, p_pub = _predict(model, gen_x, device, batch_size), _predict(model, pub_x, device, batch_size)
        rows.append({"corruption": c, "severity": s,
                     "acc_generated": float((p_gen == labels).double().mean()),
                     "acc_published": float((p_pub == labels).double().mean()),
                     "mean_level_diff": float((pub_x.double() - gen_x.double()).mean()),
                     "agree": float((p_gen == p_pub).double().mean())})
    return pd.DataFrame(rows).set_index(["corruption", "severity"])
