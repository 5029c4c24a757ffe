"""Every shipped tokenizer reproduces the numbers its model card states.

A card's first table of `| k | bytes | PSNR | SSIM | ...` rows is re-measured here: the model
loaded through `from_pretrained`, its held-out split encoded once and every prefix decoded, in
fp32 (the cards were measured with `precision: auto`, bf16 on the CPUs that trained them, which
moves PSNR by a few hundredths of a dB).
"""

from __future__ import annotations

import json
import re

import pytest
import torch

import tokenizers_vis as tv
from tokenizers_vis.data import build_dataset
from tokenizers_vis.hub import SHIPPED_DIR
from tokenizers_vis.metrics import psnr, ssim

# The held-out data each card's table was measured on (the card says so in words).
CARD_DATA = {
    "emoji32": ("emoji", "test"),
    "emoji32_rf": ("emoji", "test"),
    "photo32": ("photos", "test"),
    # Multi-scale crops, drawn like its validation crops (configs/data/photos64.yaml).
    "photo64": ('{"name": "photos", "zoom": [1, 32]}', "test"),
}
ROW = re.compile(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", re.M)


def card_rows(name: str) -> list[tuple[int, float, float, float]]:
    """(k, bytes, PSNR, SSIM) of the card's first table (its rows up to the first other line)."""
    text = (SHIPPED_DIR / name / "README.md").read_text()
    rows = []
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            rows.append((int(match[1]), float(match[2]), float(match[3]), float(match[4])))
        elif rows and not line.startswith("|"):
            break  # the first table ended
    return rows


def test_every_shipped_tokenizer_has_a_card_and_known_data() -> None:
    for name in tv.list_pretrained():
        assert name in CARD_DATA, f"{name}: say which data its card was measured on"
        assert len(card_rows(name)) >= 3, f"{name}: its card has no per-k table"


def _generative(name: str) -> bool:
    config = json.loads((SHIPPED_DIR / name / "config.json").read_text())
    return config["tokenizer"]["decoder"]["name"] == "rectified_flow"


# A rectified-flow card decodes every image at 25 steps per k (CPU-minutes): slow-marked.
CARDS = [
    pytest.param(name, marks=pytest.mark.slow) if _generative(name) else name
    for name in tv.list_pretrained()
]


@pytest.mark.parametrize("name", CARDS)
@torch.no_grad()
def test_card_numbers_reproduce(name: str) -> None:
    if _generative(name):  # sampled: measured as the card was, through the evaluation
        _check_sampled_card(name)
        return
    torch.set_num_threads(min(2, torch.get_num_threads()))
    tok = tv.Tokenizer.from_pretrained(name)
    data, split = CARD_DATA[name]
    ds = build_dataset(data, split, tok.image_size)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    ids = tok.encode(images)
    bits = sum(torch.tensor(tok.vocab_sizes, dtype=torch.float64).log2()).item()
    for k, size, card_psnr, card_ssim in card_rows(name):
        recon = tok.decode(tv.Tokens(ids.ids[:, :k]))
        assert size == pytest.approx(k * bits / 8, abs=0.05), (k, size)
        measured = psnr(recon, images).mean().item(), ssim(recon, images).mean().item()
        assert measured[0] == pytest.approx(card_psnr, abs=0.06), (k, measured)
        assert measured[1] == pytest.approx(card_ssim, abs=0.003), (k, measured)


def _check_sampled_card(name: str) -> None:
    """A rectified-flow card, re-measured by the evaluation that wrote it: same seed, batches
    and precision (`auto`), so only a CPU without native bf16 moves it (by sampling noise)."""
    from tokenizers_vis.evaluation import evaluate_tokenizer

    rows = card_rows(name)
    data, split = CARD_DATA[name]
    result = evaluate_tokenizer(
        name, data, split=split, ks=[k for k, *_ in rows], codecs="none", fid=False,
        perceptual="none",
    )  # fmt: skip
    measured = {r["k"]: (r["psnr"], r["ssim"]) for r in result.rows}
    for k, _, card_psnr, card_ssim in rows:
        assert measured[k][0] == pytest.approx(card_psnr, abs=0.1), (k, measured[k])
        assert measured[k][1] == pytest.approx(card_ssim, abs=0.005), (k, measured[k])
