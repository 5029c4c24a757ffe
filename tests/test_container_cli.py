"""Hostile record names and unwritable outputs through `vistok encode / decode`: a bad record is
that record's failure (the others are decoded), a bad input name fails that input, and a failed
output leaves no temporary file and an error naming the user's path."""

from __future__ import annotations

import struct
import zlib

import pytest
import torch
from PIL import Image

import tokenizers_vis as tv
from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.codec import Codec, Container
from tokenizers_vis.codec.format import encode_varint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    torch.manual_seed(0)
    return str(tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(tmp_path_factory.mktemp("m")))


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def run(capsys, *argv) -> tuple[int, str, str]:
    status = vistok([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _record(name: bytes, data: bytes) -> bytes:
    named = encode_varint(len(name)) + name
    head = struct.pack("<I", len(named) + 4 + len(data))
    return head + named + struct.pack("<I", zlib.crc32(head + named)) + data


def test_decode_lists_a_bad_record_and_decodes_the_rest(tiny, tmp_path, capsys):
    """The issue's case: a NUL in record 4's name stopped the run after 4 of 23 records with a
    traceback; now that record fails with its reason and the 22 others are written."""
    codec = Codec.from_pretrained(tiny)
    data = codec.encode_image(Image.new("RGB", (12, 9), (10, 200, 30)))
    names = [f"img{i:02d}.png".encode() for i in range(23)]
    names[4] = b"a\x00b.png"
    names[7] = b"../../escape.png"
    names[11] = "x\u202egnp.exe".encode()
    box = tmp_path / "set.vtoks"
    box.write_bytes(b"VTKS\x02" + b"".join(_record(n, data) for n in names))
    status, out, err = run(capsys, "decode", box, "-o", tmp_path / "out", "--model", tiny, "-q")
    assert status == 1 and "Traceback" not in err
    assert "decoded 20 of 23 files (3 failed)" in out
    failed = [line for line in err.splitlines() if "failed:" in line]
    assert len(failed) == 3
    assert f"{box}[4]: record name 'a\\x00b.png' contains the control character U+0000" in err
    assert f"{box}[7]: record name '../../escape.png' has a '..' path component" in err
    assert "\u202e" not in err and "x\\u202egnp.exe" in err
    written = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    assert written == sorted(f"img{i:02d}.png" for i in range(23) if i not in (4, 7, 11))
    assert not (tmp_path / "escape.png").exists() and not list(tmp_path.glob(".*.tmp"))


def test_encode_fails_an_input_whose_name_a_container_refuses(tiny, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("good.png", "new\nline.png", "back\\slash.png"):
        Image.new("RGB", (8, 8), (5, 5, 5)).save(src / name, format="PNG")
    box = tmp_path / "set.vtoks"
    status, out, err = run(capsys, "encode", src, "-o", box, "--model", tiny, "-q")
    assert status == 1 and "encoded 1 of 3 files (2 failed)" in out
    assert "new\\nline.png: cannot be stored in a container: record name 'new\\nline.png'" in err
    assert "contains a backslash" in err and "\n" not in err.replace("\n", "", err.count("\n"))
    with Container(box) as c:
        assert [n for n, _ in c] == ["good.png"]


def test_encode_over_a_directory_leaves_no_temp_file(tiny, tmp_path, capsys):
    """The issue's case: `-o existing_dir.vtoks --overwrite` left `.existing_dir.vtoks.*.tmp`
    behind and named it in the error."""
    Image.new("RGB", (8, 8), (5, 5, 5)).save(tmp_path / "in.png")
    (tmp_path / "existing_dir.vtoks").mkdir()
    for extra in ([], ["--overwrite"], ["--append"]):
        argv = ["encode", tmp_path / "in.png", "-o", tmp_path / "existing_dir.vtoks", *extra]
        status, _, err = run(capsys, *argv, "--model", tiny, "-q")
        assert status == 2 and ".tmp" not in err, err
        assert f"-o {tmp_path / 'existing_dir.vtoks'} is a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing_dir.vtoks", "in.png"]


def test_decode_to_an_existing_directory_name_leaves_no_temp_file(tiny, tmp_path, capsys):
    Image.new("RGB", (8, 8), (5, 5, 5)).save(tmp_path / "a.png")
    assert run(capsys, "encode", tmp_path / "a.png", "--model", tiny, "-q")[0] == 0
    (tmp_path / "a.png").unlink()
    (tmp_path / "a.png").mkdir()  # the output name is taken by a folder
    argv = ["decode", tmp_path / "a.vtok", "--overwrite", "-q"]  # a.png beside it
    status, _, err = run(capsys, *argv, "--model", tiny)
    assert status == 1 and ".tmp" not in err and "Traceback" not in err
    assert f"failed: {tmp_path / 'a.vtok'}: cannot write: Is a directory" in err
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
