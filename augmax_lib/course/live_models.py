"""The "AugMax by hand" widget: the long profile's models run in the reader's browser (onnxruntime-web).

The reader moves the mixing weight ``m`` and the three chain weights; the page mixes
``(1 - m) x + m * sum_i w_i chain_i`` in JavaScript and runs the Normal, AugMix and AugMax-DuBIN models (ONNX
files exported from the shipped models) on it, showing each one's top-3 classes. A button per model sets the
sliders to what ``augmax_attack`` found against that model. A second panel shows a corruption of the image at
a chosen severity (frames computed here) with the three models' live predictions.

In the built book the page fetches the ONNX files and the runtime from ``_static`` (``export_for_book`` puts
them there with their sha256 in ``live/manifest.json``; the page checks each hash). Where the page has no such
files (a notebook in JupyterLab or Colab) the widget says so and :func:`kernel_predictions` gives the same
numbers from the kernel.
"""
from __future__ import annotations

import base64
import html
import json
import uuid
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["LIVE_MODELS", "RUNTIME_FILES", "export_for_book", "by_hand", "mix", "kernel_predictions"]

# Label on the page -> shipped model (augmax_lib.models.pretrained, collection "long").
LIVE_MODELS = {"Normal": "cifar10_resnet18_normal", "AugMix": "cifar10_resnet18_augmix",
               "AugMax-DuBIN": "cifar10_resnet18_augmax_dubin"}
# The files of onnxruntime-web a page loads (book/fetch_assets.py copies them into _static/vendor/ort).
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
_JS = Path(__file__).with_name("live_models.js")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _as_script(path: Path) -> int:
    """Write ``path``.js, a script that puts the file's bytes (base64) in window.AUGMAX_LIVE_FILES[name], for
    pages opened from disk, which may not fetch files; returns its size."""
    from augmax_lib._io import atomic_write_text

    text = (f"(window.AUGMAX_LIVE_FILES = window.AUGMAX_LIVE_FILES || {{}})[{json.dumps(path.name)}] = "
            f"\"{base64.b64encode(path.read_bytes()).decode()}\";\n")
    atomic_write_text(path.with_name(path.name + ".js"), text)
    return len(text)


def export_for_book(static: Path, collection: str = "long") -> dict:
    """Export the live models as ONNX files into ``static``/live and write its manifest.json: each model's
    file, sha256 and size, and each runtime file's (from ``static``/vendor/ort, when there); beside every file,
    a script of its bytes for pages opened from disk. Returns the manifest."""
    from augmax_lib._io import atomic_write_text
    from augmax_lib.models.onnx_export import export_onnx
    from augmax_lib.models.pretrained import load_pretrained, pretrained_info

    folder = Path(static) / "live"
    folder.mkdir(parents=True, exist_ok=True)
    models = {}
    for label, name in LIVE_MODELS.items():
        path = export_onnx(load_pretrained(name, collection), folder / f"{name}.onnx", half_weights=True)
        models[label] = {"name": name, "file": path.name, "sha256": _sha256(path), "bytes": path.stat().st_size,
                         "disk_bytes": _as_script(path), "weights_sha256": pretrained_info(name, collection)["sha256"]}
    runtime = {}
    for file in RUNTIME_FILES:
        path = Path(static) / "vendor" / "ort" / file
        if path.is_file():
            # The loader is a classic script either way; the glue module and the binary come as base64 from disk.
            disk = path.stat().st_size if file.endswith(".min.js") else _as_script(path)
            runtime[file] = {"sha256": _sha256(path), "bytes": path.stat().st_size, "disk_bytes": disk}
    manifest = {"models": models, "runtime": runtime,
                "bytes": sum(m["bytes"] for m in models.values()) + sum(r["bytes"] for r in runtime.values())}
    atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    atomic_write_text(folder / "manifest.json.js", f"window.AUGMAX_LIVE_MANIFEST = {json.dumps(manifest)};\n")
    return manifest


def mix(x: torch.Tensor, chains: torch.Tensor, m: float, w: Sequence[float]) -> torch.Tensor:
    """``(1 - m) x + m * sum_i w_i chain_i`` with ``w`` normalised to sum to 1 (float32), as the page mixes."""
    w = torch.as_tensor(list(w), dtype=torch.float32)
    w = w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1 / len(w))
    return (1 - m) * x.float() + m * (w.view(-1, 1, 1, 1) * chains.float()).sum(0)


@torch.no_grad()
def kernel_predictions(models: Mapping[str, torch.nn.Module], image: torch.Tensor, top: int = 3) -> dict:
    """Each model's top-``top`` (class index, probability) on one image (3, H, W) in [0, 1], computed here."""
    out = {}
    for label, model in models.items():
        p = torch.softmax(model(image.unsqueeze(0).float()), 1)[0]
        values, indices = p.topk(top)
        out[label] = [(int(i), float(v)) for v, i in zip(values, indices)]
    return out


def _f32(t: torch.Tensor) -> str:
    return base64.b64encode(np.ascontiguousarray(t.detach().cpu().float().numpy(), dtype="<f4").tobytes()).decode()


def _u8(t: torch.Tensor) -> str:
    return base64.b64encode(np.ascontiguousarray(t.detach().cpu().numpy().astype(np.uint8)).tobytes()).decode()


def by_hand(image: torch.Tensor, chains: torch.Tensor, class_names: Sequence[str], answers: Mapping[str, dict],
            corruptions: Mapping[str, torch.Tensor], *, title: str = "", start: Optional[dict] = None):
    """The widget as an IPython HTML object.

    ``image``: (3, H, W) float in [0, 1]; ``chains``: its (3, 3, H, W) AugMix chains; ``answers``: for each model
    label of LIVE_MODELS, ``{"m": float, "w": [3 floats]}`` found by the attack; ``corruptions``: name -> (5, 3,
    H, W) uint8, the image at severities 1-5; ``start``: the sliders' first position (default m 0.5, equal w).
    """
    from IPython.display import HTML

    if image.dim() != 3 or chains.dim() != 4 or chains.shape[1:] != image.shape:
        raise ValueError(f"image, chains: expected (3, H, W) and (k, 3, H, W), got {tuple(image.shape)} and "
                         f"{tuple(chains.shape)}")
    if set(answers) != set(LIVE_MODELS):
        raise ValueError(f"answers: expected one per model {list(LIVE_MODELS)}, got {list(answers)}")
    data = {
        "shape": list(image.shape), "image": _f32(image), "chains": _f32(chains), "k": int(chains.shape[0]),
        "classes": list(class_names), "models": list(LIVE_MODELS),
        "answers": {k: {"m": float(v["m"]), "w": [float(x) for x in v["w"]]} for k, v in answers.items()},
        "corruptions": {name: _u8(frames) for name, frames in corruptions.items()},
        "start": start or {"m": 0.5, "w": [1.0] * int(chains.shape[0])},
    }
    wid = f"augmax-live-{uuid.uuid4().hex[:8]}"
    payload = json.dumps(data).replace("</", "<\\/")
    return HTML(f'<div class="augmax-live" id="{wid}"><p class="augmax-live-title">{html.escape(title)}</p>'
                f'<script type="application/json" class="augmax-live-data">{payload}</script>'
                f'<script>{_JS.read_text()}\naugmaxLive("{wid}");</script></div>')
