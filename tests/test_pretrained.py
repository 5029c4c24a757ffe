"""The shipped default tokenizer: loads from the package; longer prefixes decode better."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import tokenizers_vis as tv
from tokenizers_vis.data import build_dataset
from tokenizers_vis.metrics import psnr


def test_shipped_model_is_listed_and_loads() -> None:
    assert "emoji32" in tv.list_pretrained()
    tok = tv.Tokenizer.from_pretrained("emoji32")
    assert (tok.image_size, tok.max_tokens, tok.vocab_sizes) == (32, 64, (4096,))
    assert not tok.training


@torch.no_grad()
def test_prefix_psnr_rises_monotonically_with_k_on_held_out_emoji() -> None:
    tok = tv.Tokenizer.from_pretrained("emoji32")
    data = build_dataset("emoji", split="test", size=32)
    images = torch.stack([data[i][0] for i in range(len(data))])  # all 179 held-out images
    scores = []
    for k in (1, 2, 4, 8, 16, 32, 64):
        recon = tok.decode(tok.encode(images, num_tokens=k))
        scores.append(psnr(recon, images).mean().item())
    assert all(b > a for a, b in zip(scores, scores[1:], strict=False)), scores
    assert scores[-1] > 15.0, scores  # far above the ~8 dB of an untrained decoder


def test_mixed_lengths_match_single_lengths_on_shipped_model() -> None:
    tok = tv.Tokenizer.from_pretrained("emoji32")
    data = build_dataset("emoji", split="test", size=32)
    images = torch.stack([data[i][0] for i in range(4)])
    lengths = torch.tensor([1, 7, 33, 64])
    together = tok.decode(tok.encode(images, num_tokens=lengths))
    for i, k in enumerate(lengths.tolist()):
        alone = tok.decode(tok.encode(images[i : i + 1], num_tokens=k))
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-4, rtol=1e-4)


def test_readme_python_example_runs(tmp_path, monkeypatch) -> None:
    """The README's Python block is documentation users paste; it must keep working."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)  # the example writes `my_tok/`
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "my_tok" / "model.safetensors").is_file()


def test_demo_runs_end_to_end_without_fid(tmp_path) -> None:
    from tokenizers_vis.cli import demo

    out = tmp_path / "demo"
    argv = ["--out", str(out), "--num-images", "24", "--refine-steps", "2", "--gpt-tokens", "4"]
    assert demo.main(argv) == 0
    summary = (out / "SUMMARY.md").read_text()
    assert "| 64 | 96.0 |" in summary
    assert "| PSNR | SSIM | PSNR refined (2) | SSIM refined (2) |" in summary
    # Each codec's rows once per data set, in its own table; the equal-bytes sections say what
    # is comparable.
    assert summary.count("| 95 | ") == 4 and "smallest file" in summary
    assert "Every prefix decodes: emoji" in summary and "Every prefix decodes: photos" in summary
    images = ["emoji_contact_sheet.png", "photos_contact_sheet.png", "gpt/grid.png"]
    images += [f"eval_{d}/{name}" for d in ("emoji", "photos") for name in ("reconstructions.png",
               "metric_vs_bytes.png")]  # fmt: skip
    for name in images:
        assert (out / name).stat().st_size > 1000, name
    assert (out / "eval_emoji" / "report.json").is_file()
    # Token files at every k for both held-out sets and the full-size photo, scored.
    rows = [line for line in summary.splitlines() if line.startswith("| held-out ")]
    assert len(rows) == 6 and all(float(r.split("|")[-2]) > 12 for r in rows)
    assert "comes back at 451x300" in summary
    for name in ("emoji", "photos"):
        assert len(list((out / "codec" / "decoded" / name / "k16").glob("*.png"))) == 16
    assert "72 samples of `gpt_emoji`, 4 tokens each" in summary
    # The shipped rectified-flow decoder beside the ViT one on the same ids, k = 1, 2, 4, 8.
    assert "`emoji32` (ViT) and `emoji32_rf` (rectified flow)" in summary
    section = summary.split("## Two decoders on the same tokens")[1].split("\n## ")[0]
    side = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    assert [int(r[0]) for r in side[1:]] == [1, 2, 4, 8], section  # after the header
    assert all(float(r[2]) > 10 for r in side[1:]), section  # RF PSNR: images, not noise
    assert (out / "decoders.png").stat().st_size > 1000


def test_demo_side_by_side_refuses_a_deterministic_decoder(tmp_path) -> None:
    import pytest

    from tokenizers_vis.cli.demo_generation import DemoError, decoders_side_by_side

    with pytest.raises(DemoError, match="deterministic, not a rectified flow"):
        decoders_side_by_side(tmp_path, "emoji32", "emoji32")
    assert "No rectified-flow decoder is installed" in "\n".join(
        decoders_side_by_side(tmp_path, "emoji32", None)
    )
