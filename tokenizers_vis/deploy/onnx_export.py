"""`export_onnx(tokenizer, out_dir)`: a tokenizer -> encoder.onnx, decoder.onnx and onnx.json.

Exporter: `torch.onnx.export(dynamo=True)` (torch.export + onnxscript), the supported one; the
legacy TorchScript exporter also produced working graphs but warns that it is deprecated and
will be removed. Opset 18 (or higher), the dynamo exporter's native opset: SDPA, LayerNorm,
GELU and the FSQ / VQ index arithmetic all lower to standard ONNX ops that onnxruntime's CPU
provider runs. The batch axis is dynamic; image size and K are fixed by the model.

Every export is checked before it is published: onnxruntime runs both graphs on a seeded probe
batch (mixed k) and must agree with PyTorch (ids, and pixels within `CHECK_TOLERANCE`); the
measured numbers go into onnx.json. The directory appears whole or not at all: everything is
written to a hidden sibling and renamed into place, and `overwrite` replaces only a previous
export (or an empty directory), never some other folder that happens to have the name.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenizers_vis.atomic import OutputExistsError, blame_destination, temp_path
from tokenizers_vis.deploy.graphs import DecoderGraph, EncoderGraph, check_exportable, unchecked_ids
from tokenizers_vis.deploy.onnx_runtime import (
    CONFIG_NAME,
    DECODER_NAME,
    ENCODER_NAME,
    FORMAT,
    FORMAT_VERSION,
    IDS,
    IMAGES,
    NUM_TOKENS,
    OnnxTokenizer,
)
from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import Limits
from tokenizers_vis.safe_read import read_json
from tokenizers_vis.tokenizer import Tokenizer, Tokens, prefix_lengths

DEFAULT_OPSET = 18
# The dynamo exporter builds opset-18 graphs; converting one down (17 was tried) fails inside
# onnx's version converter and torch then keeps the opset-18 graph, so a lower opset is refused.
MIN_OPSET = 18
# A broken graph is off by 0.1-1 in pixels; fp32 reassociation by ~1e-6 (measured: see the
# README's "Deploy with ONNX"). The check sits far from both.
CHECK_TOLERANCE = 1e-3
MIN_ID_AGREEMENT = 0.99  # a latent a hair from a rounding edge may flip one id; a bug flips most


class OnnxExportError(VistokError):
    """The tokenizer cannot be exported, or its exported graphs disagree with PyTorch."""


class OnnxMissingError(ImportError, VistokError):
    """ONNX export needs the optional `onnx` / `onnxscript` packages, which are not installed."""


def export_onnx(
    tokenizer: Tokenizer | str | Path,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    check: bool = True,
    limits: Limits | None = None,
) -> Path:
    """Export `tokenizer`'s encoder and decoder to ONNX; returns `out_dir`.

    Args:
        tokenizer: a Tokenizer, a pretrained directory or a shipped model's name.
        out_dir: directory to write: encoder.onnx (images (b 3 h w) float32 -> ids (b K g)
            int64), decoder.onnx (ids (b K g) int64, num_tokens (b,) int64 -> images (b 3 h w)
            float32 in [-1, 1]) and onnx.json; run them with `OnnxTokenizer(out_dir)`.
        opset: ONNX opset version.
        overwrite: replace an existing export in `out_dir`.
        check: run both graphs with onnxruntime against PyTorch before publishing.
        limits: input limits for loading a pretrained `tokenizer` (default `DEFAULT_LIMITS`).

    Raises:
        OutputExistsError: `out_dir` is a file, or a non-empty directory and `overwrite` is
            False, or with `overwrite` a directory that holds no previous export.
        OnnxExportError: a rectified-flow decoder, a failed export or a failed check.
        PretrainedError: `tokenizer` names no pretrained directory or shipped model.
    """
    out_dir = Path(out_dir)
    if opset < MIN_OPSET:
        raise OnnxExportError(f"opset must be >= {MIN_OPSET} (torch.onnx exports {MIN_OPSET}+)")
    _check_destination(out_dir, overwrite)  # before minutes of work, and again when publishing
    source = None if isinstance(tokenizer, Tokenizer) else str(tokenizer)
    if source is not None:
        tokenizer = Tokenizer.from_pretrained(tokenizer, limits=limits)
    try:
        check_exportable(tokenizer)
    except ValueError as err:
        raise OnnxExportError(str(err)) from None
    # A private fp32 CPU copy in eval mode, rebuilt from the spec (not deep-copied, which would
    # double a GPU model's memory on its device): the caller's model keeps device, dtype, mode.
    model = type(tokenizer)(**tokenizer.config)  # fp32 on the CPU; loading casts bf16 weights
    model.load_state_dict({k: v.detach().cpu() for k, v in tokenizer.state_dict().items()})
    model.eval()
    tmp = temp_path(out_dir)
    try:
        with blame_destination(tmp, out_dir):  # an error names OUT_DIR, not the hidden folder
            tmp.mkdir(parents=True)
            config = _config(model, opset, source)
            _export_graphs(model, tmp, opset)
            _write_config(tmp, config)
            if check:
                config["check"] = _check_against_torch(model, tmp)
                _write_config(tmp, config)
            _publish(tmp, out_dir, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a rename; cleans up after a failure
    return out_dir


def _config(model: Tokenizer, opset: int, source: str | None) -> dict[str, Any]:
    from tokenizers_vis import __version__

    s, k, g = model.image_size, model.max_tokens, len(model.vocab_sizes)
    image = {"shape": ["batch", 3, s, s], "dtype": "float32", "range": [-1, 1]}
    ids = {"shape": ["batch", k, g], "dtype": "int64"}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "opset": opset,
        "image_size": s,
        "max_tokens": k,
        "vocab_sizes": list(model.vocab_sizes),
        "encoder": {"file": ENCODER_NAME, "inputs": {IMAGES: image}, "outputs": {IDS: ids}},
        "decoder": {
            "file": DECODER_NAME,
            # num_tokens: each image's prefix length k in 1..K; ids at positions >= k are ignored.
            "inputs": {IDS: ids, NUM_TOKENS: {"shape": ["batch"], "dtype": "int64"}},
            "outputs": {IMAGES: image},
        },
        "source": source,
        "tokenizer": model.config,
    }


def _export_graphs(model: Tokenizer, directory: Path, opset: int) -> None:
    """Trace both graphs on a batch of 2 (1 would be specialised away) and save them."""
    s, k = model.image_size, model.max_tokens
    images = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ids = model.encode(images).ids  # (2 K g)
    batch = torch.export.Dim("batch")
    graphs = {
        ENCODER_NAME: (EncoderGraph(model).eval(), (images,), [IMAGES]),
        DECODER_NAME: (DecoderGraph(model).eval(), (ids, torch.tensor([k, 1])), [IDS, NUM_TOKENS]),
    }
    outputs = {ENCODER_NAME: [IDS], DECODER_NAME: [IMAGES]}
    for name, (graph, args, inputs) in graphs.items():
        try:
            with torch.no_grad(), unchecked_ids(model), warnings.catch_warnings():
                # One Dim shared by ids and num_tokens makes the exporter note that it keeps
                # a single axis name: intended.
                warnings.filterwarnings("ignore", message=".*axis name", category=UserWarning)
                program = torch.onnx.export(
                    graph,
                    args,
                    dynamo=True,
                    opset_version=opset,
                    input_names=inputs,
                    output_names=outputs[name],
                    dynamic_shapes={i: {0: batch} for i in inputs},
                    verbose=False,
                )
            program.save(directory / name)
        except ImportError as err:
            raise OnnxMissingError(
                f"ONNX export needs onnx and onnxscript: pip install 'vistok[onnx]' ({err})"
            ) from err
        except Exception as err:  # the exporter's own error types vary across torch versions
            raise OnnxExportError(f"{name}: export failed: {err!s:.300}") from err
        _check_opset(directory / name, opset)


def _check_opset(path: Path, opset: int) -> None:
    """The saved graph's default-domain opset must be the one asked for, not a fallback."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    got = {entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")}
    if got != {opset}:
        raise OnnxExportError(f"{path.name}: asked for opset {opset}, the exporter wrote {got}")


