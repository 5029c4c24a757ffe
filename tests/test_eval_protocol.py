"""Named protocols: ADM's center crop, ADM-style reference files, streaming resumable passes and
the CLI, with a small stand-in for the Inception network (features in milliseconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import tokenizers_vis as tv
from tokenizers_vis.cli.eval import main
from tokenizers_vis.evaluation import inputs
from tokenizers_vis.evaluation.center_crop import adm_center_crop
from tokenizers_vis.evaluation.inputs import EvaluationError
from tokenizers_vis.evaluation.reference_batch import ReferenceBatchError, read_reference
from tokenizers_vis.evaluation.suite_api import (
    evaluate_generator_suite,
    evaluate_tokenizer_suite,
    make_reference,
)


def test_center_crop_hand_computed():
    # 8 wide x 12 tall, target 4: short side 8 >= 2 * 4, so one box halving to 4 x 6 (each output
    # pixel the mean of a 2x2 block); then the short side is 4 already (scale 1, no resampling);
    # the centre crop drops (6 - 4) // 2 = 1 row at the top and one at the bottom.
    block_values = np.arange(24).reshape(6, 4) * 10  # (h w): the 2x2 blocks' means
    image = np.zeros((12, 8, 3), np.uint8)
    offsets = np.array([[-3, -1], [1, 3]])  # mean 0: each block averages to its value
    for i in range(6):
        for j in range(4):
            image[2 * i : 2 * i + 2, 2 * j : 2 * j + 2] = (block_values[i, j] + 3 + offsets)[
                ..., None
            ]
    out = adm_center_crop(Image.fromarray(image), 4)
    expected = (block_values[1:5] + 3)[..., None].repeat(3, axis=2)
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    assert np.array_equal(out, expected)


def test_center_crop_sizes_and_offsets():
    # 600 x 300 (w x h), target 256: 300 < 512, no halving; bicubic to round(600 * 256 / 300)
    # = 512 x 256; crop columns (512 - 256) // 2 = 128 onward. A column ramp shows the offset.
    ramp = np.tile(np.linspace(0, 255, 600).astype(np.uint8)[None, :, None], (300, 1, 3))
    out = adm_center_crop(Image.fromarray(ramp), 256)
    resized = np.asarray(Image.fromarray(ramp).resize((512, 256), Image.BICUBIC))
    assert out.shape == (256, 256, 3) and np.array_equal(out, resized[:, 128:384])
    # 1030 x 515: halved once (515 >= 512) to 515 x 257 by the box filter, then bicubic to 256.
    big = Image.new("RGB", (1030, 515), (10, 200, 30))
    assert np.all(adm_center_crop(big, 256) == [10, 200, 30])


class FakeInception(nn.Module):
    """Stands in for the TF-Inception: forward_evaluation's outputs from fixed projections of
    the pixels (narrow widths, so every metric is fast), counting calls."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Parameter(torch.randn(48, 24, generator=g), requires_grad=False)
        self.head = torch.randn(24, 12, generator=g)
        self.calls, self.fail_after = 0, fail_after
        self.extractor_id = "fake"

    def forward_evaluation(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-pass
        x = images.float() / 255
        small = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)  # (b 48)
        pool = (small @ self.proj).relu()  # (b 24)
        spatial = nn.functional.adaptive_avg_pool2d(x, 3).repeat(1, 3, 1, 1)  # (b 9 3 3)
        return {"pool": pool, "spatial": spatial, "logits_unbiased": pool @ self.head}


@pytest.fixture
def fake_net(monkeypatch):
    net = FakeInception()
    info = {"id": "fake", "weights": "/fake.pt", "sha1": "f" * 40}
    monkeypatch.setattr(inputs, "load_extractor", lambda needed: (net, info))
    return net


def _folder(tmp_path, n: int, seed: int = 0, name: str = "images"):
    root = tmp_path / name
    root.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = rng.integers(260, 400, size=2)
        base = rng.integers(0, 255, size=(4, 4, 3)).astype(np.uint8)
        Image.fromarray(base).resize((int(w), int(h)), Image.BILINEAR).save(root / f"{i:03d}.png")
    return root


