"""ONNX export (`vistok export --onnx`, `tokenizers_vis.deploy`): onnxruntime agrees with PyTorch.

Measured max |ONNX - PyTorch| of decoded pixels (fp32, onnxruntime 1.32 CPU, torch 2.14; 64 emoji
and 64 noise images, every k in 1, 2, 4, .., K and a mixed-k batch): tiny presets 1.3e-7, emoji32
3.8e-6. The tolerances below sit about 5x above; ids must be equal exactly.

Each export takes several seconds (torch.export + onnxscript), so the default run exports two
tiny models (FSQ with nested dropout through the CLI; VQ with tail drop and causal registers
through the API); the shipped emoji32 (about 13 s on a busy 2-core CPU) and the factorized preset
are `slow`. Overwrite, failure and check tests reuse exported graphs instead of exporting again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tokenizers_vis.deploy.onnx_export as onnx_export
from tokenizers_vis import create_tokenizer
from tokenizers_vis.cli import main as cli
from tokenizers_vis.deploy import OnnxExportError, OnnxTokenizer, export_onnx
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.tokenizer import Tokenizer, prefix_lengths

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.usefixtures("one_thread")

TOLERANCE = {"tiny_cpu_fsq": 1e-6, "tiny_cpu_vq": 1e-6, "tiny_cpu_fvq": 1e-6, "emoji32": 2e-5}
FILES = ["decoder.onnx", "encoder.onnx", "onnx.json"]


def tiny(name: str, seed: int = 0) -> Tokenizer:
    torch.manual_seed(seed)
    return create_tokenizer(name).eval()  # eval: VQ's EMA would move the codebook in encode


def export_cli(*args: object) -> int:
    return cli.main(["export", *map(str, args)])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny("tiny_cpu_fsq").save_pretrained(tmp_path_factory.mktemp("tok") / "tiny_cpu_fsq")


@pytest.fixture(scope="module")
def cli_export(pretrained: Path) -> Path:
    """`vistok export --onnx OUT --model DIR`, in-process: the export every fast test shares."""
    out = pretrained.parent / "onnx"
    assert export_cli("--onnx", out, "--model", pretrained) == 0
    return out


@pytest.fixture(scope="module")
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Tokenizer, Path, float]:
    """(PyTorch tokenizer, its export directory, pixel tolerance) for the name in param."""
    name = request.param
    if name == "tiny_cpu_fsq":  # the CLI's export, not a second one
        model = Tokenizer.from_pretrained(request.getfixturevalue("pretrained"))
        return model, request.getfixturevalue("cli_export"), TOLERANCE[name]
    model = Tokenizer.from_pretrained(name) if name == "emoji32" else tiny(name)
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / name), TOLERANCE[name]


def probe(size: int, n: int = 5, seed: int = 3) -> torch.Tensor:
    """(n 3 size size) in [-1, 1]: smooth gradients and noise, so ids vary across the batch."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-1, 1, size)
    smooth = torch.rand(n, 3, 1, 1, generator=g) * ramp[None, None, :, None]  # (n 3 s 1)
    noise = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return (0.6 * smooth + 0.4 * noise).clamp(-1, 1)  # (n 3 s s)


