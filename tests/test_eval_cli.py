"""`vistok eval` in process: a fresh tiny tokenizer on real emoji at 16 px, 8 images.

Most runs skip the Inception network (`--no-fid --perceptual none`); one tokenizer run and the
generator runs use it (loaded once per process). Reference features go to a per-module cache.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import tokenizers_vis as tv
from tokenizers_vis import atomic
from tokenizers_vis.cli import main as cli
from tokenizers_vis.data import build_dataset, to_uint8
from tokenizers_vis.evaluation.inputs import load_samples

N = "8"
FAST = ["--no-fid", "--perceptual", "none", "--quiet", "--num-images", N, "--batch-size", "8"]
PNGS = ("metric_vs_k.png", "metric_vs_bytes.png", "reconstructions.png")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """tiny_cpu_fsq with weights scaled so ids vary by image and position (a fresh init maps
    every image to the middle code, and then no test could tell the k's apart)."""
    torch.manual_seed(0)
    tok = tv.create_tokenizer("tiny_cpu_fsq")
    with torch.no_grad():
        tok.encoder.patch_embed.proj.weight.mul_(20)
        tok.encoder.to_codes.weight.mul_(30)
        tok.decoder.token_in.weight.mul_(10)
    return tok.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fid_cache")


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    """The first 8 emoji test images at 16 px, uint8 (8, 3, 16, 16): what `--num-images 8` uses."""
    ds = build_dataset("emoji", "test", 16)
    return torch.stack([to_uint8(ds[i][0]) for i in range(int(N))])


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(["eval", *args])
    out, err = capsys.readouterr()
    return code, out, err


def tokenizer(model_dir, out, *extra: str) -> list[str]:
    args = ["tokenizer", "--model", str(model_dir), "--data", "emoji", "--out", str(out)]
    return [*args, "--cache-dir", str(out.parent / "cache"), *extra]


def test_tokenizer_fast_path_writes_every_output(model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code, stdout, err = run(tokenizer(model_dir, out, *FAST, "--qualities", "5,50,90"), capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    rows = report["vistok"]
    assert [r["k"] for r in rows] == [1, 2, 4, 8]  # 1, 2, 4, ... and K
    bits = math.log2(125)  # tiny_cpu_fsq: FSQ levels 5 x 5 x 5, one sub-codebook
    assert [r["bytes_per_image"] for r in rows] == pytest.approx(
        [k * bits / 8 for k in (1, 2, 4, 8)]
    )
    for row in rows:
        assert math.isfinite(row["psnr"]) and 0 <= row["ssim"] <= 1 and 0 <= row["ms_ssim"] <= 1
        assert "rfid" not in row
    assert len({r["psnr"] for r in rows}) > 1, "every k decoded the same tokens"
    for codec in ("jpeg", "webp"):
        points = report["codecs"][codec]
        assert [p["quality"] for p in points] == [5, 50, 90]
        sizes = [p["bytes_per_image"] for p in points]
        assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
        assert points[-1]["psnr"] > points[0]["psnr"]
    # Every token budget is far below the smallest file, so the nearest quality is the lowest
    # and nothing is interpolated (no extrapolation below a codec's smallest file).
    assert all(e["jpeg"]["nearest"]["quality"] == 5 for e in report["codecs_at_k"])
    assert all(e["jpeg"]["interpolated"] is None for e in report["codecs_at_k"])
    usage = report["codebook_usage"]
    assert usage["k"] == 8 and len(usage["perplexity_per_position"]) == 8
    assert max(p[0] for p in usage["perplexity_per_position"]) > 1
    meta = report["meta"]
    assert (meta["num_images"], meta["seed"], meta["device"]) == (8, 0, "cpu")
    assert meta["torch"] == torch.__version__ and meta["wall_time_s"] > 0
    markdown = (out / "report.md").read_text()
    assert "| k | bytes | PSNR | SSIM | MS-SSIM |" in markdown
    # Each codec's rows appear once, in its own table, not repeated under every k.
    assert markdown.count("\n| 90 | ") == 2 and "## WebP, every quality" in markdown
    assert "JPEG's smallest file (q=5)" in markdown and "(nearest)" not in markdown
    assert re.search(r"^\| 8 \| 7\.0 \|", stdout, re.M)  # 8 tokens x log2(125) bits
    for name in PNGS:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and min(im.size) > 100
    assert sorted(p.name for p in out.iterdir()) == sorted(["report.json", "report.md", *PNGS])


def test_codec_rows_are_reused_only_for_the_same_images(model_dir, tmp_path, capsys):
    shared = ["--cache-dir", str(tmp_path / "shared")]  # the last --cache-dir wins
    codec = ["--codecs", "jpeg", "--qualities", "5,90", *shared]
    first, again, fewer = (tmp_path / name for name in ("first", "again", "fewer"))
    assert run(tokenizer(model_dir, first, *FAST, *codec, "--ks", "8"), capsys)[0] == 0
    assert run(tokenizer(model_dir, again, *FAST, *codec, "--ks", "2"), capsys)[0] == 0
    assert run([*tokenizer(model_dir, fewer, *FAST, *codec), "--num-images", "4"], capsys)[0] == 0
    a, b, c = (json.loads((out / "report.json").read_text()) for out in (first, again, fewer))
    assert [r["meta"]["codec_rows_from_cache"] for r in (a, b, c)] == [0, 2, 0]
    assert b["codecs"] == a["codecs"] and c["codecs"] != a["codecs"]


def test_tokenizer_is_deterministic(model_dir, tmp_path, capsys):
    reports = []
    for name in ("a", "b"):
        args = tokenizer(model_dir, tmp_path / name, *FAST, "--codecs", "webp", "--qualities", "20")
        assert run([*args, "--ks", "8,3", "--no-codec-cache"], capsys)[0] == 0
        reports.append(json.loads((tmp_path / name / "report.json").read_text()))
    a, b = ({k: v for k, v in r.items() if k != "meta"} for r in reports)
    assert a == b
    assert [r["k"] for r in a["vistok"]] == [3, 8]
    assert a["codecs_at_k"][0]["webp"]["interpolated"] is None  # one point: no range


def test_tokenizer_without_codecs(model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert run(tokenizer(model_dir, out, *FAST, "--codecs", "none", "--ks", "8"), capsys)[0] == 0
    report = json.loads((out / "report.json").read_text())
    assert report["codecs"] == {} and report["codecs_at_k"] == []
    assert "(nearest)" not in (out / "report.md").read_text()
    assert all((out / name).is_file() for name in PNGS)


def test_refined_tokens_are_labelled_and_score_no_worse(model_dir, tmp_path, capsys):
    reports = {}
    for name, extra in (("plain", []), ("refined", ["--refine-steps", "3"])):
        args = tokenizer(model_dir, tmp_path / name, *FAST, "--codecs", "none", "--ks", "8")
        code, out, _ = run([*args, *extra], capsys)
        assert code == 0
        reports[name] = (json.loads((tmp_path / name / "report.json").read_text()), out)
    (plain, _), (refined, table) = reports["plain"], reports["refined"]
    assert plain["encode"]["refine_steps"] == 0 and refined["encode"]["refine_steps"] == 3
    assert "vistok, refined tokens (3 steps)" in table
    # The objective averages k = 1, 2, 4, 8; the best ids per image keep k = 8 from falling far.
    assert refined["vistok"][0]["psnr"] > plain["vistok"][0]["psnr"] - 0.5


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write(target, b"new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_tokenizer_fid_and_perceptual(model_dir, tmp_path, cache_dir, capsys):
    out = tmp_path / "eval"
    args = tokenizer(model_dir, out, "--num-images", N, "--batch-size", "8", "--quiet")
    args += ["--ks", "8", "--codecs", "jpeg", "--qualities", "50", "--cache-dir", str(cache_dir)]
    # (the last --cache-dir wins: the generator test reuses these reference features)
    code, _, err = run(args, capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["perceptual"] == "perceptual_inception"
    (row,) = report["vistok"]
    (jpeg,) = report["codecs"]["jpeg"]
    for point in (row, jpeg):
        assert math.isfinite(point["rfid"]) and math.isfinite(point["kid_mean"])
    # An untrained tokenizer against JPEG at quality 50: both distances must say JPEG is closer.
    assert jpeg["rfid"] < row["rfid"]
    assert jpeg["perceptual_inception"] < row["perceptual_inception"]
    extractor = report["meta"]["extractor"]
    assert extractor["id"].startswith("tf_inception_v3/") and len(extractor["sha1"]) == 40
    if "fid_helper_default_1" in extractor["id"]:  # named as the suite's reports name it
        from tokenizers_vis.layers.inception import FID_HELPER_SHA1

        assert extractor["sha1"] == FID_HELPER_SHA1
    # The originals' features are cached, and so is the JPEG row (it does not depend on the model).
    assert len(list((cache_dir / "fid_reference").glob("*.safetensors"))) == 1
    assert len(list((cache_dir / "codec_baselines").glob("jpeg-q50-*.json"))) == 1
    # sFID and precision / recall join rFID (IS needs the classifier and >= 10 images).
    assert "| rFID | sFID | Prec. | Rec. | KID | PSNR |" in (out / "report.md").read_text()


def test_generator_self_fid_is_zero(tmp_path, cache_dir, test_images, capsys):
    npz = tmp_path / "samples.npz"
    np.savez(npz, samples=test_images.permute(0, 2, 3, 1).numpy())  # (n h w 3)
    noise = tmp_path / "noise.npz"
    g = torch.Generator().manual_seed(0)
    np.savez(noise, torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=g).numpy())
    fids = {}
    for name, samples in (("self", npz), ("noise", noise)):
        args = ["generator", "--samples", str(samples), "--data", "emoji", "--num-images", N]
        args += ["--out", str(tmp_path / name), "--cache-dir", str(cache_dir), "--quiet"]
        code, stdout, err = run(args, capsys)
        assert code == 0, err
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["samples"]["num_samples"] == 8 and report["reference_size"] == 16
        assert "gFID" in (tmp_path / name / "report.md").read_text() and "gFID" in stdout
        fids[name] = report["gfid"]
    assert abs(fids["self"]) < 1e-3  # the split's own images against the split
    assert fids["noise"] > 100


def test_samples_load_alike_from_folder_and_npz_layouts(tmp_path, test_images):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(test_images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:02d}.png")
    np.savez(tmp_path / "nhwc.npz", images=test_images.permute(0, 2, 3, 1).numpy())
    np.savez(tmp_path / "nchw.npz", test_images.numpy())
    for source in (folder, tmp_path / "nhwc.npz", tmp_path / "nchw.npz"):
        assert torch.equal(load_samples(source), test_images), source


def _bad_npz(tmp_path):
    path = tmp_path / "float.npz"
    np.savez(path, np.zeros((4, 16, 16, 3), np.float32))
    return path


def _garbage(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"not a zip archive")
    return path


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda m, t: tokenizer(t / "missing", t / "o", *FAST), "neither a directory"),
        (lambda m, t: [*tokenizer(m, t / "o", *FAST), "--data", "nope"], "unknown dataset"),
        (lambda m, t: [*tokenizer(m, t / "o", *FAST), "--ks", "0"], "1..8"),
        (lambda m, t: [*tokenizer(m, t / "o", *FAST), "--ks", "4,9"], "1..8"),
        (lambda m, t: [*tokenizer(m, t / "o", *FAST), "--ks", "two"], "integers"),
        (lambda m, t: [*tokenizer(m, t / "o", *FAST), "--split", "dev"], "unknown split"),
        (lambda m, t: [*tokenizer(m, t / "o", *FAST), "--codecs", "png"], "unknown codec"),
        (lambda m, t: [*tokenizer(m, t / "o", *FAST), "--qualities", "0"], "1..95"),
        (lambda m, t: [*tokenizer(m, t / "o", *FAST), "--device", "tpu9"], "tpu9"),
        (lambda m, t: [*tokenizer(m, t / "o", *FAST), "--refine-steps", "-1"], ">= 0"),
        (lambda m, t: ["generator", "--samples", str(_garbage(t)), "--data", "emoji"], "npz"),
        (lambda m, t: ["generator", "--samples", str(_bad_npz(t)), "--data", "emoji"], "uint8"),
        (lambda m, t: ["generator", "--samples", str(t / "none"), "--data", "emoji"], "no such"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(make_args, message, model_dir, tmp_path, capsys):
    args = make_args(model_dir, tmp_path)
    code, _, err = run([*args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "error:" in err and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written, not even the folder


def test_missing_inception_weights_exit_2(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VISTOK_INCEPTION_WEIGHTS", str(tmp_path / "no-such-weights.pth"))
    args = tokenizer(model_dir, tmp_path / "o", "--num-images", N, "--quiet")
    code, _, err = run(args, capsys)
    assert code == 2 and err.count("\n") == 1 and "Inception weights" in err, err
    assert not (tmp_path / "o").exists()
