"""`vistok data pack / show / summary`, run in-process; user mistakes exit 2 with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_badinput import write_bad_files

from tokenizers_vis.cli.data import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def image_tree(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "src" / c).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "src" / c / f"{i}.png")
    write_bad_files(tmp_path / "src" / "dog" / "junk")
    return tmp_path / "src"


def test_pack_folder_then_summary_and_show(image_tree, tmp_path, capsys):
    out = tmp_path / "shards"
    assert (
        main(
            [
                "pack",
                str(image_tree),
                str(out),
                "--size",
                "8",
                "--shard-size",
                "4",
                "--split",
                "all",
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "all: 6 images in 2 shards, 5 skipped" in text
    assert "unreadable or truncated: 2" in text and "empty (zero bytes): 1" in text
    assert sorted(p.name for p in out.iterdir()) == ["all-000000.tar", "all-000001.tar", "all.json"]
    assert main(["summary", f"shards:{out / 'all-*.tar'}", "--size", "8"]) == 0
    table = capsys.readouterr().out
    assert "cat" in table and "dog" in table
    sheet = tmp_path / "sheet.png"
    assert (
        main(
            [
                "show",
                f"folder:{image_tree}",
                "--size",
                "8",
                "--split",
                "all",
                "--out",
                str(sheet),
                "--count",
                "4",
            ]
        )
        == 0
    )
    assert Image.open(sheet).size[0] > 8


def test_show_emoji_prints_split_table(tmp_path, tmp_path_factory, capsys, monkeypatch):
    # The session-wide cache test_data_emoji fills, so the emoji are rendered once per run.
    monkeypatch.setenv("VISTOK_CACHE", str(tmp_path_factory.getbasetemp() / "vistok-cache"))
    assert main(["show", "emoji", "--size", "16", "--out", str(tmp_path / "e.png")]) == 0
    table = capsys.readouterr().out
    for word in ("train", "val", "test", "smileys", "flags"):
        assert word in table
    assert Image.open(tmp_path / "e.png").mode == "RGB"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pack", "folder:/no/such/dir", "OUT", "--size", "8"], "not a directory"),
        (["pack", "emoji", "OUT", "--size", "0"], "--size"),
        (["pack", "emoji", "OUT", "--size", "big"], "not an integer"),
        (["pack", "emoji", "OUT"], "required"),
        (["show", "imagenet"], "known: emoji, photos"),
        (["summary", "shards:/no/such/*.tar"], "no .tar shards"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_existing_shards_need_overwrite(image_tree, tmp_path, capsys):
    argv = [
        "pack",
        f"folder:{image_tree}",
        str(tmp_path / "o"),
        "--size",
        "8",
        "--quiet",
        "--split",
        "all",
    ]
    assert main(argv) == 0
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_help_returns_0(capsys):
    assert main(["--help"]) == 0
    assert "pack" in capsys.readouterr().out


def test_module_entry_point_runs_standalone():
    proc = subprocess.run(
        [sys.executable, "-m", "tokenizers_vis.cli.data", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "vistok data" in proc.stdout


def _small_folder(root: Path, good: int, bad: int) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    for i in range(good):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / f"g{i}.png")
    for i in range(bad):
        (root / f"bad{i}.png").write_bytes(b"" if i == 0 else b"not an image at all")
    return root


def test_small_folder_packs_every_good_image_and_empty_splits(tmp_path, capsys):
    """7 good + 3 bad images: the hash leaves `test` empty; that split is packed empty."""
    import json

    src, out = _small_folder(tmp_path / "src", 7, 3), tmp_path / "out"
    assert main(["pack", str(src), str(out), "--size", "32", "--quiet"]) == 0
    captured = capsys.readouterr()
    infos = {s: json.loads((out / f"{s}.json").read_text()) for s in ("train", "val", "test")}
    assert sum(info["count"] for info in infos.values()) == 7  # every good image kept
    empty = [s for s, info in infos.items() if info["count"] == 0]
    assert empty, "the fixture should leave a split empty; pick another seed"
    for split in empty:
        assert f"split {split!r} has no images" in captured.err
        assert infos[split]["shards"] == {}
    assert "Traceback" not in captured.err and "error" not in captured.err


def test_folder_too_small_for_any_split_writes_nothing(tmp_path, capsys):
    src, out = _small_folder(tmp_path / "src", 0, 3), tmp_path / "out"
    assert main(["pack", str(src), str(out), "--size", "32", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no readable images" in err and "nothing written" in err
    assert not out.exists()
