"""Real malformed and unusual image files: decoded correctly, or skipped with a reason."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tokenizers_vis.data.folder import FolderDataset
from tokenizers_vis.data.transforms import BadImageError, BadImageWarning, load_rgb


def _noise(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg_bytes(arr: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with no pixel data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def write_bad_files(root: Path) -> dict[str, Path]:
    """One file per bad case (skipped) in root; the unusual-but-valid ones are in `good_*`."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "unreadable": root / "unreadable.png",
        "zero_byte": root / "zero.jpg",
        "truncated_jpeg": root / "truncated.jpg",
        "truncated_png": root / "truncated.png",
        "huge": root / "huge.png",
    }
    files["unreadable"].write_bytes(b"this is not an image at all" * 8)
    files["zero_byte"].write_bytes(b"")
    full = _jpeg_bytes(_noise(64, 64))
    files["truncated_jpeg"].write_bytes(full[: len(full) // 2])
    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, format="PNG")
    files["truncated_png"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    files["huge"].write_bytes(_png_header_only(100_000, 100_000))
    return files


def write_unusual_files(root: Path) -> dict[str, Path]:
    """Valid files in the modes that need care: 16-bit, palette+alpha, CMYK, RGBA, LA, L."""
    root.mkdir(parents=True, exist_ok=True)
    gray16 = np.tile(np.array([0, 32896, 65535], np.uint16), (4, 1))  # (4, 3)
    Image.fromarray(gray16).save(root / "gray16.png")
    pal = Image.new("P", (3, 2))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putdata([0, 1, 0, 1, 0, 1])
    pal.save(root / "palette.png", transparency=1)  # index 1 (blue) is transparent
    (root / "cmyk.jpg").write_bytes(_jpeg_bytes(np.full((8, 8, 3), (255, 0, 0), np.uint8), "CMYK"))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # half-transparent red
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    la = np.stack([np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)], -1)  # transparent black
    Image.fromarray(la, "LA").save(root / "la.png")
    Image.fromarray(np.full((3, 3), 77, np.uint8), "L").save(root / "gray.png")
    return {p.stem: p for p in root.iterdir()}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unreadable", "unreadable"),
        ("zero_byte", "empty"),
        ("truncated_jpeg", "truncated"),
        ("truncated_png", "truncated"),
        ("huge", "too large"),
    ],
)
def test_bad_files_raise_bad_image_error(tmp_path, case, reason):
    path = write_bad_files(tmp_path)[case]
    with pytest.raises(BadImageError, match=reason):
        load_rgb(path)
    with pytest.raises(BadImageError):
        load_rgb(path.read_bytes())


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError, match="not a file"):
        load_rgb(tmp_path / "nope.png")


def test_unusual_modes_convert_correctly(tmp_path):
    f = write_unusual_files(tmp_path)
    g16 = np.asarray(load_rgb(f["gray16"]))
    assert g16.shape == (4, 3, 3) and g16[0, :, 0].tolist() == [0, 128, 255]
    pal = np.asarray(load_rgb(f["palette"]))
    assert pal[0, 0].tolist() == [255, 0, 0] and pal[0, 1].tolist() == [255, 255, 255]
    cmyk = np.asarray(load_rgb(f["cmyk"])).astype(int)
    assert cmyk[..., 0].min() > 230 and cmyk[..., 1:].max() < 25  # still red
    assert np.asarray(load_rgb(f["rgba"]))[0, 0].tolist() == [255, 127, 127]  # red over white
    assert np.asarray(load_rgb(f["la"]))[0, 0].tolist() == [255, 255, 255]
    gray = np.asarray(load_rgb(f["gray"]))
    assert gray.shape == (3, 3, 3) and (gray == 77).all()
    for path in f.values():
        assert load_rgb(path).mode == "RGB"
    Image.new("RGB", (2, 1), (9, 9, 9)).save(tmp_path / "key.png", transparency=(9, 9, 9))
    assert np.asarray(load_rgb(tmp_path / "key.png"))[0, 0].tolist() == [255, 255, 255]


def test_large_jpeg_is_downscaled_and_large_png_skipped(tmp_path):
    (tmp_path / "big.jpg").write_bytes(_jpeg_bytes(_noise(64, 64)))
    Image.fromarray(_noise(64, 64)).save(tmp_path / "big.png")
    im = load_rgb(tmp_path / "big.jpg", max_pixels=1000)
    assert im.size[0] * im.size[1] <= 1000 and im.size == (16, 16)  # DCT scale 1/4
    with pytest.raises(BadImageError, match="too large"):
        load_rgb(tmp_path / "big.png", max_pixels=1000)


def test_exif_rotation_is_applied(tmp_path):
    im = Image.fromarray(_noise(4, 8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rot.jpg").size == (4, 8)


def test_folder_dataset_skips_bad_files_with_counted_warning(tmp_path):
    write_bad_files(tmp_path / "bad")
    write_unusual_files(tmp_path / "odd")
    with pytest.warns(BadImageWarning, match="3 bad files"):
        ds = FolderDataset(tmp_path, size=8)
    # Header checks drop zero-byte, unreadable and the bomb; truncated files pass the header.
    assert ds.skipped == {
        "empty (zero bytes)": 1,
        "unreadable": 1,
        "too large (decompression-bomb guard)": 1,
    }
    assert len(ds) == 2 + 6 and ds.class_names == ["bad", "odd"]
    with pytest.warns(BadImageWarning, match="truncated"):
        items = [ds[i] for i in range(len(ds))]  # truncated ones fall back to the next image
    assert all(x.shape == (3, 8, 8) for x, _ in items)
