"""Trained models as safetensors files: the ones shipped with the library, and any other by URL with its sha256.

A file holds fp16 (or fp32) weights and, in its metadata, how to build the model (backbone, norm, width,
classes, input normalisation), so it is self-describing; no pickle is ever loaded. The shipped models sit in
``augmax_lib/models/weights/<collection>/`` beside a ``manifest.json`` that gives each file's sha256, the
config and commit that trained it, and the metrics it gave. Loading checks the hash and refuses a mismatch.

    model = load_pretrained("cifar10_resnet18_augmax_dubin")            # the long profile's seed-0 model
    info = pretrained_info("cifar10_resnet18_augmax_dubin")             # manifest entry: config, metrics, ...
    model = load_from_url("https://.../model.safetensors", sha256="...")  # cached under <data root>/models/
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import nn

from .._checks import InputError
from .normalized import NormalizedInput
from .registry import build_model

__all__ = ["FORMAT", "WEIGHTS_DIR", "PretrainedError", "list_pretrained", "pretrained_info", "load_pretrained",
           "load_pretrained_file", "load_from_url", "save_pretrained", "sha256_of", "model_from_spec"]

FORMAT = "augmax_lib.pretrained/1"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"


class PretrainedError(InputError, RuntimeError):
    """A pretrained model that cannot be used: unknown name, missing file, hash mismatch, not our format."""


def sha256_of(path) -> str:
    """The sha256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(collection: str) -> dict:
    path = WEIGHTS_DIR / collection / MANIFEST
    if not path.is_file():
        known = sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / MANIFEST).is_file()) if WEIGHTS_DIR.is_dir() else []
        raise PretrainedError(f"collection: no shipped models named {collection!r} (no {path}); known: "
                              f"{', '.join(known) or 'none'}")
    return json.loads(path.read_text())


def list_pretrained(collection: str = "long") -> list[str]:
    """The names of the shipped models of ``collection`` (config names, e.g. ``cifar10_resnet18_normal``)."""
    return list(_manifest(collection)["models"])


def pretrained_info(name: str, collection: str = "long") -> dict:
    """The manifest entry of a shipped model: file, sha256, model spec, config, commit, seed, metrics."""
    models = _manifest(collection)["models"]
    if name not in models:
        raise PretrainedError(f"name: no shipped model {name!r} in collection {collection!r}; expected one of "
                              f"{', '.join(models)}")
    return dict(models[name])


def model_from_spec(spec: Mapping) -> nn.Module:
    """The model a file's ``model`` metadata describes (untrained): backbone, norm, width, head, input normalisation."""
    kwargs = dict(spec.get("kwargs") or {})
    if spec.get("width") is not None:
        kwargs["width"] = int(spec["width"])
    net = build_model(spec["name"], int(spec["num_classes"]), norm=spec.get("norm", "bn"), **kwargs)
    if spec.get("input_mean") is not None:
        return NormalizedInput(net, spec["input_mean"], spec["input_std"])
    return net


def _inner(model: nn.Module) -> nn.Module:
    return model.net if isinstance(model, NormalizedInput) else model


def save_pretrained(model: nn.Module, path, spec: Mapping, metadata: Optional[Mapping] = None,
                    dtype: torch.dtype = torch.float16) -> str:
    """Write the backbone's weights as ``dtype`` (floating tensors; counters stay int64) with ``spec`` and
    ``metadata`` (JSON-able) in the file's header, atomically; returns the file's sha256."""
    from safetensors.torch import save

    state = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
             for k, v in _inner(model).state_dict().items()}
    header = {"format": FORMAT, "model": json.dumps(dict(spec), sort_keys=True),
              "metadata": json.dumps(dict(metadata or {}), sort_keys=True, default=str)}
    data = save(state, metadata=header)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def load_pretrained_file(path, sha256: Optional[str] = None, device="cpu") -> tuple[nn.Module, dict]:
    """The model in a safetensors file of this format (eval mode, fp32, on ``device``) and its metadata.

    With ``sha256`` the file's hash must match, else PretrainedError (the file is not loaded).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"{path}: no such file")
    data = path.read_bytes()
    if sha256 is not None:
        found = hashlib.sha256(data).hexdigest()
        if found != str(sha256).lower():
            raise PretrainedError(f"{path}: sha256 {found} does not match the expected {sha256}; the file is "
                                  f"damaged or not the model asked for, so it was not loaded (delete it to fetch "
                                  f"it again)")
    try:
        state = load(data)
        header = _header(data)
    except (SafetensorError, ValueError) as err:
        raise PretrainedError(f"{path}: not a safetensors file ({err})") from err
    if header.get("format") != FORMAT:
        raise PretrainedError(f"{path}: a safetensors file, but not one of augmax_lib's models (format "
                              f"{header.get('format')!r}, expected {FORMAT!r})")
    spec = json.loads(header["model"])
    model = model_from_spec(spec)
    try:
        _inner(model).load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as err:
        raise PretrainedError(f"{path}: the weights do not fit the model its metadata describes ({err})") from err
    return model.to(device).eval(), {"model": spec, **json.loads(header.get("metadata") or "{}")}


def _header(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's JSON header."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]).get("__metadata__") or {}


def load_pretrained(name: str, collection: str = "long", device="cpu") -> nn.Module:
    """A shipped model (eval mode, fp32 arithmetic, on ``device``), its file's sha256 checked against the manifest."""
    entry = pretrained_info(name, collection)
    model, _ = load_pretrained_file(WEIGHTS_DIR / collection / entry["file"], entry["sha256"], device)
    return model


def load_from_url(url: str, sha256: str, root=None, device="cpu", cache=None) -> nn.Module:
    """A model file from ``url`` (http(s) or file://), checked against ``sha256`` and cached.

    The file is kept as ``<cache>/<sha256>.safetensors``, where ``cache`` defaults to ``<data root>/models`` (the
    data root: ``root``, else $AUGMAX_DATA, else ~/.cache/augmax); a cached file is used when its hash matches.
    A download is written to a temporary file and moved into place only once its hash matches.
    """
    from augmax_lib.data.roots import resolve_root

    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
        raise PretrainedError(f"sha256: expected the 64 hex digits of the file's sha256, got {sha256!r}")
    sha256 = sha256.lower()
    folder = Path(cache).expanduser() if cache is not None else resolve_root(root) / "models"
    target = folder / f"{sha256}.safetensors"
    if target.is_file() and sha256_of(target) == sha256:
        return load_pretrained_file(target, sha256, device)[0]
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https", "file"):
        raise PretrainedError(f"url: expected an http(s):// or file:// URL, got {url!r}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".download.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise PretrainedError(f"cache: cannot write into {folder} ({err}); pass cache= a writable folder") from err
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha256:
            raise PretrainedError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}; "
                                  f"nothing was cached")
        os.replace(tmp, target)
    except OSError as err:
        raise PretrainedError(f"{url}: could not be read ({err})") from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return load_pretrained_file(target, sha256, device)[0]
