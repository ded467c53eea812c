"""The live models of notebook 3: ONNX export (checked with onnxruntime, an independent runtime), fp16 weights
kept exact, the page's mix formula, the widget's data, and the files the book build writes with their hashes."""
from __future__ import annotations

import base64
import hashlib
import json
import re

import numpy as np
import pytest
import torch

from augmax_lib.course import live_models
from augmax_lib.models import build_model
from augmax_lib.models.onnx_export import export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.filterwarnings("ignore")  # the exporter's deprecation chatter


def _run(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


@pytest.mark.parametrize("norm", ["bn", "dubin"])
def test_the_onnx_file_computes_what_the_model_does_at_any_batch(tmp_path, norm):
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, width=4, norm=norm).eval()
    for module in model.modules():  # non-trivial running statistics, so that eval-mode BN matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    path = export_onnx(model, tmp_path / "m.onnx")
    for n in (1, 3):
        x = torch.rand(n, 3, 32, 32)
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(_run(path, x), expected, rtol=1e-4, atol=1e-4)


def test_fp16_weights_stay_fp16_in_the_file_and_compute_the_same(tmp_path):
    torch.manual_seed(1)
    model = build_model("resnet18", num_classes=10, width=8, norm="bn").eval()
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.copy_(p.half().float())  # what a shipped (fp16) model holds
    full = export_onnx(model, tmp_path / "full.onnx")
    half = export_onnx(model, tmp_path / "half.onnx", half_weights=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size  # the graph itself is not halved
    x = torch.rand(2, 3, 32, 32)
    np.testing.assert_allclose(_run(half, x), _run(full, x), rtol=1e-6, atol=1e-6)


def test_the_mix_is_the_formula_with_normalised_weights():
    rng = np.random.default_rng(0)
    x, chains = rng.random((3, 8, 8), np.float32), rng.random((3, 3, 8, 8), np.float32)
    w = np.array([1.0, 2.0, 5.0])
    expected = 0.3 * x + 0.7 * np.tensordot(w / w.sum(), chains, axes=1)
    got = live_models.mix(torch.from_numpy(x), torch.from_numpy(chains), 0.7, w.tolist())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_the_widget_carries_its_inputs_and_refuses_bad_ones():
    x, chains = torch.rand(3, 32, 32), torch.rand(3, 3, 32, 32)
    answers = {k: {"m": 0.5, "w": [1, 0, 0]} for k in live_models.LIVE_MODELS}
    frames = {"fog": torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)}
    html = live_models.by_hand(x, chains, [str(i) for i in range(10)], answers, frames).data
    data = json.loads(re.search(r'class="augmax-live-data">(.*?)</script>', html, re.S).group(1))
    decoded = np.frombuffer(base64.b64decode(data["chains"]), "<f4").reshape(3, 3, 32, 32)
    assert np.array_equal(decoded, chains.numpy()) and data["answers"]["Normal"]["w"] == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="chains"):
        live_models.by_hand(x, chains[:, :2], [], answers, frames)
    with pytest.raises(ValueError, match="answers"):
        live_models.by_hand(x, chains, [], {"Normal": answers["Normal"]}, frames)


@pytest.mark.slow
def test_the_book_gets_each_file_with_its_hash_and_a_script_of_its_bytes(tmp_path):
    runtime = tmp_path / "vendor" / "ort"
    runtime.mkdir(parents=True)
    for name in live_models.RUNTIME_FILES:
        (runtime / name).write_bytes(name.encode() * 100)
    manifest = live_models.export_for_book(tmp_path)
    folder = tmp_path / "live"
    for label, entry in manifest["models"].items():
        data = (folder / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        script = (folder / (entry["file"] + ".js")).read_text()
        assert base64.b64decode(script.split('"')[-2]) == data
    assert set(manifest["runtime"]) == set(live_models.RUNTIME_FILES)
    assert manifest["bytes"] == sum(e["bytes"] for e in [*manifest["models"].values(), *manifest["runtime"].values()])
    assert json.loads((folder / "manifest.json").read_text()) == manifest