def test_reference_round_trip_and_refusals(tmp_path, fake_net):
    root = _folder(tmp_path, 13)
    ref = tmp_path / "ref.npz"
    made = make_reference(
        f"folder:{root}", ref, protocol="imagenet256", batch_size=4, cache_dir=tmp_path / "cache"
    )
    assert made.meta["images"] == 13 and ref.is_file()
    assert not list(tmp_path.glob(".ref.npz*"))  # no temporary left
    loaded = read_reference(ref, "f" * 40)
    assert loaded.extractor_sha1 == "f" * 40 and loaded.pool.shape == (13, 24)
    assert loaded.meta["protocol"]["name"] == "imagenet256"
    # Samples = the same images as an ADM sample batch (arr_0, already 256 px): FID and sFID 0.
    crops = np.stack([adm_center_crop(Image.open(p), 256) for p in sorted(root.glob("*.png"))])
    np.savez(tmp_path / "samples.npz", arr_0=crops)
    result = evaluate_generator_suite(
        tmp_path / "samples.npz", ref, batch_size=5, cache_dir=tmp_path / "cache"
    )
    row = result.rows[0]
    assert row["fid"] == pytest.approx(0, abs=1e-6) and row["sfid"] == pytest.approx(0, abs=1e-6)
    assert row["precision"] == 1.0 and row["recall"] == 1.0 and row["inception_score"] > 1
    # An ADM reference holding only images (arr_0) gives the same numbers.
    np.savez(tmp_path / "adm_ref.npz", arr_0=crops)
    again = evaluate_generator_suite(tmp_path / "samples.npz", tmp_path / "adm_ref.npz")
    assert again.rows[0]["fid"] == pytest.approx(0, abs=1e-6)
    # Another extractor's file, a wrong layout, half the statistics: refused by name.
    with pytest.raises(ReferenceBatchError, match="sha1 f{40}"):
        read_reference(ref, "0" * 40)
    np.savez(tmp_path / "bad.npz", images=crops)
    with pytest.raises(ReferenceBatchError, match="expected an ADM reference batch"):
        read_reference(tmp_path / "bad.npz", "f" * 40)
    np.savez(tmp_path / "half.npz", mu=np.zeros(4), sigma=np.eye(4))
    with pytest.raises(ReferenceBatchError, match="all four"):
        read_reference(tmp_path / "half.npz", "f" * 40)
    np.savez(tmp_path / "small.npz", arr_0=crops[:, :64, :64])
    with pytest.raises(EvaluationError, match="64x64; protocol imagenet256 is 256 px"):
        evaluate_generator_suite(tmp_path / "small.npz", ref)


def test_interrupted_pass_resumes_to_the_same_numbers(tmp_path, fake_net, monkeypatch):
    root = _folder(tmp_path, 11, seed=1)
    samples = _folder(tmp_path, 10, seed=2, name="samples")
    ref = tmp_path / "ref.npz"
    make_reference(f"folder:{root}", ref, protocol="imagenet256", use_cache=False)
    whole = evaluate_generator_suite(samples, ref, batch_size=3, use_cache=False).rows[0]
    cache = tmp_path / "cache"
    fake_net.calls, fake_net.fail_after = 0, 2  # interrupted during the third batch of four
    with pytest.raises(KeyboardInterrupt):
        evaluate_generator_suite(samples, ref, batch_size=3, cache_dir=cache)
    fake_net.calls, fake_net.fail_after = 0, None
    resumed = evaluate_generator_suite(samples, ref, batch_size=3, cache_dir=cache)
    assert fake_net.calls == 2 and resumed.meta["cached_batches"] == 2  # only what was missing
    for name in ("fid", "sfid", "inception_score", "precision", "recall", "kid_mean"):
        assert resumed.rows[0][name] == whole[name], name


def test_unreadable_images_are_listed_not_fatal(tmp_path, fake_net):
    root = _folder(tmp_path, 6)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    made = make_reference(
        f"folder:{root}", tmp_path / "ref.npz", protocol="imagenet256", use_cache=False
    )
    assert made.meta["images"] == 6 and made.meta["failed"] == 1
    assert made.meta["failed_files"][0][0].endswith("broken.png")
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "a.png").write_bytes(b"nope")
    with pytest.raises(EvaluationError, match="none of the 1 images could be read"):
        make_reference(f"folder:{only_bad}", tmp_path / "x.npz", protocol="imagenet256")
    assert not (tmp_path / "x.npz").exists()


