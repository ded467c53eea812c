"""ONNX files of the library's models, for running them in a web page (onnxruntime-web) or any ONNX runtime.

The exported graph takes float32 images ``(N, 3, H, W)`` in [0, 1] (the model's own input normalisation is
inside it) and returns the logits ``(N, num_classes)``. A dual-norm model is exported on its main route ("M"),
the one it is evaluated with. Weights stored as fp16 (the shipped models) can stay fp16 in the file, with a cast
to fp32 before use, which halves the file and computes exactly what the fp32 model of those weights computes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

__all__ = ["export_onnx", "half_initializers", "onnx_sha256"]


def onnx_sha256(path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def half_initializers(model_proto) -> int:
    """Store every float32 weight of ``model_proto`` (an onnx ModelProto, changed in place) as float16, read
    through a Cast back to float32; weights that do not survive the round trip exactly stay float32. Returns the
    number of weights halved."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model_proto.graph
    halved, casts = 0, []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if values.size < 16 or not np.array_equal(half.astype(np.float32), values):
            continue  # a scalar or shape constant, or a weight that is not fp16-exact: it stays as it is
        name = init.name
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(half, name + "__fp16"))
        casts.append(helper.make_node("Cast", [name + "__fp16"], [name], to=TensorProto.FLOAT,
                                      name=name + "__cast"))
        halved += 1
    for node in reversed(casts):  # the casts run first: every use of a weight sees its fp32 value
        graph.node.insert(0, node)
    return halved


def export_onnx(model: nn.Module, path, image_size=(32, 32), *, half_weights: bool = False) -> Path:
    """Write ``model`` (images in [0, 1] -> logits) as an ONNX file at ``path``; returns the path.

    ``half_weights``: keep weights that are exactly fp16 (e.g. the shipped models') as fp16 in the file.
    The batch dimension is dynamic. The model is exported in eval mode on the CPU, in fp32.
    """
    import onnx

    from augmax_lib.norm import eval_mode

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = model.to("cpu", torch.float32)
    example = torch.rand(2, 3, *image_size)  # a batch of 1 would be specialised: the batch must stay dynamic
    with eval_mode(net), torch.no_grad():
        # Not optimised: the optimiser folds BatchNorm into the convolutions, whose weights then leave fp16.
        program = torch.onnx.export(net, (example,), dynamo=True, optimize=False, input_names=["images"],
                                    output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    external_data=False)
    proto = program.model_proto
    if half_weights:
        half_initializers(proto)
    onnx.checker.check_model(proto)
    from augmax_lib._io import atomic_path

    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path