def _check_against_torch(model: Tokenizer, directory: Path) -> dict[str, Any]:
    """Run the exported graphs on a seeded probe batch with mixed k; compare with PyTorch."""
    import onnxruntime

    ks = prefix_lengths(model.max_tokens)  # one image per k: 1, 2, 4, .., K
    s = model.image_size
    images = torch.rand(len(ks), 3, s, s, generator=torch.Generator().manual_seed(1)) * 2 - 1
    runner = OnnxTokenizer(directory)
    ids = model.encode(images).ids  # (b K g)
    agreement = float((runner.encode(images.numpy()) == ids.numpy()).mean())
    lengths = torch.tensor(ks)
    expected = model.decode(Tokens(ids, lengths)).numpy()  # (b 3 h w)
    got = runner.decode(ids.numpy(), lengths.numpy())  # the same ids: pixels alone compared
    diff = float(np.abs(got - expected).max())
    if agreement < MIN_ID_AGREEMENT or not diff <= CHECK_TOLERANCE:
        raise OnnxExportError(
            f"exported graphs disagree with PyTorch: {agreement:.1%} of ids equal, decoder max "
            f"abs difference {diff:.2e} (tolerance {CHECK_TOLERANCE:g})"
        )
    return {
        "probe_images": len(ks),
        "num_tokens": ks,
        "id_agreement": agreement,
        "decoder_max_abs_diff": diff,
        "onnxruntime": onnxruntime.__version__,
    }


def _write_config(directory: Path, config: dict[str, Any]) -> None:
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    (directory / CONFIG_NAME).write_text(text)  # inside the unpublished directory: no reader yet


def _is_replaceable(path: Path) -> bool:
    """An empty directory, or one holding a previous export (onnx.json of our format)."""
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        return read_json(path / CONFIG_NAME, error=OSError).get("format") == FORMAT
    except (OSError, VistokError, AttributeError):
        return False


def _check_destination(out_dir: Path, overwrite: bool) -> None:
    if not os.path.lexists(out_dir):
        return
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        return  # `mkdir out && vistok export --onnx out ...` is fine
    if not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir} exists and is not a directory")
    if not overwrite:
        raise OutputExistsError(f"{out_dir} exists and is not empty")
    if not _is_replaceable(out_dir):
        raise OutputExistsError(
            f"{out_dir} exists and is not an ONNX export of vistok; refusing to replace it"
        )


def _publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished `tmp` to `out_dir`; an old export is swapped out, then deleted."""
    _check_destination(out_dir, overwrite)
    if not os.path.lexists(out_dir):
        os.rename(tmp, out_dir)
        return
    old = temp_path(out_dir)
    os.rename(out_dir, old)  # an empty directory or a previous export (checked just above)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)  # put the previous export back
        raise
    shutil.rmtree(old, ignore_errors=True)