def test_cli_reference_and_generator_report(tmp_path, fake_net, capsys):
    root = _folder(tmp_path, 12)
    ref = tmp_path / "ref.npz"
    assert (
        main(
            [
                "reference",
                "--data",
                f"folder:{root}",
                "-o",
                str(ref),
                "--protocol",
                "imagenet256",
                "--quiet",
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    out = tmp_path / "report"
    argv = [
        "generator",
        "--protocol",
        "imagenet256",
        "--reference",
        str(ref),
        "--samples",
        str(root),
        "--out",
        str(out),
        "--quiet",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["name"] == "imagenet256" and report["rows"][0]["fid"] < 1e-6
    md = (out / "report.md").read_text()
    assert "f" * 40 in md and "12 scored of 12 listed" in md and "vistok eval generator" in md
    assert "| FID | sFID | IS | Prec. | Rec. | KID |" in md


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "reference",
                "--data",
                "folder:{root}",
                "-o",
                "{tmp}/r.npz",
                "--protocol",
                "imagenet256",
                "--num-images",
                "50",
            ],
            "12 images, fewer than the 50 asked for",
        ),
        (["generator", "--protocol", "imagenet256", "--samples", "{root}"], "needs --reference"),
        (["generator", "--reference", "{tmp}/nope.npz", "--samples", "{root}"], "no such file"),
        (["reference", "--data", "folder:{root}", "-o", "{tmp}/missing/r.npz"], "does not exist"),
        (["reference", "--data", "emoji", "-o", "{tmp}/r.npz"], "give --size"),
    ],
)
def test_cli_mistakes_exit_2_with_one_line(argv, message, tmp_path, fake_net, capsys):
    root = _folder(tmp_path, 12)
    argv = [a.format(root=root, tmp=tmp_path) for a in argv] + ["--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("*.npz"))


@pytest.fixture(scope="module")
def tok():
    return tv.create_tokenizer("tiny_cpu_fsq").eval()  # 16 px, K = 8


def test_tokenizer_suite_resumes_to_the_same_rows(tok, fake_net, tmp_path, one_thread):
    kwargs = dict(
        protocol=None,
        split="test",
        num_images=12,
        ks=[1, 8],
        batch_size=5,
        device="cpu",
        precision="fp32",
    )
    whole = evaluate_tokenizer_suite(tok, "emoji", use_cache=False, **kwargs)
    assert [r["k"] for r in whole.rows] == [1, 8, "original"]
    for row in whole.rows[:2]:
        for name in ("rfid", "sfid", "inception_score", "precision", "recall", "psnr", "ssim"):
            assert isinstance(row[name], float), name
    assert whole.meta["images"] == 12 and whole.meta["failed"] == 0
    fake_net.calls, fake_net.fail_after = 0, 4  # 3 calls a batch (originals, k=1, k=8)
    with pytest.raises(KeyboardInterrupt):
        evaluate_tokenizer_suite(tok, "emoji", cache_dir=tmp_path, **kwargs)
    fake_net.calls, fake_net.fail_after = 0, None
    resumed = evaluate_tokenizer_suite(tok, "emoji", cache_dir=tmp_path, **kwargs)
    assert resumed.meta["cached_batches"] == 1 and fake_net.calls == 6  # 2 batches of 3
    assert resumed.rows == whole.rows


def test_protocol_needs_its_image_size(tok, fake_net, tmp_path):
    with pytest.raises(EvaluationError, match="scores 256 px images; the tokenizer works at 16"):
        evaluate_tokenizer_suite(tok, f"folder:{tmp_path}", protocol="imagenet256")


def test_fid_helper_weights_and_their_cached_conversion_share_one_sha1():
    from types import SimpleNamespace

    from tokenizers_vis.evaluation.inputs import source_sha1
    from tokenizers_vis.layers.inception import FID_HELPER_SHA1, _fid_helper_id

    converted = SimpleNamespace(weights_id=_fid_helper_id(FID_HELPER_SHA1))
    assert source_sha1(converted, "c" * 40) == FID_HELPER_SHA1
    other = SimpleNamespace(weights_id="sha256-0123456789abcdef")
    assert source_sha1(other, "c" * 40) == "c" * 40
