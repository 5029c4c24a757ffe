"""The `.vtok` token file format and encoding / decoding of images to and from it (spec:
docs/token-format.md). Files, folders and globs in bulk are the CLI's: `tokenizers_vis.cli.batch`.

    from tokenizers_vis import codec
    c = codec.Codec.from_pretrained("emoji32")
    data = c.encode_image("photo.jpg", num_tokens=32)     # .vtok bytes
    image = c.decode_bytes(data)                          # PIL RGB at the original size
    header, payload_bytes = codec.read_header(data)
    with codec.Container("set.vtoks", "a") as box: box.append("name", data)

Entropy coding (payload codings 1 and 2): any `EntropyModel` (next-token probabilities for a
prefix) range codes the ids; a static per-position table ships here, the GPT in `generation`.
A package adding a kind implements `EntropyModel` (coding `CODING_MODEL` or `CODING_STATIC`,
an identity of `MODEL_ID_BYTES` bytes: `files_identity` of its files, or `module_digest` of an
unsaved module) and registers a loader under the `vistok.entropy_models` entry points.

    c = codec.Codec.from_pretrained("emoji32", entropy="static")  # its entropy_static.* files
    c = codec.Codec.from_pretrained("emoji32", entropy="runs/gpt/export")  # kind from config.json
"""

from tokenizers_vis.codec.api import Codec, Encoded, EncodeOptions
from tokenizers_vis.codec.bitpack import bit_width, bit_widths, pack, packed_bytes, unpack
from tokenizers_vis.codec.container import Container, is_container
from tokenizers_vis.codec.entropy import (
    MODEL_ID_BYTES,
    EntropyModel,
    EntropyModelLoadError,
    entropy_kinds,
    files_identity,
    load_entropy_model,
)
from tokenizers_vis.codec.entropy_coding import EntropyParams
from tokenizers_vis.codec.errors import EntropyMismatchError, EntropyModelError, OptionsError
from tokenizers_vis.codec.format import (
    CODING_MODEL,
    CODING_STATIC,
    FORMAT_VERSION,
    CorruptedError,
    Header,
    NotVtokError,
    TokenFile,
    TruncatedError,
    UnsupportedError,
    VtokError,
    WrongTokenizerError,
    dumps,
    loads,
    read_header,
)
from tokenizers_vis.codec.identity import directory_identity, model_identity, module_digest
from tokenizers_vis.codec.layout import LAYOUTS, coded_size
from tokenizers_vis.codec.static_table import StaticTable

__all__ = [
    "CODING_MODEL",
    "CODING_STATIC",
    "FORMAT_VERSION",
    "LAYOUTS",
    "MODEL_ID_BYTES",
    "Codec",
    "Container",
    "CorruptedError",
    "EncodeOptions",
    "Encoded",
    "EntropyMismatchError",
    "EntropyModel",
    "EntropyModelError",
    "EntropyModelLoadError",
    "EntropyParams",
    "Header",
    "NotVtokError",
    "OptionsError",
    "StaticTable",
    "TokenFile",
    "TruncatedError",
    "UnsupportedError",
    "VtokError",
    "WrongTokenizerError",
    "bit_width",
    "bit_widths",
    "coded_size",
    "directory_identity",
    "dumps",
    "entropy_kinds",
    "files_identity",
    "is_container",
    "load_entropy_model",
    "loads",
    "model_identity",
    "module_digest",
    "pack",
    "packed_bytes",
    "read_header",
    "unpack",
]
