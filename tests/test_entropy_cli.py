"""`vistok entropy fit`, `vistok encode --entropy static | --entropy-model`, `vistok info` and
`vistok decode` of entropy-coded files, in-process: outputs, one-line errors, exit statuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_entropy_gpt import random_gpt

import tokenizers_vis as tv
from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.codec import read_header
from tokenizers_vis.codec.static_table import STATIC_CONFIG, STATIC_WEIGHTS

pytestmark = pytest.mark.usefixtures("one_thread")


def _image(rng: np.random.Generator, size=(16, 16)) -> Image.Image:
    base = rng.integers(0, 256, (1, 1, 3))
    ramp = np.linspace(0, 120, size[0])[None, :, None] * rng.uniform(-1, 1)  # (1 w 1)
    pixels = np.clip(base + ramp + np.zeros((size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A tokenizer, a GPT for its vocabulary, a folder data set (train / test) and images."""
    root = tmp_path_factory.mktemp("entropy_cli")
    torch.manual_seed(0)
    tok = tv.create_tokenizer("tiny_cpu_fsq").eval()
    with torch.no_grad():
        tok.encoder.to_codes.weight.mul_(10)  # spread the ids of an untrained encoder
    tok.save_pretrained(root / "tok")
    random_gpt([125]).save_pretrained(root / "gpt")
    random_gpt([125], seed=1).save_pretrained(root / "other_gpt")
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("test", 3)):
        (root / "data" / split / "a").mkdir(parents=True)
        for i in range(n):
            _image(rng).save(root / "data" / split / "a" / f"{i}.png")
    (root / "in").mkdir()
    _image(rng, (40, 24)).save(root / "in" / "photo.png")
    return {name: root / name for name in ("tok", "gpt", "other_gpt", "data", "in")} | {
        "root": root
    }


def run(capsys, *argv) -> tuple[int, str, str]:
    status = vistok([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_fit_encode_static_info_and_decode(setup, capsys, tmp_path):
    tok, data = tmp_path / "tok", setup["data"]
    shutil.copytree(setup["tok"], tok)  # a table gets stored beside this copy
    status, out, err = run(
        capsys, "entropy", "fit", "--model", tok, "--data", f"folder:{data}", "--eval-split",
        "test", "-o", tmp_path / "table", "-q",
    )  # fmt: skip
    assert status == 0, err
    assert "10 train images" in out and "3 test images" in out and "held out" in out
    doc = json.loads((tmp_path / "table" / STATIC_CONFIG).read_text())
    assert set(doc["fit"]["bits_per_token"]) == {"train", "test"} and doc["fit"]["images"] == 10
    status, _, err = run(
        capsys, "entropy", "fit", "--model", tok, "--data", f"folder:{data}", "-o",
        tmp_path / "table", "-q",
    )  # fmt: skip
    assert status == 2 and "exists (--overwrite replaces it)" in err and len(err.splitlines()) == 1
    # Stored beside the tokenizer, `--entropy static` and `vistok decode` find it.
    for name in (STATIC_CONFIG, STATIC_WEIGHTS):
        (tok / name).write_bytes((tmp_path / "table" / name).read_bytes())
    src = setup["in"] / "photo.png"
    plain, coded = tmp_path / "plain.vtok", tmp_path / "coded.vtok"
    assert run(capsys, "encode", src, "-o", plain, "--model", tok, "-q")[0] == 0
    status, _, err = run(capsys, "encode", src, "-o", coded, "--model", tok, "--entropy", "static")
    assert status == 0 and "entropy coded with the static entropy model" in err
    header, payload = read_header(coded.read_bytes())
    assert header.coding == 1 and header.lengths == read_header(plain.read_bytes())[0].lengths
    status, out, _ = run(capsys, "info", coded)
    rate = 8 * payload / header.num_tokens
    assert status == 0 and f"rate        {rate:.3f} bits per token" in out
    assert f"model {doc['identity']}" in out
    status, out, _ = run(capsys, "info", coded, plain, "--json")
    docs = json.loads(out)
    assert docs[0]["bits_per_token"] == pytest.approx(rate) and docs[0]["coding"]["id"] == 1
    assert docs[1]["bits_per_token"] == 7 and docs[1]["entropy"] is None  # FSQ 125: 7 bits
    for name in ("plain", "coded"):
        status, _, err = run(capsys, "decode", tmp_path / f"{name}.vtok", "--model", tok, "-q")
        assert status == 0, err
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("plain", "coded"))
    assert np.array_equal(a, b)
    box = tmp_path / "set.vtoks"  # containers hold entropy-coded records like any others
    assert (
        run(capsys, "encode", setup["in"], "-o", box, "--model", tok, "--entropy", "static")[0] == 0
    )
    assert run(capsys, "decode", box, "-o", tmp_path / "set", "--model", tok, "-q")[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "set" / "photo.png")), a)


