"""The one way to evaluate a training run: ``evaluate_run(run_dir)`` writes ``<run>/evaluation/results.json``.

The command line (``python -m augmax_lib evaluate --run``), the sweep's jobs and the course notebooks all call
it. It evaluates the run's best checkpoint (chosen on the validation split) with the protocol its config's
``eval`` section sets (test images per set, subset seed, numerics), on the run's own data set, and records
what was measured and where it came from.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Optional

from .._device import resolve_device
from .options import EvalOptions, Numerics
from .provenance import provenance, write_json_atomic
from .suite import evaluate_model

__all__ = ["run_options", "run_numerics", "evaluate_run", "RESULTS"]

RESULTS = Path("evaluation") / "results.json"   # inside the run directory


def run_options(config: Mapping, **changes) -> EvalOptions:
    """The evaluation options a run's config asks for (``eval.images_per_set``, ``eval.subset_seed``; the rest the
    paper's defaults), with ``changes`` (EvalOptions fields) applied."""
    ev = config.get("eval") or {}
    base = EvalOptions(images_per_set=ev.get("images_per_set"), subset_seed=int(ev.get("subset_seed") or 0))
    return base.replace(**changes)


def run_numerics(config: Mapping, **changes) -> Numerics:
    """The numerics a run's config asks for its evaluation (``eval.precision``, ``channels_last``, ``compile``)."""
    ev = config.get("eval") or {}
    values = {"precision": ev.get("precision", "fp32"), "channels_last": bool(ev.get("channels_last", False)),
              "compile": bool(ev.get("compile", False))}
    return Numerics(**{**values, **changes})


def _test_set(config: Mapping, root):
    """The run's test set, drawn with the same options as its training set for the synthetic set."""
    from augmax_lib.data import load_dataset

    d = config["data"]
    options = {k: v for k, v in d["options"].items() if d["dataset"] == "synthetic" and k in ("seed", "image_size")}
    return load_dataset(d["dataset"], "test", root=root if root is not None else d["root"], **options)


def evaluate_run(run_dir, options: Optional[EvalOptions] = None, numerics: Optional[Numerics] = None, *,
                 root=None, device=None, cache=None, out=None, extra: Optional[Mapping] = None) -> dict:
    """Evaluate the best checkpoint of the training run in ``run_dir`` and write its results.json.

    ``options`` / ``numerics``: what to measure and how to compute (default: the run's config, see
    :func:`run_options` and :func:`run_numerics`). ``root``: the data root (default: the config's, else
    $AUGMAX_DATA). ``device``: where to run (default: CUDA when available). ``cache``: a CorruptionCache shared
    with other evaluations. ``out``: the results file (default ``<run_dir>/evaluation/results.json``).
    ``extra``: more provenance (e.g. the command's arguments). Returns the results dict written.
    """
    from augmax_lib.data import ImageSet
    from augmax_lib.train.run_models import load_run

    run_dir = Path(run_dir)
    device = resolve_device(device)
    model, config = load_run(run_dir, "best", device=device)
    options = options if options is not None else run_options(config)
    numerics = (numerics if numerics is not None else run_numerics(config)).resolved(device)
    test = _test_set(config, root)
    if not isinstance(test, ImageSet) or (options.images_per_set is not None and options.images_per_set >= len(test)):
        options = options.replace(images_per_set=None)  # a lazily read set is evaluated whole; so is a request for all
        if options.generate_corruptions == "auto" and not isinstance(test, ImageSet):
            options = options.replace(generate_corruptions=False)  # lazily read sets are corrupted by `corrupt` ahead
    d = config["data"]
    start = time.perf_counter()
    results = evaluate_model(numerics.apply(model), d["dataset"], root if root is not None else d["root"], options,
                             device=device, test_set=test, cache=cache)
    results["model"] = {"source": "training run (augmax_lib.train)", "run": str(run_dir), "config": config["name"],
                        "name": config["model"]["name"], "norm": config["model"]["norm"],
                        "method": config["method"]["name"], "paper": config["paper"]}
    results["protocol"]["numerics"] = numerics.record()
    results["profile"] = config.get("profile")
    results["eval_images"] = results["images_per_set"]
    results["wall_time_s"] = time.perf_counter() - start
    results["provenance"] = provenance(checkpoint=run_dir / "best.pt", data_source=results["data_source"],
                                       device=device, extra=dict(extra or {}))
    write_json_atomic(Path(out) if out is not None else run_dir / RESULTS, results)
    return results
