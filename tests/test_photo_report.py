"""tools/photo_report.py's pure parts: equal-bytes interpolation, patch grid, tables from rows."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).parents[1] / "tools"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = _load("photo_report_tables")


def crop_row(contestant, bytes_, psnr, rfid, **point):
    return {"section": "crops", "contestant": contestant, "bytes_per_image": bytes_,
            "bpp": 8 * bytes_ / 4096, "psnr": psnr, "ssim": 0.5, "perceptual": 1.0,
            "rfid": rfid, "kid_mean": 0.01} | point  # fmt: skip


CODEC = [crop_row("webp", b, p, f, quality=q)
         for q, b, p, f in ((0, 100, 24.0, 300), (10, 200, 27.0, 200), (50, 400, 30.0, 100),
                            (90, 800, 33.0, 50), (100, 1600, 36.0, 20))]  # fmt: skip
MODEL = [crop_row("photo64", b, p, f, k=k, token_bytes=b - 29)
         for k, b, p, f in ((1, 30, 17.0, 400), (16, 53, 20.0, 250), (64, 125, 22.0, 150),
                            (128, 222, 23.0, 120), (256, 3200, 24.0, 100))]  # fmt: skip


def test_equal_bytes_interpolates_inside_the_codec_range_only():
    at = tables.equal_bytes(MODEL, CODEC)
    assert at[0] is None and at[1] is None and at[-1] is None  # 30, 53 B: under WebP's 100 B
    assert at[2]["psnr"] == pytest.approx(24.0 + 3.0 * 25 / 100)  # 125 B between 100 and 200
    assert at[2]["rfid"] == pytest.approx(300 - 100 * 25 / 100)
    assert at[3]["psnr"] == pytest.approx(27.0 + 3.0 * 22 / 200)


def test_crop_tables_show_dashes_bd_rate_and_the_goals():
    text = "\n".join(tables.crop_tables(MODEL + CODEC))
    assert "| photo64 | 1 | 30.0 | 17.00 | - | - |" in text
    assert "| photo64 | 64 | 125.0 | 22.00 | - | 24.75 |" in text
    # WebP reaches k = 64 and 128: 2.75 and 4.33 dB ahead, rFID 150 > 275 is false, 120 < 256.
    assert "worst PSNR gap +4.33 dB (goal: under 3 dB: not met)" in text
    assert "lower rFID than WebP at k = 64, 128 (goal: all: met)" in text
    assert "| photo64 | WebP | - (the curves share no quality interval" in text


def whole_rows():
    rows = []
    for name, psnrs in (("photo64", (20.0, 22.0, 23.0, 24.0)), ("jpeg", (None, 21.0, 26.0, 30.0))):
        for bpp, psnr in zip((0.05, 0.1, 0.5, 1.0), psnrs, strict=True):
            row = {"section": "whole", "contestant": name, "photo": "p", "bpp_budget": bpp}
            if psnr is not None:
                row |= {"bytes": int(bpp * 1000), "bpp": bpp * 0.95, "psnr": psnr, "ssim": 0.5}
            rows.append(row)
            if psnr is not None:
                rows.append({"section": "patches", "contestant": name, "bpp_budget": bpp,
                             "rfid": 100 - psnr, "kid_mean": 0.01, "perceptual": 1.0})  # fmt: skip
    sweep = ((1, 0.08, 20.0), (10, 0.2, 24.0), (50, 0.6, 28.0), (90, 1.5, 33.0))
    rows += [{"section": "sweep", "contestant": "jpeg", "photo": "p", "quality": q, "bpp": b,
              "bytes": 0, "psnr": p} for q, b, p in sweep]  # fmt: skip
    return rows


def test_whole_tables_pool_means_mark_unreached_budgets_and_check_the_goal():
    text = "\n".join(tables.whole_tables(whole_rows()))
    assert "| jpeg | 0.05 | 0 | - | - | - | - | - | - |" in text
    assert "| photo64 | 0.1 | 1 | 0.095 | 22.00 | 0.500 | 78.0 | 10.00 | 1.000 |" in text
    assert "| p | 0.05 | 20.00 (50) | - |" in text
    assert (
        "- photo64 at 0.05 bpp: patch rFID 80.0; JPEG has no file that small of every photo."
        in text
    )
    bd = next(line for line in text.splitlines() if line.startswith("| photo64 | JPEG |"))
    assert "%" in bd.split("|")[3]  # a number: 4 points each, overlapping PSNR 20..24
    assert "- JPEG's smallest file (lowest quality), bpp: p 0.080." in text


def test_patch_grid_is_aligned_plus_half_shifted_and_drops_partial_patches():
    tool = _load("photo_report")
    image = np.arange(130 * 200 * 3, dtype=np.uint32).reshape(130, 200, 3).astype(np.uint8)
    got = tool.patches(image)
    # Aligned: rows 0, 64 (128 + 64 > 130) x cols 0, 64, 128 = 6; shifted: rows 32 x 32, 96 = 2.
    assert got.shape == (8, 3, 64, 64)
    assert np.array_equal(got[-1], image[32:96, 96:160].transpose(2, 0, 1))


def test_render_without_rows_is_one_line_and_exit_2(tmp_path, capsys):
    tool = _load("photo_report")
    assert tool.main(["--render", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no rows to render" in err
    assert not (tmp_path / "none").exists()
    for bad, says in (
        (["--zoom", "2,1"], "--zoom takes LO,HI"),
        (["--bpp", "x"], "comma-separated"),
    ):
        assert tool.main([*bad, "--out", str(tmp_path / "bad")]) == 2
        assert says in capsys.readouterr().err and not (tmp_path / "bad").exists()
