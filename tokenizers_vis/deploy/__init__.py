"""Deployment: a tokenizer's encoder and decoder as ONNX graphs, run with onnxruntime.

    from tokenizers_vis.deploy import OnnxTokenizer, export_onnx
    export_onnx("emoji32", "emoji32_onnx")        # encoder.onnx, decoder.onnx, onnx.json
    tok = OnnxTokenizer("emoji32_onnx")
    ids = tok.encode(images, num_tokens=16)       # (b 3 32 32) float32 -> (b 16 1) int64
    recon = tok.decode(ids)                       # (b 3 32 32) float32 in [-1, 1]

`vistok export --onnx OUT --model NAME|DIR` is the same call from the shell. Needs the `onnx`
extra (onnx, onnxscript, onnxruntime); running needs numpy and onnxruntime only.
"""

from __future__ import annotations

from tokenizers_vis.deploy.onnx_export import OnnxExportError, export_onnx
from tokenizers_vis.deploy.onnx_runtime import OnnxExportDirError, OnnxTokenizer, read_onnx_config

__all__ = [
    "OnnxExportDirError",
    "OnnxExportError",
    "OnnxTokenizer",
    "export_onnx",
    "read_onnx_config",
]
