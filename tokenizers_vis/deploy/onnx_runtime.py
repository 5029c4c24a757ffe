"""`OnnxTokenizer`: run an exported tokenizer (`export_onnx`) with onnxruntime, no torch needed.

An export directory holds `encoder.onnx`, `decoder.onnx` and `onnx.json` (the format, names and
shapes of every graph input and output, image size, K, vocabulary sizes, the tokenizer spec).
The graphs trust their inputs; this runner checks them first, so a wrong shape, an id outside its
codebook or a k outside 1..K is a `ValueError` here instead of garbage pixels (an FSQ id out of
range wraps around silently) or an onnxruntime error about a node.

This module imports numpy and onnxruntime only, so a deployment can copy it alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tokenizers_vis.errors import VistokError
from tokenizers_vis.safe_read import read_json

FORMAT = "vistok-onnx"
FORMAT_VERSION = 1
CONFIG_NAME = "onnx.json"
ENCODER_NAME = "encoder.onnx"
DECODER_NAME = "decoder.onnx"
# Graph input / output names; onnx.json repeats them, and the runner reads them from there.
IMAGES, IDS, NUM_TOKENS = "images", "ids", "num_tokens"


class OnnxExportDirError(VistokError):
    """An export directory is missing, incomplete or of another format."""


def read_onnx_config(directory: str | Path) -> dict[str, Any]:
    """Parse and validate `onnx.json` of an export directory.

    Raises:
        OnnxExportDirError: no such directory, no or unreadable `onnx.json`, another format or a
            newer format version, or a graph file missing.
    """
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise OnnxExportDirError(f"{directory} is not an ONNX export ({CONFIG_NAME} is missing)")
    config = read_json(path, error=OnnxExportDirError)  # bounded: size, UTF-8, nesting
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise OnnxExportDirError(f"{path} is not a {FORMAT} file")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise OnnxExportDirError(
            f"{path}: format_version {version!r} is not supported (this vistok reads "
            f"<= {FORMAT_VERSION})"
        )
    for part in ("encoder", "decoder"):
        graph = directory / config[part]["file"]
        if not graph.is_file():
            raise OnnxExportDirError(f"{graph} is missing")
    return config


class OnnxTokenizer:
    """An exported tokenizer on onnxruntime: numpy in, numpy out, the `Tokenizer` semantics.

    Args:
        directory: an export directory written by `export_onnx` / `vistok export --onnx`.
        providers: onnxruntime execution providers (default: CPU).
        threads: intra-op threads per session (default: onnxruntime's choice).

    Attributes:
        image_size, max_tokens (K), vocab_sizes (one per sub-codebook), config (onnx.json).
    """

    def __init__(
        self,
        directory: str | Path,
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.directory = Path(directory)
        self.config = read_onnx_config(self.directory)
        self.image_size = int(self.config["image_size"])
        self.max_tokens = int(self.config["max_tokens"])
        self.vocab_sizes = tuple(int(v) for v in self.config["vocab_sizes"])
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        self._sessions = {
            part: ort.InferenceSession(
                str(self.directory / self.config[part]["file"]), options, providers=providers
            )
            for part in ("encoder", "decoder")
        }

    def encode(self, images: np.ndarray, num_tokens: int | np.ndarray | None = None) -> np.ndarray:
        """images (b 3 h w) float in [-1, 1] -> ids (b k g) int64.

        Args:
            images: (b, 3, image_size, image_size), any float dtype (run in float32).
            num_tokens: None for all K; an int k in 1..K; or (b,) per-image k, where ids are
                padded with 0 to the longest k (pass the same array to `decode`).

        Returns:
            (b, k, g) int64 ids; a prefix of the K-token sequence, as `Tokenizer.encode` gives.
        """
        images = np.asarray(images)
        expected = (3, self.image_size, self.image_size)
        if images.ndim != 4 or images.shape[1:] != expected or images.shape[0] < 1:
            shape = ", ".join(map(str, expected))
            raise ValueError(f"images must be (b, {shape}) with b >= 1, got {images.shape}")
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"images must be floats in [-1, 1], got {images.dtype}")
        ids = self._run("encoder", images.astype(np.float32))  # (b K g)
        if num_tokens is None:
            return ids
        lengths = self._lengths(num_tokens, len(ids), self.max_tokens)  # (b,)
        keep = np.arange(self.max_tokens)[None, :, None] < lengths[:, None, None]  # (b K 1)
        return np.where(keep, ids, 0)[:, : int(lengths.max())]  # (b k_max g)

    def decode(self, ids: np.ndarray, num_tokens: int | np.ndarray | None = None) -> np.ndarray:
        """ids (b n g), n <= K -> images (b 3 h w) float32 in [-1, 1].

        Args:
            ids: (b, n, g) integer ids, 1 <= n <= K.
            num_tokens: None (all n tokens), an int, or (b,) per-image k in 1..n; positions at or
                after an image's k are padding and ignored.
        """
        ids = np.asarray(ids)
        groups = len(self.vocab_sizes)
        if ids.ndim != 3 or ids.shape[2] != groups or not 1 <= ids.shape[1] <= self.max_tokens:
            raise ValueError(
                f"ids must be (b, n, {groups}) with 1 <= n <= {self.max_tokens}, got {ids.shape}"
            )
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be integers, got {ids.dtype}")
        b, n, _ = ids.shape
        if b < 1:
            raise ValueError("ids must hold at least one sequence")
        lengths = self._lengths(n if num_tokens is None else num_tokens, b, n)  # (b,)
        valid = np.arange(n)[None, :, None] < lengths[:, None, None]  # (b n 1)
        limits = np.asarray(self.vocab_sizes)  # (g,)
        if bool((valid & ((ids < 0) | (ids >= limits))).any()):
            raise ValueError(f"ids out of range for vocab sizes {self.vocab_sizes}")
        padded = np.zeros((b, self.max_tokens, groups), np.int64)  # (b K g); graph's input is K
        padded[:, :n] = np.where(valid, ids, 0)
        return self._run("decoder", padded, lengths)  # (b 3 h w)

    def _run(self, part: str, *inputs: np.ndarray) -> np.ndarray:
        """Feed `inputs` by the names onnx.json lists, in its order; the graph's one output."""
        graph = self.config[part]
        feeds = dict(zip(graph["inputs"], inputs, strict=True))
        (out,) = self._sessions[part].run(list(graph["outputs"]), feeds)
        return out

    @staticmethod
    def _lengths(num_tokens: int | np.ndarray, batch: int, high: int) -> np.ndarray:
        """An int or (b,) array of k -> (b,) int64, each in 1..high."""
        lengths = np.asarray(num_tokens)
        if not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"num_tokens must be integers, got {num_tokens!r}")
        lengths = np.broadcast_to(lengths, (batch,)) if lengths.ndim == 0 else lengths
        if lengths.shape != (batch,):
            raise ValueError(f"num_tokens must be an int or a ({batch},) array")
        if bool((lengths < 1).any() or (lengths > high).any()):
            raise ValueError(f"num_tokens must be in 1..{high}, got {num_tokens}")
        return lengths.astype(np.int64)
