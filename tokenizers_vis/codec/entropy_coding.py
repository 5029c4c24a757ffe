"""Payload codings 1 and 2: the ids range coded with an entropy model's probabilities.

Coding 1 takes them from a static per-position table, coding 2 from a model of the prefix (the
GPT); both share this coder and this layout (spec: docs/token-format.md).

    coding params = model id (4 bytes) | ids checksum (u32le) | group B (varint)
                    | condition (varint: 0 = unconditional, c + 1 = class c)

Stream order: the tiles in groups of B consecutive tiles; in a group, for t = 0, 1, .., for
j = 0 .. g-1, for every tile of the group with k > t, in tile order: sub-id j of token t. A
group's tiles are one batch of the model (`EntropyModel.start(B)`) on both sides, so the
encoder and the decoder run the same computation on the same shapes.

Bytes: constriction's range coder (`stream.queue`, 32-bit words, 64-bit state, each
`Categorical(perfect=False)` quantised to 24 bits), its words most significant byte first. The
coder's final word is replaced by the shortest byte string that still lies in its final
interval, and trailing zero bytes are dropped: a reader appends zero bytes, as the coder's
own decoder does past the end, so the payload is within ~1-2 bytes of the ideal -log2 p sum.

A payload must hold what it claims: decoding refuses a file as soon as the decoded ids have
cost more bits than the payload holds plus the coder's lookahead (`fmt.RANGE_LOOKAHEAD_BITS`;
each id's cost is bounded below from its probability), and before decoding when even the
model's floor per position (`EntropyModel.min_bits`) needs more, so a few bytes cannot claim
thousands of tiles. The writer keeps the trailing zero bytes an honest payload would need.

The ids checksum is the CRC-32 of the coding-0 payload of the same ids: a decoder whose model
computed other probabilities (another machine, device, torch build) gets ids that fail it, and
the file is refused instead of decoding to another image.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import constriction
import numpy as np

from tokenizers_vis.codec import bitpack
from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.entropy import MODEL_ID_BYTES, EntropyModel
from tokenizers_vis.codec.errors import (
    CorruptedError,
    EntropyMismatchError,
    EntropyModelError,
    OptionsError,
)
from tokenizers_vis.codec.format import encode_varint, read_varint
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits, check_limit

__all__ = [
    "DEFAULT_GROUP",
    "EntropyParams",
    "check_compatible",
    "check_group",
    "decode_ids",
    "decode_payload",
    "dumps",
    "encode_ids",
    "ids_checksum",
    "loads",
    "select_model",
    "symbol_bits",
]

DEFAULT_GROUP = 64  # tiles per batch: enough to keep a GPT busy, a small KV cache per group
# The writer keeps zero bytes so that the decoded ids' lower-bound cost stays this far inside
# what the reader allows (`fmt.RANGE_LOOKAHEAD_BITS`): floating-point sums of the bound may
# differ a little between machines.
_WRITER_MARGIN_BITS = 64
_WHAT = {fmt.CODING_STATIC: "a static table", fmt.CODING_MODEL: "an autoregressive model"}


def _params_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A varint of the coding params (their length is known: ending early is corruption)."""
    try:
        return read_varint(data, pos, "the entropy coding params")
    except fmt.TruncatedError:
        raise CorruptedError(
            "corrupted header: the entropy coding params end inside a varint"
        ) from None


@dataclass(frozen=True)
class EntropyParams:
    """The coding params of codings 1 and 2.

    Attributes:
        model_id: the entropy model's identity (`MODEL_ID_BYTES` bytes).
        ids_crc: CRC-32 of the coding-0 payload of the ids.
        group: tiles coded together (B >= 1).
        condition: the class the model was conditioned on, or None.
    """

    model_id: bytes
    ids_crc: int
    group: int = DEFAULT_GROUP
    condition: int | None = None

    def to_bytes(self) -> bytes:
        cond = 0 if self.condition is None else self.condition + 1
        crc = self.ids_crc.to_bytes(4, "little")
        return self.model_id + crc + encode_varint(self.group) + encode_varint(cond)

    @classmethod
    def parse(cls, data: bytes) -> EntropyParams:
        """Raises CorruptedError for params no writer produces."""
        if len(data) < MODEL_ID_BYTES + 4:
            raise CorruptedError(f"corrupted header: {len(data)} bytes of entropy coding params")
        model_id, pos = data[:MODEL_ID_BYTES], MODEL_ID_BYTES + 4
        crc = int.from_bytes(data[MODEL_ID_BYTES:pos], "little")
        group, pos = _params_varint(data, pos)
        cond, pos = _params_varint(data, pos)
        if pos != len(data) or group < 1:
            raise CorruptedError("corrupted header: impossible entropy coding params")
        return cls(model_id, crc, group, None if cond == 0 else cond - 1)


