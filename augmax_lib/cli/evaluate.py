"""``python -m augmax_lib evaluate``: SA, RA (per-corruption table), CIFAR-10.1 v4/v6 and the spatial attack
of one model, written to ``results.json`` with provenance.

A model comes from exactly one source: ``--run DIR`` (a training run: :func:`augmax_lib.evaluate.evaluate_run`,
the one way every part of the library evaluates a run) or a registered checkpoint source such as
``--reference-checkpoint FILE`` (the authors' released ``best_SA.pth`` / ``latest.pth``); further sources add
themselves with :func:`register_model_source` and share everything else (:func:`augmax_lib.evaluate.evaluate_model`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from augmax_lib._checks import InputError, check_writable_folder, user_message
from augmax_lib._device import DeviceError, resolve_device

__all__ = ["add_arguments", "run", "LoadedModel", "ModelSourceError", "register_model_source", "MODEL_SOURCES",
           "NUM_CLASSES", "REFERENCE_MODELS_URL"]

REFERENCE_MODELS_URL = "https://github.com/VITA-Group/AugMax#pretrained-models"
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "tinyimagenet": 200, "imagenet": 1000, "synthetic": 10}


class ModelSourceError(RuntimeError, InputError):
    """A model source could not give a model; the message is one line saying where it looked and what to do."""


@dataclass
class LoadedModel:
    """A model ready for evaluation and what the results file should say about where it came from."""

    model: object
    info: dict = field(default_factory=dict)
    checkpoint: Optional[Path] = None      # hashed into the provenance
    input_transform: Optional[Callable] = None
    dataset: Optional[str] = None          # a source that knows its data set (a run) may fill this
    out: Optional[Path] = None             # default results folder of this source (a run: <run>/evaluation)
    defaults: dict = field(default_factory=dict)  # evaluation settings the source asks for (a run: its eval section)


@dataclass
class _Source:
    flag: str
    dest: str
    help: str
    metavar: str
    load: Callable


MODEL_SOURCES: dict = {}


def register_model_source(flag: str, load: Callable, help: str, metavar: str = "PATH") -> None:
    """Add ``flag`` (e.g. ``--run``) as a way to name the model; ``load(value, args) -> LoadedModel``
    raises ModelSourceError with a one-line message when the thing named is not there."""
    dest = flag.lstrip("-").replace("-", "_")
    MODEL_SOURCES[dest] = _Source(flag, dest, help, metavar, load)


def _load_reference(path, name: str, num_classes, dataset):
    """The authors' checkpoint in our backbone and the data set it was made for (augmax_lib.models; a seam for
    tests): ``dataset`` None is told by the checkpoint's head, and a head of unknown size is refused."""
    from augmax_lib.models import load_reference_checkpoint
    from augmax_lib.models.reference_checkpoint import read_reference_checkpoint, reference_checkpoint_dataset

    state = read_reference_checkpoint(path)
    if dataset is None:
        dataset = reference_checkpoint_dataset(state, name)
    return load_reference_checkpoint(state, name, num_classes, dataset=dataset), dataset


def _head_classes(model, default=None):
    """The class count of the model's last linear layer (``default`` for a model without one)."""
    from torch import nn

    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return heads[-1].out_features if heads else default


def _reference_problem(path: Path, err, args) -> str:
    """One line for a checkpoint that does not load: the file, what is wrong, and which flag fixes it."""
    if err.fits:
        return (f"{path} is not a {args.model} checkpoint ({len(err.missing)} of the model's keys are missing from "
                f"it, {len(err.extra)} of its keys are not in the model) but its keys and shapes fit "
                f"{' and '.join(err.fits)}: pass --model {err.fits[0]}")
    if err.head_classes is not None:
        from augmax_lib.models.reference_checkpoint import REFERENCE_DATASETS

        known = [d for d, (c, _) in REFERENCE_DATASETS.items() if c == err.head_classes]
        fix = (f"pass --dataset {known[0]}" if known and args.dataset != known[0]
               else f"pass --num-classes {err.head_classes} and the --dataset it was trained on")
        return f"{path}: the checkpoint's head has {err.head_classes} classes ({args.model}): {fix}"
    message = str(err)
    return message if message.startswith(str(path)) else f"{path}: {message}"


def _imagenet_normalize():
    import torch

    from augmax_lib.data import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return lambda x: (x - mean.to(x.device, x.dtype)) / std.to(x.device, x.dtype)


