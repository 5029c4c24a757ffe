"""`tokenizers_vis.codec.Codec` on real files of every mode and size, with tiny tokenizers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from einops import rearrange
from PIL import Image
from test_codec_format import documented_size

import tokenizers_vis as tv
from tokenizers_vis.codec import Codec, EncodeOptions, WrongTokenizerError, read_header
from tokenizers_vis.codec.layout import tiles_to_image, to_tiles
from tokenizers_vis.codec.search import smallest_lengths
from tokenizers_vis.data.transforms import load_rgb, to_tensor, to_uint8


def _noise(w: int, h: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_images(root) -> dict[str, tuple]:
    """One real file per mode the codec must convert: {name: (path, displayed (w, h))}."""
    root.mkdir(parents=True, exist_ok=True)
    files = {}

    def save(name, image, size=None, **kw):
        path = root / name
        image.save(path, **kw)
        files[path.stem] = (path, size or image.size)

    save("rgb.png", Image.fromarray(_noise(37, 23)))
    save("photo.jpg", Image.fromarray(_noise(20, 300, 1)), quality=90)
    save("lossless.webp", Image.fromarray(_noise(33, 17, 2)), lossless=True)
    rgba = _noise(31, 9, 3, channels=4)
    rgba[..., 3] = np.linspace(0, 255, 31, dtype=np.uint8)[None, :]
    save("rgba.png", Image.fromarray(rgba, "RGBA"))
    save("gray.png", Image.fromarray(_noise(16, 16, 4, channels=1), "L"))
    deep = np.random.default_rng(5).integers(0, 65536, (21, 19), dtype=np.uint16)
    save("deep16.png", Image.fromarray(deep))
    palette = Image.fromarray(_noise(25, 10, 6, channels=1) % 4, "L").convert("P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * 756)
    save("palette.png", palette, transparency=2)
    save("cmyk.jpg", Image.fromarray(_noise(12, 40, 7)).convert("CMYK"), quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("rotated.jpg", Image.fromarray(_noise(30, 10, 8)), size=(10, 30), exif=exif)
    save("dot.png", Image.fromarray(_noise(1, 1, 9)))
    return files


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch.manual_seed(0)
    return tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def codec(tiny_dir, one_thread) -> Codec:
    return Codec.from_pretrained(tiny_dir, device="cpu", batch_size=5)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("images"))


def reference(tok: tv.Tokenizer, image: Image.Image, k: int) -> np.ndarray:
    """What decode(encode(image)) must be: every tile through the tokenizer, reassembled."""
    tiles = to_tiles(image, image.size, tok.image_size)  # (T S S 3)
    x = torch.stack([to_tensor(t) for t in tiles])  # (T 3 S S)
    recon = to_uint8(tok.decode(tok.encode(x, num_tokens=k)))  # (T 3 S S)
    back = tiles_to_image(rearrange(recon, "b c h w -> b h w c").numpy(), image.size, image.size)
    return np.asarray(back)


@pytest.mark.parametrize(
    "name",
    ["rgb", "photo", "lossless", "rgba", "gray", "deep16", "palette", "cmyk", "rotated", "dot"],
)
def test_every_mode_round_trips_at_its_own_size(codec, images, name):
    path, displayed = images[name]
    data = codec.encode_image(path, num_tokens=3)
    header, payload = read_header(data)
    assert header.size == displayed  # EXIF rotation applied: 30x10 pixels display as 10x30
    assert len(data) == documented_size(header)
    assert payload == -(-header.num_tiles * 3 * 7 // 8)  # 3 tokens of 7 bits (FSQ 5^3) a tile
    out = codec.decode_bytes(data)
    assert out.mode == "RGB" and out.size == displayed
    np.testing.assert_array_equal(np.asarray(out), reference(codec.tokenizer, load_rgb(path), 3))


def test_in_memory_images_convert_like_files(codec, images):
    rgba_path = images["rgba"][0]
    with Image.open(rgba_path) as im:
        assert codec.encode_image(im) == codec.encode_image(rgba_path)
    composited = np.asarray(load_rgb(rgba_path)).astype(int)
    alpha = np.asarray(Image.open(rgba_path))[..., 3:].astype(int)
    rgb = np.asarray(Image.open(rgba_path))[..., :3].astype(int)
    expected = (rgb * alpha + 255 * (255 - alpha)) / 255  # alpha composited on white
    assert np.abs(composited - expected).max() <= 1


def test_batching_never_changes_the_bytes(tiny_dir, images, one_thread):
    pictures = [load_rgb(p) for p, _ in images.values()]
    small = Codec.from_pretrained(tiny_dir, device="cpu", batch_size=1)
    large = Codec.from_pretrained(tiny_dir, device="cpu", batch_size=64)
    a = [e.data for e in small.encode_images(pictures, EncodeOptions(num_tokens=5))]
    b = [e.data for e in large.encode_images(pictures, EncodeOptions(num_tokens=5))]
    assert a == b
    for data, picture in zip(a, pictures, strict=True):
        assert read_header(data)[0].size == picture.size


def test_inputs_are_streamed(codec):
    pulled = []

    def items():
        for i in range(50):
            pulled.append(i)
            yield i, Image.new("RGB", (16, 16), (i, 0, 0))  # one tile each

    stream = codec.encode_stream(items())
    first_tag, _ = next(stream)
    assert first_tag == 0 and len(pulled) <= codec.batch_size + 1
    assert [tag for tag, _ in stream] == list(range(1, 50))


@pytest.mark.parametrize("preset", ["tiny_cpu_vq", "tiny_cpu_fvq"])
def test_other_quantizers_round_trip(preset, tmp_path, one_thread):
    tok = tv.create_tokenizer(preset).eval()  # a training-mode VQ would update its codebook
    codec = Codec.from_pretrained(tok.save_pretrained(tmp_path), device="cpu")
    image = Image.fromarray(_noise(20, 40))
    data = codec.encode_image(image, num_tokens=4)
    header = read_header(data)[0]
    assert header.vocab_sizes == tok.vocab_sizes  # (64,) or (64, 64): g sub-codebooks
    assert len(data) == documented_size(header)
    np.testing.assert_array_equal(np.asarray(codec.decode_bytes(data)), reference(tok, image, 4))


def test_num_steps_and_seed_reach_a_sampling_decoder(tmp_path, one_thread):
    decoder = {"name": "rectified_flow", "patch_size": 4, "width": 32, "depth": 1, "num_heads": 2}
    tok = tv.create_tokenizer("tiny_cpu_fsq", decoder=decoder)
    with torch.no_grad():  # adaLN-Zero starts at zero velocity: steps would not matter yet
        for p in tok.decoder.parameters():
            p.normal_(0, 0.2)
    codec = Codec.from_pretrained(tok.save_pretrained(tmp_path), device="cpu")
    data = codec.encode_image(Image.fromarray(_noise(16, 16)), num_tokens=2)
    one, again = (np.asarray(codec.decode_bytes(data, num_steps=1)) for _ in range(2))
    np.testing.assert_array_equal(one, again)
    assert not np.array_equal(one, np.asarray(codec.decode_bytes(data, num_steps=3)))
    assert not np.array_equal(one, np.asarray(codec.decode_bytes(data, num_steps=1, seed=5)))


def test_another_tokenizer_is_refused(codec, tmp_path):
    torch.manual_seed(1)
    other = Codec.from_pretrained(tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(tmp_path))
    data = other.encode_image(Image.new("RGB", (8, 8)))
    with pytest.raises(WrongTokenizerError, match=f"written by tokenizer {other.identity.hex()}"):
        codec.decode_bytes(data)


def test_bad_options_are_refused(codec):
    with pytest.raises(ValueError, match=r"1\.\.8"):
        codec.encode_image(Image.new("RGB", (8, 8)), num_tokens=9)
    with pytest.raises(ValueError, match="not both"):
        codec.encode_image(Image.new("RGB", (8, 8)), num_tokens=2, target_psnr=20.0)


def test_bisection_finds_the_smallest_k_in_few_passes():
    """A synthetic decoder whose PSNR rises with k (as a tokenizer's does) per tile."""
    torch.manual_seed(0)
    b, max_tokens = 40, 64
    target = torch.full((b, 3, 4, 4), 128, dtype=torch.uint8)
    needed = torch.randint(1, 80, (b,))  # tile i meets the target from k = needed[i] (> K: never)
    passes = []

    def decode(ids, lengths):
        passes.append(len(lengths))
        index = ids[:, 0, 0]  # the tile's own index, carried in its ids
        error = torch.where(lengths >= needed[index], 1, 20).to(torch.uint8)  # small or large
        return target[index] + error[:, None, None, None]

    ids = torch.arange(b)[:, None, None].expand(b, max_tokens, 1)
    extents = torch.full((b, 2), 4)
    lengths, met = smallest_lengths(decode, ids, target, extents, target_psnr=40.0)
    assert torch.equal(met, needed <= max_tokens)
    assert torch.equal(lengths, torch.where(met, needed, max_tokens))
    assert len(passes) <= 1 + 6  # one pass at K, then ceil(log2 64) bisection passes


def test_a_model_name_is_resolved_once_per_codec(monkeypatch, one_thread):
    """`vistok encode --model emoji32 --entropy static`: one resolution, then the checked
    directory is what loading, the identity hash and the static table use."""
    from tokenizers_vis import hub

    calls = []

    def spy(name_or_dir, shipped_dir=hub.SHIPPED_DIR):
        calls.append(str(name_or_dir))
        return resolve(name_or_dir, shipped_dir)

    resolve = hub.resolve
    monkeypatch.setattr(hub, "resolve", spy)
    codec = Codec.from_pretrained("emoji32", entropy="static", device="cpu")
    assert calls == ["emoji32"]
    data = codec.encode_image(Image.fromarray(_noise(32, 32)), num_tokens=4)
    assert read_header(data)[0].tokenizer_id == codec.identity
    assert calls == ["emoji32"]  # encoding resolves nothing


def test_identity_hashes_only_checked_regular_files(tiny_dir, tmp_path):
    """A FIFO for the weights is refused by the check, never opened (reading it would block)."""
    import os
    import shutil

    from tokenizers_vis.codec.identity import directory_identity
    from tokenizers_vis.hub import PretrainedError

    broken = tmp_path / "fifo"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").unlink()
    os.mkfifo(broken / "model.safetensors")
    with pytest.raises(PretrainedError, match="model.safetensors is not a regular file"):
        directory_identity(broken)
    (broken / "config.json").write_text("{}")
    with pytest.raises(PretrainedError, match="format_version"):
        directory_identity(broken)  # the config is checked as loading checks it
    found = tv.Tokenizer.open_pretrained(tiny_dir)
    assert directory_identity(tiny_dir) == directory_identity(found)
