"""Emoji: every colour bitmap of Noto Color Emoji, labelled with its Unicode emoji group.

Source: the Debian package fonts-noto-color-emoji (2.042, Emoji 15.1), whose CBDT table holds
one 136x128 PNG per glyph. Glyphs are mapped to code-point sequences through the font's cmap
(single code points) and its GSUB ligature lookup (ZWJ, modifier, keycap and flag sequences).

Groups come from the Unicode 15.0 `emoji-test.txt` shipped beside this file (copied from the
Debian package unicode-data 15.0.0-1; Unicode licence). FE0F is ignored when matching because
the font's ligatures omit it. The font is one Unicode version ahead of that file, so:

- the 231 glyphs whose sequence emoji-test 15.0 lacks (the 118 Emoji 15.1 additions -- 108
  people facing right, 4 families, phoenix, lime, brown mushroom, broken chain, 2 head
  shakes -- plus Noto's 15 non-RGI skin-toned wrestlers and 98 non-RGI subdivision flags of
  Canada, Mexico, the US and Northern Ireland) take the group of their first code point.
  That is the group Unicode 15.1 gives each of them except brown mushroom (mushroom is
  Animals & Nature, brown mushroom Food & Drink), which `_EMOJI_15_1` records together with
  the ten 15.1 names no rule can compose. Other names are composed from 15.0 names by the
  15.1 conventions ("woman running facing right: light skin tone", "women wrestling: dark
  skin tone"); subdivision flags are named by their tag ("flag: US-TX").
- the font lists ZWJ ligatures in both orders (for right-to-left runs); the canonical order
  is the one that sorts between its neighbours in glyph order, since Noto numbers its glyphs
  by sorted sequence.

Dropped (counted in `EmojiDataset.dropped`): the 9 Component swatches (skin tones, hair) and
the glyphs that are not an emoji on their own (keycap bases #*0-9, the combining keycap,
the 26 regional-indicator letters, and the unknown-flag fallback).

Split: a hash of the *base* sequence (skin-tone modifiers and FE0F removed), so every
skin-tone variant of an emoji falls in the same split: 90 % train, 5 % val, 5 % test.

The rendered set is cached as `emoji_{size}.npz` in `cache_dir`, default the vistok cache
(`tokenizers_vis.cache`: `$VISTOK_CACHE_DIR`, `$VISTOK_CACHE` or `~/.cache/vistok`), written
atomically, and rebuilt when the font changes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tokenizers_vis.atomic import AtomicFile
from tokenizers_vis.cache import cache_dir as vistok_cache
from tokenizers_vis.data.errors import DataError, MissingDataError
from tokenizers_vis.data.transforms import (
    WorkerGenerator,
    random_crop_flip,
    resize_square,
    to_tensor,
)

__all__ = ["EMOJI_FONT", "EMOJI_GROUPS", "EmojiDataset", "emoji_split", "load_emoji"]

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path(__file__).with_name("emoji-test.txt")
# Class names, in emoji-test order, keyed by the Unicode group they stand for.
EMOJI_GROUPS: dict[str, str] = {
    "Smileys & Emotion": "smileys",
    "People & Body": "people",
    "Animals & Nature": "animals_nature",
    "Food & Drink": "food_drink",
    "Travel & Places": "travel_places",
    "Activities": "activities",
    "Objects": "objects",
    "Symbols": "symbols",
    "Flags": "flags",
}
SPLITS = ("train", "val", "test")
_CACHE_VERSION = 1  # bump whenever rendering, labels, names or splits change
_SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
_ZWJ, _VS16, _RIGHT_ARROW = 0x200D, 0xFE0F, 0x27A1

Seq = tuple[int, ...]

# The Emoji 15.1 singletons whose name cannot be composed from 15.0 names (Unicode 15.1
# emoji-test.txt), with their 15.1 group; all other 15.1 sequences are named by rule below.
_EMOJI_15_1: dict[Seq, tuple[str, str]] = {
    (0x1F642, _ZWJ, 0x2194): ("Smileys & Emotion", "head shaking horizontally"),
    (0x1F642, _ZWJ, 0x2195): ("Smileys & Emotion", "head shaking vertically"),
    (0x1F9D1, _ZWJ, 0x1F9D1, _ZWJ, 0x1F9D2): ("People & Body", "family: adult, adult, child"),
    (0x1F9D1, _ZWJ, 0x1F9D1, _ZWJ, 0x1F9D2, _ZWJ, 0x1F9D2): (
        "People & Body",
        "family: adult, adult, child, child",
    ),
    (0x1F9D1, _ZWJ, 0x1F9D2): ("People & Body", "family: adult, child"),
    (0x1F9D1, _ZWJ, 0x1F9D2, _ZWJ, 0x1F9D2): ("People & Body", "family: adult, child, child"),
    (0x1F426, _ZWJ, 0x1F525): ("Animals & Nature", "phoenix"),
    (0x1F34B, _ZWJ, 0x1F7E9): ("Food & Drink", "lime"),
    # The one place "group of the first code point" is wrong: mushroom is Animals & Nature.
    (0x1F344, _ZWJ, 0x1F7EB): ("Food & Drink", "brown mushroom"),
    (0x26D3, _ZWJ, 0x1F4A5): ("Objects", "broken chain"),
}


@dataclass(frozen=True)
class _TestEntry:
    group: str
    name: str
    order: int
    fully_qualified: bool


def _hex(seq: Seq) -> str:
    return " ".join(f"{c:04X}" for c in seq)


def _parse_emoji_test(path: Path) -> dict[Seq, _TestEntry]:
    """emoji-test.txt -> {sequence without FE0F: entry}, preferring fully-qualified lines."""
    entries: dict[Seq, _TestEntry] = {}
    group = ""
    for order, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        if not line.strip() or line.startswith("#"):
            continue
        codes, rest = line.split(";", 1)
        status, comment = rest.split("#", 1)
        key = tuple(int(c, 16) for c in codes.split() if int(c, 16) != _VS16)
        entry = _TestEntry(
            group, comment.split(maxsplit=2)[2].strip(), order, status.strip() == "fully-qualified"
        )
        if key not in entries or (entry.fully_qualified and not entries[key].fully_qualified):
            entries[key] = entry
    return entries


def _glyph_sequences(font) -> dict[str, list[Seq]]:
    """glyph name -> every code-point sequence the font draws with it (cmap + ligatures)."""
    cmap = font.getBestCmap()
    code_of: dict[str, int] = {}
    seqs: dict[str, list[Seq]] = {}
    for code, glyph in sorted(cmap.items()):
        code_of.setdefault(glyph, code)
        seqs.setdefault(glyph, []).append((code,))
    for lookup in font["GSUB"].table.LookupList.Lookup:
        if lookup.LookupType != 4:  # ligature substitution
            continue
        for sub in lookup.SubTable:
            for first, ligatures in sub.ligatures.items():
                for lig in ligatures:
                    glyphs = [first, *lig.Component]
                    if all(g in code_of for g in glyphs):
                        seqs.setdefault(lig.LigGlyph, []).append(tuple(code_of[g] for g in glyphs))
    return seqs


def _elements(seq: Seq) -> list[Seq]:
    out: list[list[int]] = [[]]
    for c in seq:
        if c == _ZWJ:
            out.append([])
        else:
            out[-1].append(c)
    return [tuple(e) for e in out]


def _derived_name(seq: Seq, test: dict[Seq, _TestEntry]) -> str:
    """A CLDR-style name for a sequence emoji-test 15.0 does not list."""
    if seq in test:
        return test[seq].name
    if seq in _EMOJI_15_1:
        return _EMOJI_15_1[seq][1]
    if seq[0] == 0x1F3F4 and len(seq) > 2 and all(0xE0020 <= c <= 0xE007F for c in seq[1:]):
        tag = "".join(chr(c - 0xE0000) for c in seq[1:-1]).upper()  # e.g. "USTX"
        return f"flag: {tag[:2]}-{tag[2:]}"
    elements = _elements(seq)
    if len(elements) > 1 and elements[-1] == (_RIGHT_ARROW,):  # Emoji 15.1 "facing right"
        head, colon, tail = _derived_name(seq[:-2], test).partition(":")
        return f"{head} facing right{colon}{tail}"
    plain = tuple(c for c in seq if c not in _SKIN_TONES)
    if plain != seq and plain in test:
        tones = [test[(c,)].name for c in seq if c in _SKIN_TONES]
        return f"{test[plain].name}: {', '.join(tones)}"
    return " + ".join(test[e].name if e in test else _hex(e) for e in elements)


@dataclass(frozen=True)
class _Emoji:
    glyph: str
    seq: Seq
    group: str
    name: str
    order: tuple[int, int]  # (emoji-test line or past the end, glyph id): CLDR order first


def _canonical(aliases: list[Seq], prev: Seq | None, nxt: Seq | None) -> Seq:
    """The alias that sorts between the glyph's matched neighbours (Noto's glyph order)."""
    fits = [s for s in sorted(aliases) if (prev is None or prev <= s) and (nxt is None or s <= nxt)]
    return (fits or sorted(aliases))[0]


def _derive(seq: Seq, test: dict[Seq, _TestEntry]) -> tuple[str, str] | None:
    """(group, name) of a sequence emoji-test 15.0 lacks, or None if it is no emoji."""
    if seq in _EMOJI_15_1:
        return _EMOJI_15_1[seq]
    first = test.get(seq[:1])
    if first is None or first.group not in EMOJI_GROUPS:
        return None
    return first.group, _derived_name(seq, test)


def _catalogue(font, test: dict[Seq, _TestEntry]) -> tuple[list[_Emoji], dict[str, int]]:
    """Every bitmap glyph -> (canonical sequence, Unicode group, name); plus drop counts."""
    seqs = _glyph_sequences(font)
    gid = {g: i for i, g in enumerate(font.getGlyphOrder())}
    glyphs = sorted(font["CBDT"].strikeData[0], key=gid.__getitem__)
    known = {
        g: min((s for s in seqs.get(g, []) if s in test), key=lambda s: test[s].order)
        for g in glyphs
        if any(s in test for s in seqs.get(g, []))
    }
    multi = [g for g in glyphs if g in known and len(known[g]) > 1]  # ligatures, in glyph order
    multi_ids = [gid[m] for m in multi]
    emojis, dropped = [], {"component": 0, "not_an_emoji": 0}
    for g in glyphs:
        if g in known:
            entry = test[known[g]]
            if entry.group == "Component":
                dropped["component"] += 1
            else:
                emojis.append(_Emoji(g, known[g], entry.group, entry.name, (entry.order, gid[g])))
            continue
        aliases = [s for s in seqs.get(g, []) if len(s) > 1]
        pos = int(np.searchsorted(multi_ids, gid[g]))
        prev = known[multi[pos - 1]] if pos > 0 else None
        nxt = known[multi[pos]] if pos < len(multi) else None
        seq = _canonical(aliases, prev, nxt) if aliases else ()
        derived = _derive(seq, test) if seq else None
        if derived is None:  # keycap bases, regional-indicator letters, unknown-flag glyph
            dropped["not_an_emoji"] += 1
            continue
        emojis.append(_Emoji(g, seq, *derived, (len(test) + gid[g], gid[g])))
    rank = {grp: i for i, grp in enumerate(EMOJI_GROUPS)}
    emojis.sort(key=lambda e: (rank[e.group], e.order))
    return emojis, dropped


def emoji_split(seq: Seq | str) -> str:
    """Deterministic split of an emoji from its base (skin tones and FE0F removed).

    Args:
        seq: code points, or their hex spelling "1F44B 1F3FD".

    Returns:
        "train" (90 %), "val" (5 %) or "test" (5 %).
    """
    codes = [int(c, 16) for c in seq.split()] if isinstance(seq, str) else list(seq)
    base = _hex(tuple(c for c in codes if c not in _SKIN_TONES and c != _VS16))
    bucket = int.from_bytes(hashlib.sha256(base.encode()).digest()[:8], "little") % 100
    return "train" if bucket < 90 else "val" if bucket < 95 else "test"


def _render(font, glyph: str, size: int) -> np.ndarray:
    """One CBDT bitmap -> (size, size, 3) uint8, on white, padded square, Lanczos-resized."""
    bitmap = font["CBDT"].strikeData[0][glyph]
    rgba = Image.open(io.BytesIO(bitmap.imageData)).convert("RGBA")
    rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba).convert("RGB")
    return np.asarray(resize_square(rgb, size))


def _build(size: int, font_path: Path, test_path: Path) -> dict[str, np.ndarray]:
    from fontTools.ttLib import TTFont  # only needed on a cache miss

    font = TTFont(str(font_path), lazy=True)
    emojis, dropped = _catalogue(font, _parse_emoji_test(test_path))
    class_names = list(EMOJI_GROUPS.values())
    return {
        "images": np.stack([_render(font, e.glyph, size) for e in emojis]),  # (n s s 3)
        "labels": np.array([class_names.index(EMOJI_GROUPS[e.group]) for e in emojis], np.int64),
        "names": np.array([e.name for e in emojis]),
        "sequences": np.array([_hex(e.seq) for e in emojis]),
        "splits": np.array([emoji_split(e.seq) for e in emojis]),
        "class_names": np.array(class_names),
        "dropped": np.array(json.dumps(dropped)),
    }


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_cache_dir() -> Path:
    """The vistok cache directory (`tokenizers_vis.cache.cache_dir`)."""
    return vistok_cache()


def load_emoji(
    size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    font_path: str | os.PathLike = EMOJI_FONT,
    test_path: str | os.PathLike = EMOJI_TEST,
) -> dict[str, np.ndarray]:
    """All emoji rendered at `size`, from the on-disk cache when it is current.

    Returns:
        {"images": (n, size, size, 3) uint8, "labels": (n,) int64, "names", "sequences",
        "splits": (n,) str, "class_names": (9,) str, "dropped": JSON str of drop counts}.
    """
    if size < 1:
        raise DataError(f"size must be positive, got {size}")
    font_path, test_path = Path(font_path), Path(test_path)
    if not font_path.is_file():
        raise MissingDataError(f"{font_path} missing: apt-get install fonts-noto-color-emoji")
    key = f"v{_CACHE_VERSION}:{_file_digest(font_path)}:{_file_digest(test_path)}"
    cache = Path(cache_dir or default_cache_dir()) / f"emoji_{size}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return {k: z[k] for k in z.files if k != "key"}
    data = _build(size, font_path, test_path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(cache) as fh:  # a file object also stops numpy from appending ".npz"
        np.savez(fh, key=np.array(key), **data)
    return data


class EmojiDataset(torch.utils.data.Dataset):
    """Noto Color Emoji images with their Unicode group as the label.

    Args:
        split: "train", "val", "test" or "all".
        size: output side in pixels (the bitmaps are 136x128; larger sizes are upsampled).
        cache_dir: where `emoji_{size}.npz` lives; default `$VISTOK_CACHE` or ~/.cache/vistok.
        augment: random crop (area 0.8-1) and horizontal flip; off for evaluation.
        seed: seed of the augmentation generator.

    Items are `(image (3, size, size) float32 in [-1, 1], label int)`.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 32,
        cache_dir: str | os.PathLike | None = None,
        augment: bool = False,
        seed: int = 0,
    ):
        if split not in (*SPLITS, "all"):
            raise DataError(f"unknown split {split!r}; known: {', '.join((*SPLITS, 'all'))}")
        data = load_emoji(size, cache_dir)
        keep = np.ones(len(data["labels"]), bool) if split == "all" else data["splits"] == split
        self.split, self.size, self.augment = split, size, augment
        self.images: np.ndarray = data["images"][keep]  # (n size size 3) uint8
        self.labels: np.ndarray = data["labels"][keep]  # (n,) int64
        self.names: list[str] = data["names"][keep].tolist()
        self.sequences: list[str] = data["sequences"][keep].tolist()
        self.splits: list[str] = data["splits"][keep].tolist()
        self.class_names: list[str] = data["class_names"].tolist()
        self.dropped: dict[str, int] = json.loads(str(data["dropped"]))
        self._rng = WorkerGenerator(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = to_tensor(self.images[index])  # (3 size size)
        if self.augment:
            x = random_crop_flip(x, self._rng())
        return x, int(self.labels[index])

    def record(self, index: int) -> tuple[np.ndarray, int, dict]:
        """(stored uint8 (size, size, 3) image, label, JSON-able metadata), un-augmented."""
        info = {
            "source": "noto-color-emoji",
            "name": self.names[index],
            "sequence": self.sequences[index],
            "split": self.splits[index],
            "original_size": [136, 128],
        }
        return self.images[index], int(self.labels[index]), info