def _from_reference_checkpoint(value: str, args) -> LoadedModel:
    path = Path(value).expanduser()
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.pth"))
        raise ModelSourceError(f"{path} (the path given to --reference-checkpoint) is a folder; pass the checkpoint "
                               f"file in it" + (f" (it holds {', '.join(found[:5])})" if found else ""))
    if not path.is_file():
        raise ModelSourceError(
            f"no checkpoint file at {path.resolve()} (the path given to --reference-checkpoint); download the "
            f"authors' files (best_SA.pth per model) from the Google Drive folder linked at {REFERENCE_MODELS_URL} "
            f"on a machine with internet, then pass the file's path")
    from augmax_lib.models import ReferenceCheckpointError

    # The synthetic set is 32x32 with 10 classes: a CIFAR-10 checkpoint's stem and head, told by the head.
    stem_dataset = None if args.dataset in (None, "synthetic") else args.dataset
    if stem_dataset is not None and (stem_dataset == "imagenet") != args.model.endswith("_imagenet"):
        raise ModelSourceError(f"--dataset {args.dataset} does not go with --model {args.model}: the authors' ImageNet "
                               f"models are the *_imagenet backbones, their CIFAR and Tiny-ImageNet models the others")
    try:
        model, dataset = _load_reference(path, args.model, args.num_classes, stem_dataset)
    except ReferenceCheckpointError as err:
        raise ModelSourceError(_reference_problem(path, err, args)) from err
    transform = _imagenet_normalize() if args.model.endswith("_imagenet") else None
    info = {"source": "reference checkpoint (VITA-Group/AugMax)", "name": args.model, "norm": "dubin",
            "num_classes": _head_classes(model, args.num_classes), "trained_on": dataset}
    return LoadedModel(model, info, path, transform, None if args.dataset == "synthetic" else dataset)


register_model_source("--reference-checkpoint", _from_reference_checkpoint, metavar="FILE",
                      help="the authors' best_SA.pth or latest.pth (download: " + REFERENCE_MODELS_URL + ")")


def add_arguments(parser) -> None:
    """The `evaluate` command's options."""
    from augmax_lib.evaluate.arguments import add_evaluation_arguments

    group = parser.add_argument_group("model (give exactly one)")
    group.add_argument("--run", metavar="DIR", default=None,
                       help="a training run directory (python -m augmax_lib train); results go to DIR/evaluation")
    for source in MODEL_SOURCES.values():
        group.add_argument(source.flag, dest=source.dest, metavar=source.metavar, help=source.help)
    from augmax_lib.models import list_models

    parser.add_argument("--model", default="resnet18", choices=list_models(),
                        help="backbone of the checkpoint (default resnet18)")
    parser.add_argument("--dataset", default=None, choices=sorted(NUM_CLASSES),
                        help="test data (default: cifar10, or the data set a training run used)")
    parser.add_argument("--num-classes", type=int, default=None, help="classes of the head (default: the data set's)")
    parser.add_argument("--root", default=None, help="data root (default: $AUGMAX_DATA, else ~/.cache/augmax)")
    parser.add_argument("--out", default=None,
                        help="folder for results.json (default: runs/evaluate/<model>-<dataset>-<checkpoint name>)")
    parser.add_argument("--force", action="store_true", help="replace an existing results.json in --out")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu ... (default: cuda when available)")
    add_evaluation_arguments(parser)


def _check_options(args) -> Optional[str]:
    """The first option with a value that cannot work, as a one-line message; None if all can."""
    from augmax_lib.evaluate.arguments import argument_problem

    if args.num_classes is not None and args.num_classes < 1:
        return f"--num-classes: expected a positive integer, got {args.num_classes}"
    problem = argument_problem(args)
    if problem:
        return problem
    try:
        resolve_device(args.device, "--device")
    except DeviceError as err:
        return str(err)
    return None


def _fail(message: str) -> int:
    print(f"evaluate: error: {message}", file=sys.stderr)
    return 2


def _summary(results: dict) -> str:
    m, lines = results["metrics"], [f"{results['dataset']} ({results['data_source']})"]
    n, total = results.get("images_per_set"), results.get("num_test_images")
    subset = n is not None and total is not None and n < total
    where = (f"   on {n} images per set (of {total}, class-balanced, seed "
             f"{results['protocol']['subset_seed']}); +- one standard error") if subset else ""

    def pm(key):
        return f" +- {100 * m[key]:.2f}" if subset and m.get(key) is not None else ""

    if "sa" in m:
        lines.append(f"  SA  {100 * m['sa']:6.2f}{pm('sa_se')}{where}")
    if "ra" in m:
        lines.append(f"  RA  {100 * m['ra']:6.2f}{pm('ra_se')}   ({m['corruption_source']}){where}")
        if "mce" in m:
            lines.append(f"  mCE {100 * m['mce']:6.2f}   (anchor: {m['mce_anchor']})")
        width = max(len(c) for c in m["corruption_accuracy"])
        for c, row in m["corruption_accuracy"].items():
            lines.append(f"    {c:<{width}}  " + "  ".join(f"{100 * v:6.2f}" for v in row.values()))
    for version, acc in m.get("cifar101", {}).items():
        lines.append(f"  CIFAR-10.1 {version} {100 * acc:6.2f}")
    if "spatial" in m:
        s = m["spatial"]
        lines.append(f"  worst-of-{s['k']} spatial: {100 * s['worst_loss']:6.2f} (highest loss), "
                     f"{100 * s['any_misclassified']:6.2f} (any misclassified)")
    for name, why in results["skipped"].items():
        lines.append(f"  skipped {name}: " + " ".join(line.strip() for line in why.splitlines()))
    return "\n".join(lines)


