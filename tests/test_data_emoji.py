"""Emoji: the full Noto Color Emoji set, nine Unicode groups, leak-free splits, disk cache."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import torch

from tokenizers_vis.data.emoji import EMOJI_FONT, EmojiDataset, emoji_split, load_emoji

pytestmark = pytest.mark.skipif(not EMOJI_FONT.is_file(), reason="fonts-noto-color-emoji missing")

SIZE = 16
SKIN_TONES = {f"{c:X}" for c in range(0x1F3FB, 0x1F400)}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # One folder per session, shared by every test module: the first render (~3 s) is paid once.
    return tmp_path_factory.getbasetemp() / "vistok-cache"


@pytest.fixture(scope="module")
def data(cache_dir):
    return load_emoji(SIZE, cache_dir)


def test_count_and_groups(data):
    assert data["images"].shape[1:] == (SIZE, SIZE, 3) and data["images"].dtype == np.uint8
    assert len(data["labels"]) >= 3800
    assert data["class_names"].tolist() == [
        "smileys",
        "people",
        "animals_nature",
        "food_drink",
        "travel_places",
        "activities",
        "objects",
        "symbols",
        "flags",
    ]
    counts = Counter(data["labels"].tolist())
    assert sorted(counts) == list(range(9)) and min(counts.values()) >= 80
    assert len(set(data["sequences"].tolist())) == len(data["sequences"])  # one image per glyph


def test_known_emoji_labels_and_names(data):
    by_seq = dict(zip(data["sequences"].tolist(), range(len(data["labels"])), strict=True))
    cn = data["class_names"].tolist()
    expect = {
        "1F600": ("smileys", "grinning face"),
        "1F44B 1F3FD": ("people", "waving hand: medium skin tone"),
        "1F415": ("animals_nature", "dog"),
        "1F34E": ("food_drink", "red apple"),
        "2708": ("travel_places", "airplane"),
        "26BD": ("activities", "soccer ball"),
        "1F4A1": ("objects", "light bulb"),
        "2764": ("smileys", "red heart"),
        "1F1EF 1F1F5": ("flags", "flag: Japan"),
        "1F426 200D 1F525": ("animals_nature", "phoenix"),  # Emoji 15.1
        "1F344 200D 1F7EB": ("food_drink", "brown mushroom"),
        "1F3C3 1F3FB 200D 27A1": ("people", "person running facing right: light skin tone"),
    }
    for seq, (group, name) in expect.items():
        i = by_seq[seq]
        assert (cn[data["labels"][i]], data["names"][i]) == (group, name), seq


def test_components_dropped_and_counted(data):
    import json

    dropped = json.loads(str(data["dropped"]))
    assert dropped == {"component": 9, "not_an_emoji": 39}
    assert "1F3FB" not in set(data["sequences"].tolist())  # the bare skin-tone swatch


def test_white_background(data):
    corners = data["images"][:, [0, 0, -1, -1], [0, -1, 0, -1]]  # (n 4 3)
    assert (corners.reshape(-1, 12).min(1) >= 200).mean() > 0.9


def test_splits_disjoint_deterministic_roughly_90_5_5(data):
    splits = data["splits"].tolist()
    assert splits == [emoji_split(s) for s in data["sequences"].tolist()]
    counts = Counter(splits)
    n = len(splits)
    assert 0.85 < counts["train"] / n < 0.95 and counts["val"] > 100 and counts["test"] > 100
    seqs = {
        sp: {s for s, x in zip(data["sequences"], splits, strict=True) if x == sp}
        for sp in ("train", "val", "test")
    }
    assert not (
        seqs["train"] & seqs["val"] or seqs["train"] & seqs["test"] or seqs["val"] & seqs["test"]
    )


def test_skin_tone_variants_share_a_split(data):
    split_of_base: dict[str, set[str]] = {}
    for seq, split in zip(data["sequences"].tolist(), data["splits"].tolist(), strict=True):
        base = " ".join(c for c in seq.split() if c not in SKIN_TONES)
        split_of_base.setdefault(base, set()).add(split)
    assert all(len(s) == 1 for s in split_of_base.values())
    assert emoji_split("1F44B 1F3FF") == emoji_split("1F44B") == emoji_split((0x1F44B, 0xFE0F))


def test_dataset_items(cache_dir, data):
    ds = EmojiDataset("val", SIZE, cache_dir=cache_dir)
    x, y = ds[0]
    assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0 and isinstance(y, int) and 0 <= y < 9
    assert len(ds) == int((data["splits"] == "val").sum()) == len(ds.names) == len(ds.labels)
    assert ds.class_names[0] == "smileys" and set(ds.splits) == {"val"}
    total = sum(len(EmojiDataset(s, SIZE, cache_dir=cache_dir)) for s in ("train", "val", "test"))
    assert total == len(EmojiDataset("all", SIZE, cache_dir=cache_dir))
    with pytest.raises(ValueError, match="known"):
        EmojiDataset("bogus", SIZE, cache_dir=cache_dir)


def test_augment_is_seeded_and_off_by_default(cache_dir):
    plain = EmojiDataset("test", SIZE, cache_dir=cache_dir)
    a = EmojiDataset("test", SIZE, cache_dir=cache_dir, augment=True, seed=1)
    b = EmojiDataset("test", SIZE, cache_dir=cache_dir, augment=True, seed=1)
    xa = torch.stack([a[i][0] for i in range(8)])
    assert torch.equal(xa, torch.stack([b[i][0] for i in range(8)]))
    assert not torch.equal(xa, torch.stack([plain[i][0] for i in range(8)]))
    assert torch.equal(plain[0][0], plain[0][0])


def test_cache_is_fast_and_atomic(cache_dir, data):
    start = time.perf_counter()
    again = load_emoji(SIZE, cache_dir)
    assert time.perf_counter() - start < 1.0
    assert np.array_equal(again["images"], data["images"])
    assert [p.name for p in cache_dir.iterdir() if p.name.endswith(".tmp")] == []
    assert (cache_dir / f"emoji_{SIZE}.npz").is_file()


def test_stale_cache_is_rebuilt(tmp_path, cache_dir, monkeypatch):
    import shutil

    from tokenizers_vis.data import emoji

    cache = tmp_path / f"emoji_{SIZE}.npz"
    shutil.copy(cache_dir / cache.name, cache)
    monkeypatch.setattr(emoji, "_build", lambda *a: pytest.fail("current cache was rebuilt"))
    load_emoji(SIZE, tmp_path)
    with np.load(cache) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(cache, **{**arrays, "key": np.array("v0:an older font")})
    fresh = {k: v[:1] if v.ndim else v for k, v in arrays.items() if k != "key"}
    monkeypatch.setattr(emoji, "_build", lambda *a: fresh)
    assert len(load_emoji(SIZE, tmp_path)["images"]) == 1  # rebuilt ...
    with np.load(cache) as z:
        assert str(z["key"]) == str(arrays["key"])  # ... and re-keyed to the current font


def test_env_var_picks_cache_dir(monkeypatch, cache_dir):
    from tokenizers_vis.data.emoji import default_cache_dir

    monkeypatch.setenv("VISTOK_CACHE", str(cache_dir))
    assert default_cache_dir() == cache_dir
    assert len(EmojiDataset("test", SIZE)) > 100


def test_missing_font_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="fonts-noto-color-emoji"):
        load_emoji(SIZE, tmp_path, font_path=tmp_path / "missing.ttf")
