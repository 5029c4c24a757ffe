"""Issue 22, case 5: a hostile pretrained directory (or JSON file, or input folder) is refused
in one line, before the work or the allocation it asks for; nothing hangs, nothing tracebacks.

Every hostile input is built here in tmp_path; a SIGALRM guard turns a regression that blocks
(a FIFO read, a million-block build) into a failure instead of a hung suite.
"""

from __future__ import annotations

import json
import os
import signal
import struct
from pathlib import Path

import pytest
from PIL import Image

import tokenizers_vis as tv
from tokenizers_vis.codec import Codec, load_entropy_model, static_table
from tokenizers_vis.errors import VistokError
from tokenizers_vis.hub import PretrainedError, read_weights_header
from tokenizers_vis.limits import DEFAULT_LIMITS, LimitError
from tokenizers_vis.safe_read import json_depth, read_json

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(autouse=True)
def guard():
    """Fail (not hang) when a refusal takes more than 60 s."""

    def expire(*_):
        raise TimeoutError("a hostile input was not refused within 60 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    return tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(tmp_path_factory.mktemp("m") / "m")


@pytest.fixture
def model_dir(saved, tmp_path) -> Path:
    out = tmp_path / "model"
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        (out / name).write_bytes((saved / name).read_bytes())
    return out


def _edit(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    for key, value in changes.items():
        target = config["tokenizer"]
        *parents, leaf = key.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    (directory / "config.json").write_text(json.dumps(config))


def test_nested_config_is_a_limit_error_not_recursion(model_dir):
    (model_dir / "config.json").write_text('{"format_version": 1, "tokenizer": ' + DEEP + "}")
    with pytest.raises(LimitError, match=r"config\.json: JSON nesting depth 100,001 .*--max-"):
        Codec.from_pretrained(model_dir, device="cpu")


def test_nested_entropy_json_is_a_limit_error(model_dir, tmp_path):
    (tmp_path / "ent").mkdir()
    (tmp_path / "ent" / "entropy_static.json").write_text('{"kind": "static", "x": ' + DEEP + "}")
    with pytest.raises(LimitError, match="entropy_static.json: JSON nesting depth"):
        load_entropy_model(tmp_path / "ent")
    (model_dir / "entropy_static.json").write_text('{"format_version": 1, "x": ' + DEEP + "}")
    with pytest.raises(LimitError, match="nesting depth"):
        static_table.load(model_dir)


def test_depth_scan_ignores_brackets_in_strings():
    assert json_depth(b'{"a": "[[[[{{{{", "b": [[1], {"c": "\\"]]]"}]}') == 3
    assert json_depth(b"17") == 0


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_device_or_fifo_is_refused_before_any_read(model_dir, name, target, tmp_path):
    """Both through `Codec.from_pretrained`, whose identity hash once read before checking."""
    (model_dir / name).unlink()
    if target == "fifo":
        os.mkfifo(model_dir / name)
        message = "FIFO"
    else:
        os.symlink(target, model_dir / name)
        message = "outside"
    with pytest.raises(PretrainedError, match=message):
        Codec.from_pretrained(model_dir, device="cpu")


def test_symlinks_are_followed_only_inside_the_directory(model_dir, tmp_path):
    weights = model_dir / "model.safetensors"
    os.replace(weights, model_dir / "weights.bin")
    os.symlink("weights.bin", weights)  # inside: followed
    assert Codec.from_pretrained(model_dir, device="cpu").tokenizer.max_tokens > 0
    os.replace(model_dir / "weights.bin", tmp_path / "elsewhere.bin")
    weights.unlink()
    os.symlink(tmp_path / "elsewhere.bin", weights)  # a regular file, but outside: refused
    with pytest.raises(PretrainedError, match="outside .*not followed"):
        tv.Tokenizer.from_pretrained(model_dir)


def test_non_utf8_config_names_the_file(model_dir):
    (model_dir / "config.json").write_bytes(b'{"format_version": 1, "x": "\xff"}')
    with pytest.raises(PretrainedError, match=r"config\.json is not valid JSON: not UTF-8 text"):
        tv.Tokenizer.from_pretrained(model_dir)


def test_config_that_is_a_directory_is_refused(model_dir):
    (model_dir / "config.json").unlink()
    (model_dir / "config.json").mkdir()
    with pytest.raises(PretrainedError, match=r"not a regular file \(a directory\)"):
        tv.Tokenizer.from_pretrained(model_dir)


def test_huge_config_is_refused_before_reading(model_dir):
    with open(model_dir / "config.json", "r+b") as f:  # sparse: 200 MB that takes no disk
        f.truncate(200_000_000)
    with pytest.raises(LimitError, match=r"JSON bytes 200,000,000 exceed .*--max-config-bytes"):
        tv.Tokenizer.from_pretrained(model_dir)


def test_deep_decoder_is_refused_early_on_the_meta_device(model_dir, monkeypatch):
    """depth 1,000,000 once built for 30 s and 2 GB; the budget stops it after a few blocks."""
    from torch import nn

    built = []
    init = nn.Linear.__init__
    monkeypatch.setattr(
        nn.Linear, "__init__", lambda self, *a, **k: built.append(1) or init(self, *a, **k)
    )
    _edit(model_dir, decoder__depth=1_000_000)
    with pytest.raises(PretrainedError, match="the spec needs more than"):
        tv.Tokenizer.from_pretrained(model_dir)
    assert len(built) < 20_000


def test_parameter_limit_counts_on_the_meta_device(model_dir):
    limits = DEFAULT_LIMITS.replace(max_parameters=1000)
    with pytest.raises(LimitError, match=r"parameters .* \(max_parameters\); .*--max-parameters"):
        tv.Tokenizer.from_pretrained(model_dir, limits=limits)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_size": "32"}, r"image_size must be int, got '32' \(str\)"),
        ({"quantizer__levels": [1e9] * 4}, r"levels must be list\[int\]"),
        ({"quantizer__levels": [100_000] * 4}, r"codebook sizes .* outside 1\.\.2\^32"),
        ({"max_tokens": True}, "max_tokens must be int"),
        ({"decoder__width": [64]}, "width must be int"),
        ({"quantizer": "fsq"}, "quantizer must be dict"),
    ],
)
def test_spec_type_mistakes_are_named(model_dir, change, message):
    _edit(model_dir, **change)
    with pytest.raises(PretrainedError, match=message):
        tv.Tokenizer.from_pretrained(model_dir)