def _target(out: Path, force: bool) -> tuple[Optional[Path], Optional[str]]:
    """(the results file in ``out``, or None and the reason it cannot be written)."""
    target = out / "results.json"
    if target.exists() and not force:
        return None, f"{target} exists; pass --force to replace it or choose another --out"
    try:
        check_writable_folder(out, "--out")  # before the long evaluation, not after it
    except InputError as err:
        return None, str(err)
    return target, None


def _evaluate_run(args, arguments: dict) -> int:
    """``--run DIR``: augmax_lib.evaluate.evaluate_run with the run's protocol and the options given."""
    from augmax_lib.evaluate import evaluate_run, run_numerics, run_options
    from augmax_lib.evaluate.arguments import numerics_changes, option_changes
    from augmax_lib.train import CheckpointError, ConfigError, load_config

    run_dir = Path(args.run).expanduser()
    if not run_dir.is_dir():
        return _fail(f"--run: {str(run_dir)!r} is not a directory (expected a training run made by "
                     f"`python -m augmax_lib train`)")
    if not (run_dir / "config.yaml").is_file():
        return _fail(f"--run: {run_dir} holds no config.yaml: not a training run of `python -m augmax_lib train`")
    try:
        config = load_config(run_dir / "config.yaml")
    except ConfigError as err:
        return _fail(f"--run: {err}")
    if args.dataset is not None and args.dataset != config["data"]["dataset"]:
        return _fail(f"--dataset {args.dataset}: the run trained on {config['data']['dataset']}; a run is evaluated on "
                     f"its own data set")
    target, problem = _target(Path(args.out) if args.out else run_dir / "evaluation", args.force)
    if problem:
        return _fail(problem)
    try:
        results = evaluate_run(run_dir, run_options(config, **option_changes(args)),
                               run_numerics(config, **numerics_changes(args)), root=args.root, device=args.device,
                               out=target, extra={"arguments": arguments})
    except (FileNotFoundError, CheckpointError) as err:
        return _fail(f"--run: {err}")
    except InputError as err:  # a missing or broken data set, a bad option
        return _fail(user_message(err))
    print(_summary(results))
    print(f"wrote {target}")
    return 0


def run(args) -> int:
    """Evaluate the model asked for and write its evaluation JSON; the exit status."""
    from augmax_lib.evaluate import EvalOptions, Numerics, evaluate_model, provenance, write_json_atomic
    from augmax_lib.evaluate.arguments import numerics_changes, option_changes

    arguments = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    chosen = [(s, getattr(args, s.dest, None)) for s in MODEL_SOURCES.values() if getattr(args, s.dest, None)]
    if len(chosen) + bool(args.run) != 1:
        flags = " or ".join(["--run", *(s.flag for s in MODEL_SOURCES.values())])
        return _fail(f"name the model with exactly one of {flags}")
    problem = _check_options(args)
    if problem:
        return _fail(problem)
    if args.run:
        return _evaluate_run(args, arguments)
    source, value = chosen[0]
    if args.num_classes is None and args.dataset is not None:
        args.num_classes = NUM_CLASSES[args.dataset]  # else the checkpoint's head says it
    try:
        loaded = source.load(value, args)
    except ModelSourceError as err:
        return _fail(str(err))
    dataset = args.dataset or loaded.dataset or "cifar10"
    if args.num_classes is None:
        args.num_classes = NUM_CLASSES[dataset]
    device = resolve_device(args.device, "--device")
    name = loaded.checkpoint.stem if loaded.checkpoint is not None else Path(str(value)).name
    out = Path(args.out) if args.out else Path("runs") / "evaluate" / f"{args.model}-{dataset}-{name}"
    target, problem = _target(out, args.force)
    if problem:
        return _fail(problem)
    numerics = Numerics(**numerics_changes(args)).resolved(device)
    model = numerics.apply(loaded.model.to(device))
    try:
        results = evaluate_model(model, dataset, args.root, EvalOptions(**option_changes(args)), device=device,
                                 input_transform=loaded.input_transform)
    except InputError as err:  # a missing or broken data set, a bad option
        return _fail(user_message(err))
    results["model"] = loaded.info
    results["protocol"]["numerics"] = numerics.record()
    results["provenance"] = provenance(checkpoint=loaded.checkpoint, data_source=results["data_source"],
                                       device=device, extra={"arguments": arguments})
    try:
        write_json_atomic(target, results)
    except OSError as err:
        return _fail(f"--out {out}: cannot write {target.name} ({err.strerror or err})")
    print(_summary(results))
    print(f"wrote {target}")
    return 0