MODELS = [
    "tiny_cpu_fsq",
    "tiny_cpu_vq",
    pytest.param("tiny_cpu_fvq", marks=pytest.mark.slow),
    pytest.param("emoji32", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("exported", MODELS, indirect=True)
def test_onnx_matches_pytorch(exported: tuple[Tokenizer, Path, float]) -> None:
    model, directory, tolerance = exported
    runner = OnnxTokenizer(directory, threads=1)
    images = probe(model.image_size)  # batch 5: not the export's example batch of 2
    ids = model.encode(images).ids  # (5 K g)
    assert np.array_equal(runner.encode(images.numpy()), ids.numpy())
    assert np.array_equal(runner.encode(images[:1].numpy()), ids[:1].numpy())  # batch 1
    worst = 0.0
    for k in sorted({*prefix_lengths(model.max_tokens), 3}):
        onnx_ids = runner.encode(images.numpy(), num_tokens=k)  # (5 k g)
        assert np.array_equal(onnx_ids, model.encode(images, num_tokens=k).ids.numpy())
        expected = model.decode(ids[:, :k]).numpy()  # (5 3 s s)
        worst = max(worst, float(np.abs(runner.decode(onnx_ids) - expected).max()))
    mixed = torch.tensor([1, 2, 3, model.max_tokens, model.max_tokens // 2])  # one batch
    tokens = model.encode(images, num_tokens=mixed)  # ids padded to the longest, lengths
    assert np.array_equal(runner.encode(images.numpy(), mixed.numpy()), tokens.ids.numpy())
    got = runner.decode(tokens.ids.numpy(), mixed.numpy())
    worst = max(worst, float(np.abs(got - model.decode(tokens).numpy()).max()))
    assert worst <= tolerance, worst
    assert got.dtype == np.float32 and got.min() >= -1 and got.max() <= 1


def test_cli_export_writes_graphs_and_config(cli_export: Path, pretrained: Path) -> None:
    assert sorted(p.name for p in cli_export.iterdir()) == FILES
    assert not [p for p in cli_export.parent.iterdir() if p.name.startswith(".")]  # no temp
    config = json.loads((cli_export / "onnx.json").read_text())
    assert config["tokenizer"] == preset_spec("tiny_cpu_fsq")
    assert (config["image_size"], config["max_tokens"], config["vocab_sizes"]) == (16, 8, [125])
    assert list(config["encoder"]["inputs"]) == ["images"]
    assert list(config["encoder"]["outputs"]) == ["ids"]
    assert list(config["decoder"]["inputs"]) == ["ids", "num_tokens"]
    assert config["decoder"]["inputs"]["ids"]["shape"] == ["batch", 8, 1]
    assert config["check"]["id_agreement"] == 1.0
    assert config["check"]["decoder_max_abs_diff"] <= TOLERANCE["tiny_cpu_fsq"]
    assert config["source"] == str(pretrained)


def test_runner_refuses_bad_inputs(cli_export: Path) -> None:
    runner = OnnxTokenizer(cli_export, threads=1)
    ids = np.zeros((2, 4, 1), np.int64)
    cases = [
        (lambda: runner.encode(np.zeros((2, 3, 8, 8), np.float32)), "images must be"),
        (lambda: runner.encode(np.zeros((2, 3, 16, 16), np.uint8)), "floats"),
        (lambda: runner.encode(probe(16).numpy(), num_tokens=9), "1..8"),
        (lambda: runner.decode(np.full((2, 4, 1), 125)), "out of range"),
        (lambda: runner.decode(ids, num_tokens=5), "1..4"),  # beyond the ids given
        (lambda: runner.decode(ids, num_tokens=np.array([1, 0])), "1..4"),
        (lambda: runner.decode(ids.astype(np.float32)), "integers"),
        (lambda: runner.decode(np.zeros((2, 9, 1), np.int64)), "1 <= n <= 8"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    # Ids past a sample's k are padding: out-of-range values there are ignored, as in PyTorch.
    padded = np.array([[[5], [999]], [[6], [7]]])
    assert runner.decode(padded, np.array([1, 2])).shape == (2, 3, 16, 16)


def copy_graphs(source: Path):
    """An `_export_graphs` stand-in that copies already exported graphs (no 8 s export)."""

    def fake(model: Tokenizer, directory: Path, opset: int) -> None:
        for name in ("encoder.onnx", "decoder.onnx"):
            shutil.copy(source / name, directory / name)

    return fake


def test_overwrite_replaces_only_a_previous_export(
    cli_export: Path, pretrained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "_export_graphs", copy_graphs(cli_export))
    out = tmp_path / "onnx"
    shutil.copytree(cli_export, out)
    (out / "stale.txt").write_text("from the previous export")
    with pytest.raises(FileExistsError, match="exists"):
        export_onnx(pretrained, out)
    assert export_onnx(pretrained, out, overwrite=True) == out
    assert sorted(p.name for p in out.iterdir()) == FILES  # swapped whole, stale file gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]  # no hidden leftovers
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not an export")
    with pytest.raises(FileExistsError, match="not an ONNX export"):
        export_onnx(pretrained, other, overwrite=True)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_failed_export_or_check_publishes_nothing(
    cli_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(model: Tokenizer, directory: Path, opset: int) -> None:
        (directory / "encoder.onnx").write_bytes(b"half a graph")
        raise OSError("disk full")

    monkeypatch.setattr(onnx_export, "_export_graphs", broken)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(tiny("tiny_cpu_fsq"), tmp_path / "a")
    # Graphs of other weights (same architecture): the check against PyTorch must catch them.
    monkeypatch.setattr(onnx_export, "_export_graphs", copy_graphs(cli_export))
    with pytest.raises(OnnxExportError, match="disagree with PyTorch"):
        export_onnx(tiny("tiny_cpu_fsq", seed=1), tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_rectified_flow_decoder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rf = {"name": "rectified_flow", "patch_size": 4, "width": 32, "depth": 1, "num_heads": 2}
    model = Tokenizer(**preset_spec("tiny_cpu_fsq", decoder=rf))
    with pytest.raises(
        OnnxExportError, match=r"generative decoders \(rectified_flow\) are not exported"
    ):
        export_onnx(model, tmp_path / "api")
    directory = model.save_pretrained(tmp_path / "rf")
    assert export_cli("--onnx", tmp_path / "cli", "--model", directory) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("vistok export: error: generative decoders (rectified_flow)")
        and "Traceback" not in err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rf"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--onnx", "{out}", "--model", "{tmp}/missing"], "neither a directory nor a shipped"),
        (["--onnx", "{existing}", "--model", "{model}"], "pass --overwrite"),
        (["--onnx", "{out}"], "--onnx needs --model"),
        (["{model}", "--onnx", "{out}", "--model", "{model}"], "not a checkpoint"),
        (["--onnx", "{out}", "--model", "{model}", "--opset", "0"], "must be >= 1"),
        (["--onnx", "{out}", "--model", "{model}", "--opset", "17"], "opset must be >= 18"),
        (["--onnx", "{existing}/keep.txt", "--model", "{model}"], "is not a directory"),
        (["{model}", "{out}", "--overwrite"], "go with --onnx"),
        (["{model}"], "give CKPT OUT_DIR"),
    ],
)
def test_cli_mistakes_exit_2_with_one_line(
    args: list[str], message: str, pretrained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    names = {"out": tmp_path / "out", "tmp": tmp_path, "existing": existing, "model": pretrained}
    assert export_cli(*(a.format(**names) for a in args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("vistok export: error:") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() and [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_decode_batch_mixes_prefix_lengths_like_separate_calls(cli_export: Path) -> None:
    """One graph serves every k: a mixed batch decodes each image as its own k would."""
    runner = OnnxTokenizer(cli_export, threads=1)
    ids = runner.encode(probe(16).numpy())  # (5 8 1)
    ks = np.array([1, 8, 2, 5, 8])
    mixed = runner.decode(ids, ks)
    for i, k in enumerate(ks):
        alone = runner.decode(ids[i : i + 1, :k])
        assert np.abs(mixed[i : i + 1] - alone).max() <= 1e-6


def test_python_api_leaves_the_callers_model_alone(cli_export: Path) -> None:
    """export_onnx exports a private CPU fp32 eval copy; the trainer's module keeps its mode."""
    model = Tokenizer.from_pretrained(cli_export.parent / "tiny_cpu_fsq").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.MonkeyPatch.context() as m:
        m.setattr(onnx_export, "_export_graphs", copy_graphs(cli_export))
        export_onnx(model, cli_export.parent / "copy")
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