def test_gpt_coded_files_need_their_gpt(setup, capsys, tmp_path):
    tok, gpt, src = setup["tok"], setup["gpt"], setup["in"] / "photo.png"
    coded = tmp_path / "gpt.vtok"
    status, _, err = run(
        capsys, "encode", src, "-o", coded, "--model", tok, "--entropy-model", gpt,
        "--entropy-class", "1", "-q",
    )  # fmt: skip
    assert status == 0, err
    assert read_header(coded.read_bytes())[0].coding == 2
    status, out, err = run(capsys, "decode", coded, "--model", tok, "-q")
    assert status == 1 and "which was not given: decode with --entropy-model" in err
    assert not (tmp_path / "gpt.png").exists()
    other = setup["other_gpt"]
    status, _, err = run(capsys, "decode", coded, "--model", tok, "--entropy-model", other, "-q")
    assert status == 1 and "not with the gpt entropy model" in err
    status, _, err = run(capsys, "decode", coded, "--model", tok, "--entropy-model", gpt, "-q")
    assert status == 0, err
    plain = tmp_path / "plain.vtok"
    run(capsys, "encode", src, "-o", plain, "--model", tok, "-q")
    run(capsys, "decode", plain, "--model", tok, "-q")
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("plain", "gpt"))
    assert np.array_equal(a, b)
    status, out, _ = run(capsys, "info", coded)
    assert status == 0 and "class 1" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--entropy", "static", "--model", "{bare}"], "--entropy static: "),
        (["--entropy-model", "{root}/missing"], "--entropy-model: "),
        (["--entropy-model", "{bare}"], "no entropy_static.json"),
        (["--entropy-class", "1"], "--entropy-class needs --entropy-model"),
        (["--entropy-model", "{gpt}", "--entropy-class", "cat"], "classes are 0, 1, 2"),
        (["--entropy", "static", "--entropy-model", "{gpt}"], "not allowed with"),
        (["--entropy-model", "{data}"], "no entropy model"),
    ],
)
def test_usage_errors_are_one_line_and_write_nothing(setup, capsys, tmp_path, extra, message):
    bare = tmp_path / "bare"
    if any("{bare}" in e for e in extra):
        torch.manual_seed(0)
        tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(bare)
    names = {k: str(v) for k, v in setup.items()} | {"bare": str(bare)}
    extra = [e.format(**names) for e in extra]
    if "--model" not in extra:
        extra += ["--model", str(setup["tok"])]
    out = tmp_path / "x.vtok"
    status, _, err = run(capsys, "encode", setup["in"] / "photo.png", "-o", out, *extra, "-q")
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_fit_refuses_bad_data_and_writes_nothing(setup, capsys, tmp_path):
    status, _, err = run(
        capsys, "entropy", "fit", "--model", setup["tok"], "--data", "folder:/nonexistent",
        "-o", tmp_path / "t", "-q",
    )  # fmt: skip
    assert status == 2 and "--data folder:/nonexistent" in err and len(err.splitlines()) == 1
    status, _, err = run(capsys, "entropy", "fit", "--model", tmp_path / "no", "--data", "emoji")
    assert status == 2 and err.startswith("vistok entropy fit: error: --model")
    assert not (tmp_path / "t").exists()
    assert run(capsys, "entropy")[0] == 2
