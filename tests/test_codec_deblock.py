"""`codec.deblock`: tile borders blended, the rest of the image untouched, and `vistok decode
--deblock` opt-in (a plain decode keeps its pixels)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.codec import Codec, read_header
from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.deblock import deblock, deblock_array


def _header(size, coded=None, tile=32) -> fmt.Header:
    coded = coded or size
    tiles = -(-coded[0] // tile) * -(-coded[1] // tile)
    return fmt.Header(bytes(8), size, tile, 64, (4096,), (8,) * tiles, coded)


def _blocks(width: int, height: int, tile: int = 32) -> np.ndarray:
    """Constant tiles of random grey levels: nothing but seams."""
    levels = np.random.default_rng(0).integers(0, 256, size=(-(-height // tile), -(-width // tile)))
    image = np.kron(levels, np.ones((tile, tile)))[:height, :width]
    return np.repeat(image[..., None], 3, axis=2).astype(np.uint8)


def test_borders_get_smoother_and_tile_insides_stay_exact():
    image = _blocks(96, 64)
    out = np.asarray(deblock(Image.fromarray(image), _header((96, 64))))
    for axis, at in ((1, [31, 63]), (0, [31])):
        jump = lambda x: np.abs(np.diff(x.astype(float), axis=axis)).take(at, axis).mean()  # noqa: E731, B023
        assert jump(out) < 0.3 * jump(image)
    # >= 6 px (the radius) from every border, the image's own edges included: untouched
    rows, cols = np.r_[0:26, 38:64], np.r_[0:26, 38:58, 70:96]
    assert np.array_equal(out[np.ix_(rows, cols)], image[np.ix_(rows, cols)])
    assert not np.array_equal(out[:, 26:38], image[:, 26:38])


def test_one_tile_and_the_resize_layout_are_returned_unchanged():
    image = Image.fromarray(_blocks(30, 20))
    assert deblock(image, _header((30, 20))) is image
    wide = Image.fromarray(_blocks(300, 20))
    assert deblock(wide, _header((300, 20), coded=(32, 32))) is wide


def test_borders_follow_a_resampled_canvas():
    image = _blocks(192, 64, tile=64)  # a canvas of 96x32 at scale 1/2: borders at x = 64, 128
    out = deblock_array(image, (np.array([64.0, 128.0]), np.array([])), radius=12, sigma=6)
    changed = np.nonzero((out != image).any(axis=(0, 2)))[0]
    assert changed.min() >= 64 - 12 and changed.max() < 128 + 12
    header = _header((192, 64), coded=(96, 32))
    assert np.array_equal(np.asarray(deblock(Image.fromarray(image), header)), out)


def test_cli_deblock_is_opt_in(tmp_path, capsys, one_thread):
    codec = Codec.from_pretrained("photo32", device="cpu")
    image = Image.fromarray(_blocks(64, 32))
    data = codec.encode_image(image, num_tokens=8)
    (tmp_path / "a.vtok").write_bytes(data)
    plain, blended = tmp_path / "plain.png", tmp_path / "blended.png"
    assert vistok(["decode", str(tmp_path / "a.vtok"), "-o", str(plain), "-q"]) == 0
    argv = ["decode", str(tmp_path / "a.vtok"), "-o", str(blended), "-q", "--deblock"]
    assert vistok(argv) == 0
    capsys.readouterr()
    plain, blended = np.asarray(Image.open(plain)), np.asarray(Image.open(blended))
    assert np.array_equal(plain, np.asarray(codec.decode_bytes(data)))
    expected = np.asarray(deblock(Image.fromarray(plain), read_header(data)[0]))
    assert np.array_equal(blended, expected) and not np.array_equal(blended, plain)