def ids_checksum(header: fmt.Header, ids: np.ndarray) -> int:
    """CRC-32 of the coding-0 payload of ids (T, n, g)."""
    rows = fmt.stored_rows(header, ids)  # (sum k, g)
    return zlib.crc32(bitpack.pack(rows, bitpack.bit_widths(header.vocab_sizes)))


def symbol_bits(p: np.ndarray, symbols: np.ndarray) -> float:
    """A lower bound on what the range coder spends on `symbols` (m,) coded with probability
    rows p (m, V): -log2 of each symbol's largest possible quantised probability."""
    v = p.shape[1]
    chosen = p[np.arange(len(symbols)), symbols] / p.sum(axis=1, dtype=np.float64)  # (m,)
    top = np.minimum(chosen + (v + 1) * 2.0**-fmt.RANGE_PRECISION, 1.0)
    return float(-np.log2(np.minimum(top, 1.0 - (v - 1) * 2.0**-fmt.RANGE_PRECISION)).sum())


def _walk(
    model: EntropyModel,
    ids: np.ndarray,
    lengths: np.ndarray,
    group: int,
    condition: int | None,
    code: Callable[[np.ndarray, np.ndarray, int, int, np.ndarray], None],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Visit every coded sub-id in stream order, asking the model the same way on both sides.

    Args:
        ids: (T, n, g) int64, zero past each tile's k: the encoder's ids, or the decoder's
            zeros that `code` fills in.
        code: (group ids (b, n, g), active (b,) bool, t, j, probabilities (m, V_j) of the
            m active tiles) -> None.
        progress: called with the tiles of each group once it is coded.
    """
    g = ids.shape[2]
    with model.session():
        for start in range(0, len(lengths), group):
            x, k = ids[start : start + group], lengths[start : start + group]  # (b n g), (b,)
            state = model.start(len(k), condition)
            for t in range(int(k.max())):
                active = k > t  # (b,)
                for j in range(g):
                    p = np.asarray(model.next_probabilities(state, x[:, :t], x[:, t, :j]))
                    if p.shape != (len(k), model.vocab_sizes[j]) or not np.isfinite(p).all():
                        raise ValueError(
                            f"{model.describe()} gave probabilities of shape {p.shape} "
                            f"(want {(len(k), model.vocab_sizes[j])}), or non-finite ones"
                        )
                    code(x, active, t, j, np.ascontiguousarray(p[active]))
            if progress is not None:
                progress(len(k))


def _sealed_bytes(encoder, min_bits: float = 0.0) -> bytes:
    """The range coder's bytes, its final word shortened as far as the interval allows, and
    trailing zero bytes dropped while the payload still holds `min_bits` (the ids' lower-bound
    cost, `symbol_bits`) within the reader's lookahead."""
    words = encoder.get_compressed()  # (w,) uint32, sealed with one or two words
    data = words.astype(">u4").tobytes()
    position, (lower, size) = encoder.pos()  # words before the state's 64-bit window
    point = lower + (1 << 32) - 1  # constriction's seal point (see its queue.rs)
    end = min(lower + size, 1 << 64)
    # Shorten only in the case whose layout is certain: the sealed words are the `position`
    # words before the window, then the seal word (and maybe a zero word).
    if point < 1 << 64 and len(words) in (position + 1, position + 2):
        if int(words[position]) == point >> 32:
            for n in range(5):  # bytes of the final point: range >= 2^32, so 4 always do
                shift = 64 - 8 * n
                c = -(-lower >> shift)  # the smallest n-byte point >= lower
                if c << shift < end:
                    data = data[: 4 * position] + c.to_bytes(n, "big")
                    break
    stripped = data.rstrip(b"\0")
    # Only ids that decode from zero bytes (the first value of every row) leave zeros at the
    # end; keep as many as the reader's check needs (none for any other payload; zeros past
    # the coder's own bytes are what a reader appends anyway).
    need = -(-(min_bits - fmt.RANGE_LOOKAHEAD_BITS + _WRITER_MARGIN_BITS) // 8)
    return stripped + b"\0" * max(0, int(need) - len(stripped))


def encode_ids(
    model: EntropyModel,
    ids: np.ndarray,
    lengths: np.ndarray,
    group: int = DEFAULT_GROUP,
    condition: int | None = None,
) -> tuple[bytes, float]:
    """Range code ids (T, n, g) (ids past a tile's k are ignored): (payload, ideal bits, i.e.
    sum -log2 p)."""
    ids = np.asarray(ids)
    past_k = np.arange(ids.shape[1])[None, :] >= np.asarray(lengths)[:, None]  # (T n)
    ids = np.where(past_k[..., None], 0, ids)  # (T n g): the zeros the decoder starts from
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    bits = [0.0, 0.0]  # ideal, lower bound

    def code(x: np.ndarray, active: np.ndarray, t: int, j: int, p: np.ndarray) -> None:
        symbols = x[active, t, j].astype(np.int32)  # (m,)
        encoder.encode(symbols, family, p)
        chosen = p[np.arange(len(symbols)), symbols] / p.sum(axis=1, dtype=np.float64)  # (m,)
        bits[0] -= float(np.log2(np.maximum(chosen, 1e-300)).sum())
        bits[1] += symbol_bits(p, symbols)

    _walk(model, ids, lengths, group, condition, code)
    return _sealed_bytes(encoder, bits[1]), bits[0]


def decode_ids(
    model: EntropyModel,
    payload: bytes | memoryview,
    lengths: np.ndarray,
    group: int = DEFAULT_GROUP,
    condition: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Inverse of `encode_ids`: ids (T, n, g) int64, zero past each tile's k.

    Raises:
        CorruptedError: the ids decoded so far cost more bits than the payload holds (plus the
            coder's lookahead): the decoder would read past its end.
    """
    data = bytes(payload)
    budget = 8 * len(data) + fmt.RANGE_LOOKAHEAD_BITS
    data += b"\0" * (-len(data) % 4 + 8)  # the zeros the encoder dropped
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, ">u4").astype(np.uint32))
    family = constriction.stream.model.Categorical(perfect=False)
    ids = np.zeros((len(lengths), int(lengths.max()), len(model.vocab_sizes)), dtype=np.int64)
    spent = [0.0]

    def code(x: np.ndarray, active: np.ndarray, t: int, j: int, p: np.ndarray) -> None:
        symbols = decoder.decode(family, p)  # (m,)
        x[active, t, j] = symbols
        spent[0] += symbol_bits(p, symbols)
        if spent[0] > budget:
            raise CorruptedError(
                f"corrupted: the {len(payload)}-byte payload ends before the ids of the "
                f"{len(lengths):,} tiles its header claims (decoding read past its end)"
            )

    _walk(model, ids, lengths, group, condition, code, progress)
    return ids


def check_compatible(model: EntropyModel, vocab_sizes: tuple[int, ...], max_k: int) -> None:
    """Raise OptionsError unless the model codes ids of these vocabularies, up to max_k tokens."""
    if tuple(model.vocab_sizes) != tuple(vocab_sizes):
        raise OptionsError(
            f"the {model.describe()} models vocabularies {tuple(model.vocab_sizes)}, the "
            f"tokenizer has {tuple(vocab_sizes)}"
        )
    if max_k > model.max_tokens:
        raise OptionsError(
            f"the {model.describe()} predicts at most {model.max_tokens} tokens, {max_k} asked"
        )


def dumps(
    header: fmt.Header,
    ids: np.ndarray,
    model: EntropyModel,
    group: int = DEFAULT_GROUP,
    condition: int | None = None,
    limits: Limits | None = None,
) -> bytes:
    """Write a .vtok file of ids (T, n, g) range coded with `model` (its coding, 1 or 2).

    Raises:
        LimitError: a group of `group` tiles needs more working memory than `limits` allow.
    """
    check_compatible(model, header.vocab_sizes, max(header.lengths))
    check_group(model, min(group, header.num_tiles), limits or DEFAULT_LIMITS, "encoding")
    if condition is not None and not 0 <= condition < len(model.class_names):
        raise ValueError(f"the {model.describe()} has no class {condition}")
    rows = fmt.stored_rows(header, ids)  # (sum k, g), checked
    x = fmt.scatter_ids(header, rows)  # (T n g), zero past each k
    payload, _ = encode_ids(model, x, np.asarray(header.lengths), group, condition)
    params = EntropyParams(model.identity, ids_checksum(header, x), group, condition)
    header = dataclasses.replace(header, coding=model.coding, coding_params=params.to_bytes())
    return fmt.dumps_payload(header, payload)


def select_model(header: fmt.Header, models: Iterable[EntropyModel]) -> EntropyModel:
    """The model among `models` that wrote an entropy-coded file, or EntropyModelError."""
    params = EntropyParams.parse(header.coding_params)
    models = [m for m in models if m.coding == header.coding]
    for model in models:
        if model.identity == params.model_id:
            return model
    what = f"{_WHAT[header.coding]} {params.model_id.hex()}"
    if not models:
        raise EntropyModelError(
            f"entropy coded with {what}, which was not given: decode with --entropy-model "
            "PATH of that model"
        )
    given = ", ".join(m.describe() for m in models)
    raise EntropyModelError(
        f"entropy coded with {what}, not with the {given} given: decode with the model that "
        "encoded it"
    )


def check_group(model: EntropyModel, batch: int, limits: Limits, source: object) -> None:
    """Refuse (`LimitError`) a coding group whose working memory exceeds
    `limits.max_work_bytes`, before the model allocates it."""
    what = f"bytes of working memory for a coding group of {batch:,} tiles"
    check_limit(source, what, model.work_bytes(batch), limits, "max_work_bytes")


def _check_holds(header: fmt.Header, payload_bytes: int, model: EntropyModel) -> None:
    """Refuse a payload smaller than the model's floor cost of every id the header claims."""
    floor = np.asarray(model.min_bits(), dtype=np.float64).sum(axis=1)  # (K,) per position
    counts = np.bincount(np.asarray(header.lengths), minlength=len(floor) + 1)  # (K+1,)
    active = counts[::-1].cumsum()[::-1][1:]  # (K,): tiles with k > t
    need = float(floor @ active)
    if need > 8 * payload_bytes + fmt.RANGE_LOOKAHEAD_BITS:
        raise CorruptedError(
            f"corrupted: a {payload_bytes}-byte payload cannot hold the {header.num_tokens:,} "
            f"tokens of {header.num_tiles:,} tiles the header claims: the "
            f"{model.describe()} needs at least {need:,.0f} bits"
        )


def decode_payload(
    header: fmt.Header,
    payload: bytes | memoryview,
    models: Iterable[EntropyModel],
    limits: Limits | None = None,
    source: object = "token file",
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The ids (T, n, g) of a checked file's payload, any coding (`fmt.read_payload` gives
    both); entropy codings use the one of `models` that wrote them.

    Args:
        limits: what decoding may cost (None: `DEFAULT_LIMITS`): a coding group's memory.
        source: the file's name in a refusal.
        progress: entropy codings: called with the tiles of each group once decoded.

    Raises:
        EntropyModelError: the model that wrote the file is not among `models`.
        EntropyMismatchError: the decoded ids fail their checksum.
        CorruptedError: the payload cannot hold the ids the header claims.
        LimitError: a coding group needs more memory than `limits` allow.
    """
    if header.coding == fmt.CODING_BITPACK:
        return fmt.unpack_ids(header, payload)
    model = select_model(header, models)
    params = EntropyParams.parse(header.coding_params)
    try:
        check_compatible(model, header.vocab_sizes, max(header.lengths))
    except ValueError as err:
        raise EntropyModelError(str(err)) from None
    if params.condition is not None and params.condition >= len(model.class_names):
        raise EntropyModelError(
            f"coded with class {params.condition}; the {model.describe()} has "
            f"{len(model.class_names)} classes"
        )
    _check_holds(header, len(payload), model)
    check_group(model, min(params.group, header.num_tiles), limits or DEFAULT_LIMITS, source)
    lengths = np.asarray(header.lengths)
    try:
        ids = decode_ids(model, payload, lengths, params.group, params.condition, progress)
    except fmt.VtokError:
        raise
    except Exception as err:  # constriction or the model refusing what the bytes led to
        raise EntropyMismatchError(
            f"the payload does not decode with the {model.describe()}: {err}"
        ) from None
    if ids_checksum(header, ids) != params.ids_crc:
        raise EntropyMismatchError(
            f"the ids decoded with the {model.describe()} fail their checksum: it computed "
            "other probabilities than the encoder's (another machine, device or torch build?)"
        )
    return ids


def loads(
    data: bytes | memoryview,
    models: Iterable[EntropyModel],
    tokenizer_id: bytes | None = None,
    limits: Limits | None = None,
) -> fmt.TokenFile:
    """`fmt.read_payload` then `decode_payload`: a file of any coding -> TokenFile."""
    header, payload = fmt.read_payload(data, tokenizer_id, limits)
    return fmt.TokenFile(header, decode_payload(header, payload, models, limits))
