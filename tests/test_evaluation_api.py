"""The evaluation as a Python API (no CLI): images or a data spec in, a result object out, and
writers kept apart from the computing."""

from __future__ import annotations

import json

import pytest
import torch

import tokenizers_vis as tv
from tokenizers_vis.data import build_dataset, to_uint8
from tokenizers_vis.evaluation import (
    EvaluationError,
    TokenizerEvaluation,
    evaluate_tokenizer,
    write_json,
    write_markdown,
    write_report,
)
from tokenizers_vis.metrics import bits_per_token
from tokenizers_vis.precision import resolve_precision

FAST = dict(fid=False, perceptual="none", batch_size=8, codec_cache=False)


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    model = tv.create_tokenizer("tiny_cpu_fsq")
    with torch.no_grad():  # a fresh init maps every image to one code; spread the ids
        model.encoder.patch_embed.proj.weight.mul_(20)
        model.encoder.to_codes.weight.mul_(30)
        model.decoder.token_in.weight.mul_(10)
    return model.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    ds = build_dataset("emoji", "test", 16)
    return torch.stack([to_uint8(ds[i][0]) for i in range(8)])  # (8 3 16 16) uint8


def test_in_memory_model_and_images(tok, images, one_thread):
    result = evaluate_tokenizer(tok, images, ks=[1, 8], codecs="webp", qualities=[5, 90], **FAST)
    assert isinstance(result, TokenizerEvaluation)
    assert [r["k"] for r in result.rows] == [1, 8]
    bits = bits_per_token(tok.vocab_sizes)  # log2 of the vocabulary
    assert result.row(8)["bytes_per_image"] == pytest.approx(8 * bits / 8)
    assert result.row(8)["psnr"] != result.row(1)["psnr"]
    assert [r["quality"] for r in result.codecs["webp"]] == [5, 90]
    # precision auto: whatever this CPU runs natively (bf16 on AVX512-BF16 / AMX, else fp32)
    expected = resolve_precision("auto", torch.device("cpu")).name
    assert result.meta["data"] == "(images passed in)" and result.meta["precision"] == expected
    assert result.meta["cpu"] and result.grid[0][0] == "original"
    # Token budgets (1, 8 B) are below WebP's smallest file: nothing to interpolate against.
    assert all(e["webp"]["interpolated"] is None for e in result.equal_bytes())
    with pytest.raises(KeyError, match="evaluated"):
        result.row(4)


def test_data_spec_matches_the_same_images_passed_in(tok, images, one_thread):
    from_spec = evaluate_tokenizer(tok, "emoji", num_images=8, ks=[4], codecs=(), **FAST)
    direct = evaluate_tokenizer(tok, images, ks=[4], codecs=(), **FAST)

    def metrics(result):  # wall time aside
        return [{k: v for k, v in r.items() if k != "seconds_per_image"} for r in result.rows]

    assert metrics(from_spec) == metrics(direct) and from_spec.meta["data"] == "emoji"


def test_writers_are_separate_and_atomic(tok, images, tmp_path, one_thread):
    result = evaluate_tokenizer(tok, images, ks=[8], codecs=("jpeg",), qualities=[50], **FAST)
    report = json.loads(write_json(result, tmp_path / "r.json").read_text())
    assert report["vistok"][0]["k"] == 8 and report["codecs"]["jpeg"][0]["quality"] == 50
    assert "| k | bytes | PSNR |" in write_markdown(result, tmp_path / "r.md").read_text()
    names = sorted(p.name for p in write_report(result, tmp_path / "all"))
    assert names == sorted(
        [
            "report.json",
            "report.md",
            "metric_vs_k.png",
            "metric_vs_bytes.png",
            "reconstructions.png",
        ]
    )
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ks": [0]}, "1..8"),
        ({"codecs": "png"}, "unknown codec"),
        ({"perceptual": "vgg"}, "perceptual"),
        ({"precision": "fp16"}, "auto, bf16, fp32"),
    ],
)
def test_mistakes_raise_evaluation_error_before_work(tok, images, kwargs, message):
    with pytest.raises((EvaluationError, ValueError), match=message):
        evaluate_tokenizer(tok, images, **{**FAST, **kwargs})


def test_wrong_image_size_is_refused(tok):
    with pytest.raises(EvaluationError, match=r"\(n, 3, 16, 16\)"):
        evaluate_tokenizer(tok, torch.zeros(4, 3, 32, 32, dtype=torch.uint8), **FAST)


def test_num_steps_reaches_a_sampling_decoder(images, one_thread):
    from test_rectified_flow import RF

    from tokenizers_vis.presets import preset_spec

    torch.manual_seed(0)
    rf = tv.Tokenizer(**preset_spec("tiny_cpu_fsq", decoder=RF)).eval()
    with torch.no_grad():  # adaLN-Zero ignores its input until trained: wake it up
        for p in rf.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    one, four = (
        evaluate_tokenizer(rf, images, ks=[8], codecs=(), num_steps=s, **FAST) for s in (1, 4)
    )
    assert one.encode["num_steps"] == 1 and four.encode["num_steps"] == 4
    assert one.row(8)["psnr"] != four.row(8)["psnr"]
    assert one.meta["decode_and_score_seconds_per_image"]["8"] > 0