def _safetensors(path: Path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_many_empty_tensors_are_refused_before_parsing(tmp_path):
    header = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(50)}
    _safetensors(tmp_path / "w.safetensors", header)
    limits = DEFAULT_LIMITS.replace(max_tensors=10)
    with pytest.raises(LimitError, match="safetensors tensors 50 exceed"):
        read_weights_header(tmp_path / "w.safetensors", limits)
    assert len(read_weights_header(tmp_path / "w.safetensors")) == 50


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "shape"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, "needs 8 bytes"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"", "span 4 bytes"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "starts at"),
    ],
)
def test_inconsistent_headers_are_named(tmp_path, header, data, message):
    _safetensors(tmp_path / "w.safetensors", header, data)
    with pytest.raises(PretrainedError, match=message):
        read_weights_header(tmp_path / "w.safetensors")


def test_header_length_beyond_the_limit_or_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 2) + b"{}")
    with pytest.raises(LimitError, match="safetensors header bytes 2 exceed"):
        read_weights_header(path, DEFAULT_LIMITS.replace(max_header_bytes=1))
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(PretrainedError, match="truncated"):
        read_weights_header(path)


def test_read_json_refuses_what_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(VistokError, match="FIFO"):
        read_json(tmp_path / "pipe.json")


def test_input_folder_symlinks(tmp_path):
    from tokenizers_vis.cli.batch.paths import expand

    folder, outside = tmp_path / "in", tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    outside.mkdir()
    for path in (folder / "a.png", folder / "sub" / "b.png", outside / "secret.png"):
        Image.new("RGB", (4, 4)).save(path)
    os.symlink(outside / "secret.png", folder / "leak.png")
    os.symlink(folder / "a.png", folder / "alias.png")
    os.symlink(outside, folder / "linkdir")
    os.symlink(folder / "sub", folder / "again")
    files, failures, ignored, _ = expand([str(folder)], frozenset({".png"}))
    assert sorted(rel for _, rel in files) == ["a.png", "alias.png", "sub/b.png"]
    assert sorted(Path(p).name for p, _ in failures) == ["leak.png", "linkdir"]
    assert all("outside" in why for _, why in failures)
    assert ignored == 1  # `again`: inside, its files are walked as sub/


def test_cli_errors_name_the_option(model_dir, tmp_path, capsys):
    from tokenizers_vis.cli.main import main

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    (model_dir / "config.json").write_bytes(b"\xff\xfe")
    args = ["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.vtok"), "-q"]
    assert main([*args, "--model", str(model_dir), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--model:" in err and "not UTF-8" in err and "--device" not in err
    (model_dir / "config.json").unlink()
    (model_dir / "config.json").mkdir()
    assert main([*args, "--model", str(model_dir)]) == 2
    assert "(a directory)" in capsys.readouterr().err
    (tmp_path / "empty.vtok").write_bytes(b"")
    # Without --model: the file's own reason, listed as a failed file (exit 1, as with --model).
    assert main(["decode", str(tmp_path / "empty.vtok"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "empty.vtok" in err and "truncated" in err


def test_hugging_face_snapshot_links_into_its_blobs_are_followed(saved, tmp_path):
    """A cache snapshot's files link to ../../blobs: inside the repository's folder, allowed."""
    repo = tmp_path / "models--owner--name"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (repo / "blobs" / name).write_bytes((saved / name).read_bytes())
        os.symlink(f"../../blobs/{name}", snapshot / name)
    assert tv.Tokenizer.from_pretrained(snapshot).max_tokens > 0
    os.symlink(snapshot, tmp_path / "plain")  # the directory itself may be a link
    assert tv.Tokenizer.from_pretrained(tmp_path / "plain").max_tokens > 0
