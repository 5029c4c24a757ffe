"""Photo crops, image folders and the `build_dataset` spec parser."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tokenizers_vis.data.photos as photos_module
from tokenizers_vis.data.build import build_dataset, parse_spec
from tokenizers_vis.data.eet import EET_MAGIC, largest_jpeg
from tokenizers_vis.data.errors import DataError
from tokenizers_vis.data.folder import FolderDataset
from tokenizers_vis.data.photos import (
    PHOTO_SPLITS,
    PhotoCropDataset,
    photo_package,
    photo_sources,
)


def _check_item(x: torch.Tensor, y: int, size: int, num_classes: int) -> None:
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert isinstance(y, int) and 0 <= y < num_classes


def _write_tree(root: Path, classes=("cat", "dog"), per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c / "sub").mkdir(parents=True)
        for i in range(per_class):
            folder = root / c / ("sub" if i == 0 else "")
            arr = rng.integers(0, 256, (10 + i, 14, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / f"{i}.PNG")
    (root / ".hidden").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / ".hidden" / "x.png")
    (root / "notes.txt").write_text("not an image")


# --- photos -------------------------------------------------------------------------------


def test_photo_sources_are_offline_photos():
    sources = photo_sources()
    assert {"skimage/astronaut", "skimage/coffee", "skimage/chelsea"} <= set(sources)
    assert all(p.is_file() for p in sources.values())


def _jpeg(size: tuple[int, int], color=(10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def _eet(path: Path, entries: list[tuple[str, bytes, int]]) -> Path:
    """An EET archive (the layout eet.py reads) of (name, data, flags) entries."""
    start = 12 + 24 * len(entries)
    names = b"".join(name.encode() + b"\0" for name, _, _ in entries)
    directory, name_at, data_at = b"", start, start + len(names)
    for name, data, flags in entries:
        directory += struct.pack(
            ">6i", data_at, len(data), len(data), name_at, len(name) + 1, flags
        )
        name_at, data_at = name_at + len(name) + 1, data_at + len(data)
    header = struct.pack(">3i", EET_MAGIC, len(entries), 0)
    path.write_bytes(header + directory + names + b"".join(data for _, data, _ in entries))
    return path


def test_eet_gives_the_largest_jpeg_within_the_cap(tmp_path):
    edj = _eet(
        tmp_path / "a.edj",
        [
            ("edje/images/0", _jpeg((40, 20)), 0),
            ("edje/file", b"\x78\xdacompressed program", 1),  # compressed: skipped
            ("edje/images/1", _jpeg((20, 10)), 0),
            ("edje/images/2", _jpeg((64, 32)), 1),  # flagged compressed: skipped
        ],
    )
    assert Image.open(io.BytesIO(largest_jpeg(edj))).size == (40, 20)
    assert Image.open(io.BytesIO(largest_jpeg(edj, max_side=30))).size == (20, 10)
    assert Image.open(io.BytesIO(largest_jpeg(edj, max_side=5))).size == (20, 10)  # smallest
    (tmp_path / "bad.edj").write_bytes(b"\x1e\xe7\x0f\x42" + b"\xff" * 8)
    (tmp_path / "short.edj").write_bytes(b"\x1e\xe7")
    (tmp_path / "past.edj").write_bytes(struct.pack(">3i", EET_MAGIC, 5, 0))
    for name in ("bad.edj", "short.edj", "past.edj"):
        with pytest.raises(DataError, match="EET"):
            largest_jpeg(tmp_path / name)
    with pytest.raises(DataError, match="no JPEG"):
        largest_jpeg(_eet(tmp_path / "vector.edj", [("edje/file", b"program", 1)]))


def test_wallpaper_photos_are_picked_by_name_and_the_largest_size(tmp_path):
    lomiri, plasma = tmp_path / "backgrounds", tmp_path / "wallpapers"
    enlightenment = tmp_path / "enlightenment"
    lomiri.mkdir()
    enlightenment.mkdir()
    # photos, then artwork that must never be listed
    for stem in (
        "life_by_Aitzol_Berasategi",
        "Kleiber_by_Lukas_Baubkus",
        "umang_by_Abhishek_Mudgal",
    ):
        Image.new("RGB", (8, 6)).save(lomiri / f"{stem}.jpg")
    Image.new("RGB", (8, 6)).save(lomiri / "Fossa_by_Jasper_Roks.jpg")
    images = plasma / "Path" / "contents" / "images"
    images.mkdir(parents=True)
    for size in ("640x480", "2560x1600", "1920x1200"):
        Image.new("RGB", (8, 6)).save(images / f"{size}.jpg")
    (plasma / "Elarun" / "contents" / "images").mkdir(parents=True)  # a render: never listed
    for name in ("Bamboo", "Dunes", "Squiggle"):  # a photo, vector art, a drawing
        _eet(enlightenment / f"{name}.edj", [("edje/images/0", _jpeg((30, 20)), 0)])
    sources = photo_sources(tmp_path / "none", lomiri, plasma, enlightenment)
    wallpapers = {
        k: v for k, v in sources.items() if k.split("/")[0] not in ("skimage", "matplotlib")
    }
    assert wallpapers == {
        "lomiri/life": lomiri / "life_by_Aitzol_Berasategi.jpg",
        "lomiri/Kleiber": lomiri / "Kleiber_by_Lukas_Baubkus.jpg",
        "plasma/Path": images / "2560x1600.jpg",
        "enlightenment/Bamboo": enlightenment / "Bamboo.edj",
    }
    import tokenizers_vis.data.photos as photos

    photos._photo.cache_clear()
    try:
        assert photos._photo(enlightenment / "Bamboo.edj").size == (30, 20)
    finally:
        photos._photo.cache_clear()


def test_every_photo_is_credited_in_sources_md():
    text = (Path(photos_module.__file__).parent / "SOURCES.md").read_text()
    names = set(photo_sources()) | {n for split in PHOTO_SPLITS.values() for n in split}
    names |= {f"enlightenment/{n}" for n in photos_module.ENLIGHTENMENT_PHOTOS}
    names |= {f"lomiri/{s.split('_by_')[0]}" for s in photos_module.LOMIRI_PHOTOS}
    names |= {f"plasma/{n}" for n in photos_module.PLASMA_PHOTOS}
    for name in sorted(names):
        stem = name.split("/", 1)[1]
        # by vistok name, or (MATE, scikit-image, matplotlib) by file name
        assert f"`{name}`" in text or f"`{stem}." in text, f"{name} is not in SOURCES.md"
        assert photo_package(name) in text, name


def test_photos_longer_than_the_cap_are_reduced_on_load(tmp_path, monkeypatch):
    import tokenizers_vis.data.photos as photos

    monkeypatch.setattr(photos, "MAX_SIDE", 100)
    photos._photo.cache_clear()
    wide, small = tmp_path / "wide.png", tmp_path / "small.png"
    Image.new("RGB", (400, 50), (200, 10, 10)).save(wide)
    Image.new("RGB", (90, 60)).save(small)
    try:
        assert photos._photo(wide).size == (100, 12)
        assert photos._photo(small).size == (90, 60)  # below the cap: untouched
        assert photos._photo(wide).getpixel((50, 6)) == (200, 10, 10)
    finally:
        photos._photo.cache_clear()


def test_photo_splits_held_out_by_source():
    pools = {s: set(PhotoCropDataset(s, 8)._pool) for s in ("train", "val", "test")}
    assert not (pools["train"] & pools["val"] or pools["train"] & pools["test"])
    assert not pools["val"] & pools["test"]
    names = PhotoCropDataset("val", 8).class_names
    assert {names[i] for i in pools["val"]} <= set(PHOTO_SPLITS["val"])
    # Held-out photos that share a package with training photos are only the eight photo32
    # was measured on; every photo held out since comes from a package training never sees.
    train_packages = {
        photo_package(n) for n in photo_sources() if n not in sum(PHOTO_SPLITS.values(), ())
    }
    shared = {
        n for split in PHOTO_SPLITS.values() for n in split if photo_package(n) in train_packages
    }
    assert shared == {
        "skimage/coffee",
        "mate/RainDrops",
        "lomiri/life",
        "plasma/Path",
        "skimage/chelsea",
        "mate/Dune",
        "lomiri/friends",
        "plasma/EveningGlow",
    }
    assert {photo_package(n) for n in PHOTO_SPLITS["val"][4:]} == {
        "lomiri-wallpapers-20.04",
        "matplotlib",
    }


def test_photo_eval_crops_deterministic_train_random():
    a, b = PhotoCropDataset("val", 16, seed=3), PhotoCropDataset("val", 16, seed=3)
    x, y = a[5]
    _check_item(x, y, 16, len(a.class_names))
    assert torch.equal(x, b[5][0]) and torch.equal(x, a[5][0])
    assert not torch.equal(x, PhotoCropDataset("val", 16, seed=4)[5][0])
    train = PhotoCropDataset("train", 16, crops_per_epoch=4, seed=0)
    assert len(train) == 4
    assert not torch.equal(train[0][0], train[0][0])  # a new crop every draw


def _crop_side(ds: PhotoCropDataset, index: int) -> int:
    left, _, right, _ = ds.record(index)[2]["crop_box"]
    return right - left


def test_photo_zoom_crops_span_native_pixels_to_the_whole_photo():
    # zoom 1: the crop is the photo's own pixels, copied exactly.
    native = PhotoCropDataset("test", 8, zoom=(1, 1), crops_per_epoch=20)
    for i in range(20):
        image, label, info = native.record(i)
        left, top, right, bottom = info["crop_box"]
        assert right - left == bottom - top == 8
        source = np.asarray(photos_module._photo(native.paths[label]))
        assert np.array_equal(image, source[top:bottom, left:right])
    # zoom 1..16: sides log-uniform in [8, 128] (both test photos are larger): about half the
    # crops below the geometric mean 32 px, a few at each end.
    multi = PhotoCropDataset("test", 8, zoom=(1, 16), crops_per_epoch=400)
    sides = np.array([_crop_side(multi, i) for i in range(400)])
    assert sides.min() >= 8 and sides.max() <= 128
    assert 0.4 < (sides < 32).mean() < 0.6
    assert (sides < 12).mean() > 0.05 and (sides > 90).mean() > 0.05
    # an upper bound beyond the photo is capped at its shorter side, which some crops near
    huge = PhotoCropDataset("test", 8, zoom=(1, 1000), crops_per_epoch=200)
    fraction = np.array(
        [_crop_side(huge, i) / min(huge.record(i)[2]["original_size"]) for i in range(200)]
    )
    assert fraction.max() <= 1 and (fraction > 0.7).any()
    with pytest.raises(DataError, match="zoom"):
        PhotoCropDataset("train", 8, zoom=(2, 1))


def test_photo_record_metadata_and_scale():
    ds = PhotoCropDataset("test", 8, scale=(1.0, 1.0), crops_per_epoch=3)
    image, label, info = ds.record(0)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    w, h = info["original_size"]
    left, top, right, bottom = info["crop_box"]
    assert right - left == bottom - top == min(w, h)  # scale 1: the largest square
    assert info["split"] == "test" and info["name"] == ds.class_names[label]
    with pytest.raises(ValueError):
        PhotoCropDataset("train", 8, scale=(0.0, 1.0))
    with pytest.raises(IndexError):
        ds[3]


# --- folders ------------------------------------------------------------------------------


def test_folder_labels_from_sorted_class_folders(tmp_path):
    _write_tree(tmp_path)
    ds = FolderDataset(tmp_path, size=8)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 6
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    for i in range(len(ds)):
        _check_item(*ds[i], 8, 2)
    image, label, info = ds.record(0)
    assert image.shape == (8, 8, 3) and info["original_size"] == [14, 11]


def test_folder_split_subdirectories_win(tmp_path):
    _write_tree(tmp_path / "train")
    _write_tree(tmp_path / "val", classes=("cat",), per_class=1)
    assert len(FolderDataset(tmp_path, "val", 8)) == 1
    assert len(FolderDataset(tmp_path, "train", 8)) == 6
    with pytest.raises(FileNotFoundError, match="no test/ folder"):
        FolderDataset(tmp_path, "test", 8)  # never hash-split the train/ files into test


def test_folder_hash_split_partitions_files(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    parts = {}
    for s in ("train", "val", "test"):
        try:
            parts[s] = set(FolderDataset(tmp_path, s, 4).files)
        except FileNotFoundError:
            parts[s] = set()
    assert sum(map(len, parts.values())) == 60 and len(parts["train"]) > 40
    assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"])
    assert FolderDataset(tmp_path, "all", 4).class_names == ["."]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        FolderDataset(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no readable images"):
        FolderDataset(tmp_path)


# --- specs --------------------------------------------------------------------------------


def test_parse_spec_forms():
    assert parse_spec("emoji") == ("emoji", {})
    assert parse_spec("folder:/data/x") == ("folder", {"root": "/data/x"})
    assert parse_spec("shards:/s/train-*.tar") == ("shards", {"urls": "/s/train-*.tar"})
    assert parse_spec({"name": "photos", "scale": [0.5, 1]}) == ("photos", {"scale": [0.5, 1]})
    # The dict form as JSON text, as a command line passes it.
    assert parse_spec(' {"name": "photos", "zoom": [1, 32]}') == ("photos", {"zoom": [1, 32]})


@pytest.mark.parametrize(
    ("spec", "match"),
    [('{"name": "photos",', "not valid JSON"), ("[1]", "unknown dataset"),
     ('{"name": "photos"' + " " * 70000 + "}", "at most 65536"), ("{" * 5, "not valid JSON")],
)  # fmt: skip
def test_bad_json_specs_are_data_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


@pytest.mark.parametrize("spec", ["imagenet", {"root": "/x"}, "/some/dir"])
def test_unknown_specs_list_known_ones(spec):
    with pytest.raises(ValueError, match="known: emoji, photos, folder:<root>, shards:<urls>"):
        parse_spec(spec)


@pytest.mark.parametrize("spec", ["folder", "folder:", "shards", {"name": "folder"}])
def test_path_specs_need_a_path(spec):
    with pytest.raises(ValueError, match="needs a path"):
        parse_spec(spec)


def test_build_dataset_folder_and_photos(tmp_path):
    _write_tree(tmp_path)
    ds = build_dataset(f"folder:{tmp_path}", "all", 8)
    assert isinstance(ds, FolderDataset) and len(ds) == 6
    ds = build_dataset({"name": "folder", "root": str(tmp_path), "augment": True}, "all", 8)
    assert ds.augment
    ph = build_dataset("photos", "val", 8, crops_per_epoch=2)
    assert isinstance(ph, PhotoCropDataset) and len(ph) == 2
    with pytest.raises(ValueError, match="size"):
        build_dataset("photos", "val", 0)
