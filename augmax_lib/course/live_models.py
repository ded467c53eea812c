"""The "AugMax by hand" widget: the long profile's models run in the reader's browser (onnxruntime-web).

The reader moves the mixing weight ``m`` and the three chain weights; the page mixes
``(1 - m) x + m * sum_i w_i chain_i`` in JavaScript and runs the Normal, AugMix and AugMax-DuBIN models (ONNX
files exported from the shipped models) on it, showing each one's top-3 classes. A button per model sets the
sliders to what ``augmax_attack`` found against that model. A second panel shows a corruption of the image at
a chosen severity (frames computed here) with the three models' live predictions.

In the built book the page fetches the ONNX files and the runtime from ``_static`` (``export_for_book`` puts
them there with their sha256 in ``live/manifest.json``; the page checks each hash), also opened from disk. In a
notebook (JupyterLab, Colab) ``by_hand(..., embed_models=True)`` puts the ONNX files in the output itself and the
page loads the runtime from the CDN at the version the book vendors, each file checked against the sha256 in
``ort_runtime.json``. :func:`kernel_predictions` gives the same numbers from the kernel.
"""
from __future__ import annotations

import base64
import html
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["LIVE_MODELS", "ORT_RUNTIME", "RUNTIME_FILES", "export_for_book", "by_hand", "in_book_build", "mix",
           "kernel_predictions"]

# Label on the page -> shipped model (augmax_lib.models.pretrained, collection "long").
LIVE_MODELS = {"Normal": "cifar10_resnet18_normal", "AugMix": "cifar10_resnet18_augmix",
               "AugMax-DuBIN": "cifar10_resnet18_augmax_dubin"}
# The files of onnxruntime-web a page loads (book/fetch_assets.py copies them into _static/vendor/ort).
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
_JS = Path(__file__).with_name("live_models.js")
_CSS = Path(__file__).with_name("live_models.css")
# onnxruntime-web's files as the book vendors them (book/package-lock.json), with each file's sha256: what a
# notebook's widget loads from the CDN and checks.
ORT_RUNTIME = json.loads(Path(__file__).with_name("ort_runtime.json").read_text())


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


def _export_models(folder: Path, collection: str) -> dict:
    """Each live model exported to ``folder`` as ONNX (fp16 weights kept): label -> {name, file, sha256, bytes}."""
    from augmax_lib.models.onnx_export import export_onnx
    from augmax_lib.models.pretrained import load_pretrained

    out = {}
    for label, name in LIVE_MODELS.items():
        path = export_onnx(load_pretrained(name, collection), Path(folder) / f"{name}.onnx", half_weights=True)
        out[label] = {"name": name, "file": path.name, "sha256": _sha256(path), "bytes": path.stat().st_size}
    return out


def export_for_book(static: Path, collection: str = "long") -> dict:
    """Export the live models as ONNX files into ``static``/live and write its manifest.json: each model's
    file, sha256 and size, and each runtime file's (from ``static``/vendor/ort, when there); beside every file,
    a script of its bytes for pages opened from disk. Returns the manifest."""
    from augmax_lib._io import atomic_write_text
    from augmax_lib.models.pretrained import pretrained_info

    folder = Path(static) / "live"
    folder.mkdir(parents=True, exist_ok=True)
    models = _export_models(folder, collection)
    for entry in models.values():
        entry.update(disk_bytes=_as_script(folder / entry["file"]),
                     weights_sha256=pretrained_info(entry["name"], collection)["sha256"])
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


def _embedded_models(collection: str = "long") -> dict:
    """The live models as ONNX files in base64, with each file's sha256 (for a widget in a notebook)."""
    with tempfile.TemporaryDirectory() as folder:
        models = _export_models(Path(folder), collection)
        for entry in models.values():
            entry["b64"] = base64.b64encode((Path(folder) / entry["file"]).read_bytes()).decode()
    return models


def in_book_build() -> bool:
    """Whether this kernel runs for the book's build (book/run_notebooks.py), where the page serves the models."""
    return os.environ.get("AUGMAX_BOOK_BUILD") == "1"


def by_hand(image: torch.Tensor, chains: torch.Tensor, class_names: Sequence[str], answers: Mapping[str, dict],
            corruptions: Mapping[str, torch.Tensor], *, title: str = "", start: Optional[dict] = None,
            embed_models: Optional[bool] = None, runtime_url: Optional[str] = None):
    """The widget as an IPython HTML object.

    ``image``: (3, H, W) float in [0, 1]; ``chains``: its (3, 3, H, W) AugMix chains; ``answers``: for each model
    label of LIVE_MODELS, ``{"m": float, "w": [3 floats]}`` found by the attack; ``corruptions``: name -> (5, 3,
    H, W) uint8, the image at severities 1-5; ``start``: the sliders' first position (default m 0.5, equal w).
    ``embed_models``: put the ONNX files (5.2 MB, 6.9 MB as base64) in the output, so the widget runs in JupyterLab or Colab;
    None: unless the book's build runs this kernel. ``runtime_url``: where such a widget loads onnxruntime-web
    (default: the CDN, ``ORT_RUNTIME["cdn"]``); every file is checked against ``ORT_RUNTIME``'s sha256.
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
    if embed_models if embed_models is not None else not in_book_build():
        data["embedded"] = {"models": _embedded_models(),
                            "runtime": {"base": runtime_url or ORT_RUNTIME["cdn"], "files": ORT_RUNTIME["files"]}}
    wid = f"augmax-live-{uuid.uuid4().hex[:8]}"
    payload = json.dumps(data).replace("</", "<\\/")
    return HTML(f'<style>{_CSS.read_text()}</style>'
                f'<div class="augmax-live" id="{wid}"><p class="augmax-live-title">{html.escape(title)}</p>'
                f'<script type="application/json" class="augmax-live-data">{payload}</script>'
                f'<script>{_JS.read_text()}\naugmaxLive("{wid}");</script></div>')
