"""A converted model is an ordinary pretrained directory: everything downstream works on it.

`renamed_tiny` (the test-only family of test_convert.py: tiny_cpu_vq in other key names) stands
in for a published family: convert, then encode / decode, a .vtok round trip through the codec
API (the identity is the converted directory's), `refine_tokens`, `vistok eval tokenizer`,
`vistok pretokenize` and GPT steps on its tokens, and the ONNX export of its ViT decoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_convert import PRESET, RenamedTiny, published, write

import tokenizers_vis as tv
from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.codec import Codec, WrongTokenizerError, read_header
from tokenizers_vis.codec.identity import directory_identity, model_identity
from tokenizers_vis.convert import FAMILIES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def original() -> tv.Tokenizer:
    """tiny_cpu_vq with weights spread so ids vary by image and position (a fresh init maps
    every image to a handful of codes, and no test could tell a wrong mapping from a right one)."""
    torch.manual_seed(0)
    tok = tv.create_tokenizer(PRESET).eval()
    with torch.no_grad():
        tok.encoder.patch_embed.proj.weight.mul_(20)
        tok.encoder.to_codes.weight.mul_(30)
        tok.quantizer.codebook.normal_(generator=torch.Generator().manual_seed(2))
        tok.decoder.token_in.weight.mul_(10)
    return tok


@pytest.fixture(scope="module")
def converted(original: tv.Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("convert")
    src = write(root / "published" / "model.safetensors", published(original))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(FAMILIES, RenamedTiny.name, RenamedTiny())
        return tv.convert(RenamedTiny.name, src, root / "converted")


def images(n: int = 6, seed: int = 3) -> torch.Tensor:
    """(n 3 16 16) in [-1, 1]: smooth ramps plus noise, so ids differ across the batch."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-1, 1, 16)
    smooth = torch.rand(n, 3, 1, 1, generator=g) * ramp[None, None, :, None]  # (n 3 16 1)
    return (0.6 * smooth + 0.4 * (torch.rand(n, 3, 16, 16, generator=g) * 2 - 1)).clamp(-1, 1)


def test_encode_decode_as_the_original(converted, original):
    tok = tv.Tokenizer.from_pretrained(converted)
    x = images()
    ids = tok.encode(x).ids  # (6 8 1)
    assert torch.equal(ids, original.encode(x).ids)
    assert len(torch.unique(ids)) > 8, "ids do not vary: the test could not tell maps apart"
    for k in (1, 4, 8):
        assert torch.equal(tok.decode(ids[:, :k]), original.decode(ids[:, :k]))


def test_vtok_round_trip_carries_the_converted_identity(converted, original, tmp_path):
    codec = Codec.from_pretrained(converted, device="cpu")
    assert codec.identity == directory_identity(converted) != model_identity(original)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 37, 3), np.uint8))
    data = codec.encode_image(picture, num_tokens=4)
    assert read_header(data)[0].tokenizer_id == directory_identity(converted)
    decoded = codec.decode_bytes(data)
    assert decoded.size == (37, 20)
    # The same weights under the converted identity decode it to the same pixels ...
    same = Codec(original, identity=directory_identity(converted), device="cpu")
    assert np.array_equal(np.asarray(same.decode_bytes(data)), np.asarray(decoded))
    # ... while the original's own identity is another tokenizer's: refused, not misdecoded.
    with pytest.raises(WrongTokenizerError):
        Codec(original, device="cpu").decode_bytes(data)


def test_refine_tokens(converted):
    tok = tv.Tokenizer.from_pretrained(converted)
    x = images()
    plain = tok.encode(x, num_tokens=4)
    refined = tv.refine_tokens(tok, x, num_tokens=4, steps=10)
    assert refined.ids.shape == plain.ids.shape == (6, 4, 1)

    def error(tokens: tv.Tokens) -> float:
        return float((tok.decode(tokens) - x).square().mean())

    assert error(refined) <= error(plain)
    assert torch.equal(tv.refine_tokens(tok, x, num_tokens=4, steps=0).ids, plain.ids)


def test_eval_tokenizer(converted, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["eval", "tokenizer", "--model", str(converted), "--data", "emoji", "--out", str(out)]
    args += ["--no-fid", "--perceptual", "none", "--quiet", "--num-images", "8"]
    args += ["--batch-size", "8", "--codecs", "none", "--cache-dir", str(tmp_path / "cache")]
    assert vistok(args) == 0, capsys.readouterr().err
    rows = json.loads((out / "report.json").read_text())["vistok"]
    assert [r["k"] for r in rows] == [1, 2, 4, 8]
    assert all(np.isfinite(r["psnr"]) for r in rows)
    assert rows[0]["bytes_per_image"] == pytest.approx(6 / 8)  # 64 codes: 6 bits a token


def test_pretokenize_and_gpt_steps(converted, tmp_path):
    from generation import GPT, gpt_spec
    from generation.cli import pretokenize
    from generation.data import TokenDataModule
    from generation.system import token_losses

    shards = tmp_path / "shards"
    args = ["--model", str(converted), "--data", "emoji", "-o", str(shards)]
    assert pretokenize.main([*args, "--num-images", "32", "--quiet", "--device", "cpu"]) == 0
    data = TokenDataModule(str(shards), batch_size=16, shuffle_buffer=16)
    assert data.info["vocab_sizes"] == [64] and data.info["max_tokens"] == 8
    ids, lengths, labels = next(iter(data.train_dataloader()))  # (16 8 1), (16,), (16,)
    tok = tv.Tokenizer.from_pretrained(converted)
    assert int(ids.max()) < 64 and tok.decode(ids).shape == (16, 3, 16, 16)
    torch.manual_seed(0)
    gpt = GPT(**gpt_spec("gpt_tiny", data.info))
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):  # the same batch: the loss must fall
        loss = token_losses(gpt(ids, labels), ids, lengths).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(np.log(64), rel=0.05) and losses[-1] < 0.9 * losses[0]


def test_onnx_export(converted, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from tokenizers_vis.deploy import OnnxTokenizer, export_onnx

    tok = tv.Tokenizer.from_pretrained(converted)
    # check=False: the export's own comparison with torch is test_onnx's; this test does its own.
    runner = OnnxTokenizer(export_onnx(converted, tmp_path / "onnx", check=False), threads=1)
    x = images()
    ids = runner.encode(x.numpy())  # (6 8 1)
    assert np.array_equal(ids, tok.encode(x).ids.numpy())
    got = runner.decode(ids[:, :4])
    assert np.abs(got - tok.decode(torch.from_numpy(ids[:, :4])).numpy()).max() < 1e-4
