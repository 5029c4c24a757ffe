"""`vistok encode / decode / info` in-process on real files: outputs, reasons, exit statuses."""

from __future__ import annotations

import os
import signal
import struct
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from test_codec_api import write_images
from test_data_badinput import write_bad_files

import tokenizers_vis as tv
from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.codec import Container, read_header


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


def _float_tiff() -> bytes:
    """A valid TIFF of 64-bit float samples: a real image format Pillow cannot decode."""
    entries = [(256, 2), (257, 2), (258, 64), (259, 1), (262, 1), (273, 0), (277, 1), (278, 2)]
    entries += [(279, 32), (339, 3)]
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    data_offset = 8 + 2 + 12 * len(entries) + 4
    for tag, value in entries:
        value = data_offset if tag == 273 else value
        out += struct.pack("<HHII", tag, 4, 1, value)
    return out + b"\x00" * 4 + bytes(32)


def bad_inputs(root) -> dict[str, tuple]:
    """{case: (path, reason the summary must give)}."""
    files = write_bad_files(root)
    (root / "notes.jpg").write_text("not an image at all")
    (root / "float.tif").write_bytes(_float_tiff())
    (root / "gone.png").symlink_to(root / "missing.png")
    return {
        "zero bytes": (files["zero_byte"], "zero bytes"),
        "truncated jpeg": (files["truncated_jpeg"], "truncated"),
        "truncated png": (files["truncated_png"], "truncated"),
        "too large": (files["huge"], "too large for memory"),
        "not an image": (root / "notes.jpg", "not an image"),
        "unsupported mode": (root / "float.tif", "unsupported mode"),
        "unreadable": (root / "gone.png", "unreadable"),
    }


def test_one_file_beside_then_named_output_and_info(tiny, tmp_path, capsys):
    src = tmp_path / "photo.jpg"
    Image.fromarray(np.full((30, 50, 3), 90, np.uint8)).save(src)
    status, out, _ = run(capsys, "encode", src, "--model", tiny, "--tokens", "4", "-q")
    assert status == 0 and "encoded 1 of 1 files" in out and "bits/pixel" in out
    vtok = tmp_path / "photo.vtok"
    header, payload = read_header(vtok.read_bytes())
    assert header.size == (50, 30) and header.lengths == (4,) * 8
    status, out, _ = run(capsys, "info", vtok)
    assert status == 0 and "image       50x30" in out and f"payload {payload}" in out
    status, out, _ = run(
        capsys, "decode", vtok, "-o", tmp_path / "back.webp", "--model", tiny, "-q"
    )
    assert status == 0
    with Image.open(tmp_path / "back.webp") as im:
        assert im.format == "WEBP" and im.size == (50, 30)
    status, _, _ = run(capsys, "encode", src, "-o", tmp_path / "named.vtok", "--model", tiny, "-q")
    assert status == 0 and (tmp_path / "named.vtok").is_file()


def test_folder_is_mirrored_and_every_failure_is_listed(tiny, tmp_path, capsys):
    src = tmp_path / "src"
    good = write_images(src / "good")
    bad = bad_inputs(src / "sub" / "bad")
    (src / "README.txt").write_text("ignored: not an image extension")
    status, out, err = run(capsys, "encode", src, "-o", tmp_path / "out", "--model", tiny, "-q")
    assert status == 1
    total = len(good) + len(list((src / "sub" / "bad").iterdir()))
    assert f"encoded {len(good)} of {total} files ({total - len(good)} failed)" in out
    assert "1 other files in folders ignored" in out  # README.txt
    for case, (path, reason) in bad.items():
        assert f"failed: {path}: {reason}" in err, case
    produced = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
    )
    assert produced == ["good"] + sorted(f"good/{name}.vtok" for name in good)


@pytest.mark.parametrize("case", ["zero bytes", "truncated jpeg", "too large", "not an image",
                                  "unsupported mode", "unreadable"])  # fmt: skip
def test_each_malformed_input_gives_its_reason_and_no_output(tiny, tmp_path, capsys, case):
    path, reason = bad_inputs(tmp_path / "in")[case]
    status, out, err = run(capsys, "encode", path, "-o", tmp_path / "x.vtok", "--model", tiny, "-q")
    assert status == 1 and "encoded 0 of 1 files (1 failed)" in out
    assert f"failed: {path}: {reason}" in err and "Traceback" not in err
    assert not (tmp_path / "x.vtok").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_existing_outputs_are_kept_unless_overwrite(tiny, tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(src)
    dst = tmp_path / "a.vtok"
    dst.write_bytes(b"precious")
    status, _, err = run(capsys, "encode", src, "--model", tiny, "-q")
    assert status == 1 and "output exists (--overwrite replaces it)" in err
    assert dst.read_bytes() == b"precious"
    status, _, _ = run(capsys, "encode", src, "--model", tiny, "-q", "--overwrite")
    assert status == 0 and read_header(dst.read_bytes())[0].size == (16, 16)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tokens", "0"], "--tokens: must be >= 1"),
        (["--tokens", "9"], "tokens must be in 1..8"),
        (["--tokens", "2", "--target-psnr", "20"], "not allowed with argument"),
        (["--scale", "2"], "--scale: must be in"),
        (["--model", "/no/such/model"], "--model:"),
        (["--device", "warp9"], "--device:"),
        (["--append"], "--append needs -o ending in .vtoks"),
        (["-o", "FILE"], "is a file, but several inputs need a directory"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tiny, tmp_path, capsys, args, message):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "FILE").write_text("x")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    inputs = [tmp_path / "a.png", tmp_path / "a.png"]
    status, out, err = run(capsys, "encode", *inputs, "--model", tiny, "-q", *args)
    assert status == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and not out


def test_container_append_decode_and_info(tiny, tmp_path, capsys):
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    Image.new("RGB", (20, 10), (200, 0, 0)).save(src / "red.png")
    Image.new("RGB", (5, 40), (0, 0, 200)).save(src / "deep" / "blue.png")
    box = tmp_path / "set.vtoks"
    assert run(capsys, "encode", src, "-o", box, "--model", tiny, "-q")[0] == 0
    status, _, err = run(capsys, "encode", src / "red.png", "-o", box, "--model", tiny, "-q")
    assert status == 2 and "--append adds to it" in err
    more = ["encode", f"{src}/*.png", "-o", box, "--model", tiny, "-q", "--append"]  # a glob
    assert run(capsys, *more)[0] == 0
    with Container(box) as c:
        assert [name for name, _ in c] == ["red.png", "deep/blue.png", "red.png"]
    status, out, _ = run(capsys, "info", box)
    assert status == 0 and "3 records" in out and "[1] deep/blue.png: 5x40" in out
    status, _, _ = run(capsys, "decode", box, "-o", tmp_path / "out", "--model", tiny, "-q")
    assert status == 0
    names = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")
    )
    assert names == ["deep/blue.png", "red-2.png", "red.png"]
    with Image.open(tmp_path / "out" / "deep" / "blue.png") as im:
        assert im.size == (5, 40)


def test_decode_refuses_damaged_and_foreign_files(tiny, tmp_path, capsys):
    Image.new("RGB", (40, 20), (9, 9, 9)).save(tmp_path / "a.bmp")  # decoding writes .png
    assert run(capsys, "encode", tmp_path / "a.bmp", "--model", tiny, "-q")[0] == 0
    data = (tmp_path / "a.vtok").read_bytes()
    cases = {
        "truncated.vtok": (data[:-3], "truncated"),
        "corrupted.vtok": (data[:30] + bytes([data[30] ^ 1]) + data[31:], "corrupted"),
        "bmp.vtok": ((tmp_path / "a.bmp").read_bytes(), "not a .vtok file"),
    }
    torch.manual_seed(1)
    other = tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(tmp_path / "other")
    for name, (content, reason) in cases.items():
        (tmp_path / name).write_bytes(content)
        status, _, err = run(capsys, "decode", tmp_path / name, "--model", tiny, "-q")
        assert status == 1 and reason in err, (name, err)
        assert not (tmp_path / name).with_suffix(".png").exists()
        assert run(capsys, "info", tmp_path / name)[0] == 1
    status, _, err = run(capsys, "decode", tmp_path / "a.vtok", "--model", other, "-q")
    assert status == 1 and "written by tokenizer" in err
    status, _, err = run(capsys, "decode", tmp_path / "a.vtok", "-q")  # no --model, not shipped
    assert status == 2 and "not a shipped model; pass --model" in err


def test_sigterm_mid_run_leaves_only_whole_files(tiny, tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(300):
        Image.new("RGB", (16, 16), (i % 256, 0, 0)).save(src / f"{i:03d}.png")
    late = []
    previous = signal.signal(signal.SIGTERM, lambda *_: late.append(1))  # if the run ends first

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(out.glob("*.vtok")):
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        status, _, err = run(
            capsys, "encode", src, "-o", out, "--model", tiny, "--batch-size", "1", "-q"
        )
    finally:
        thread.join()
        signal.signal(signal.SIGTERM, previous)
    assert status == 143 and "interrupted (SIGTERM)" in err and not late
    written = sorted(out.iterdir())
    assert 0 < len(written) < 300
    assert all(p.suffix == ".vtok" for p in written)  # no temporary file left behind
    for path in written:
        read_header(path.read_bytes())  # each one complete, checksum intact
