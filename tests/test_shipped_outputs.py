"""Every shipped model's outputs stay the same across refactors.

`tests/fixtures/shipped_outputs.safetensors` holds, for each shipped tokenizer, the ids of the
first held-out images of its card's split and their decodes at k = 1, 4 and K (the rectified-flow
decoder at 4 seeded steps; every third pixel of each row and column, which any change to a
decoder moves, while whole images would make the fixture over a megabyte), and for the shipped
GPT the logits of a fixed prefix and a seeded sample; recorded by `python
tests/test_shipped_outputs.py` on the code before a change. All in fp32 on one thread: the same
kernels on every run of a machine.

Ids and GPT samples must match exactly; GPT logits to 1e-6, pixels to 1e-5: a different CPU
class may round a last bit differently inside oneDNN, and on AMD CPUs the tokenizers' fp32
linears run on oneDNN rather than MKL (`cpu_gemm.linear_library`; 4e-6 at most on the
recording's images). A refactor that changes what is computed moves them by far more.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import tokenizers_vis as tv
from tokenizers_vis.data import build_dataset

FIXTURE = Path(__file__).parent / "fixtures" / "shipped_outputs.safetensors"
CARD_DATA = {
    "emoji32": ("emoji", "test"),
    "emoji32_rf": ("emoji", "test"),
    "photo32": ("photos", "test"),
    # Multi-scale crops, drawn like its validation crops (configs/data/photos64.yaml).
    "photo64": ('{"name": "photos", "zoom": [1, 32]}', "test"),
}
NUM_IMAGES = 4


@torch.no_grad()
def tokenizer_outputs(name: str) -> dict[str, torch.Tensor]:
    tok = tv.Tokenizer.from_pretrained(name).float().eval()
    data, split = CARD_DATA[name]
    ds = build_dataset(data, split, tok.image_size)
    images = torch.stack([ds[i][0] for i in range(NUM_IMAGES)])
    ids = tok.encode(images).ids
    out = {f"{name}/ids": ids}
    for k in (1, 4, tok.max_tokens):
        gen = torch.Generator().manual_seed(k)
        pixels = tok.decode(tv.Tokens(ids[:, :k]), num_steps=4, generator=gen)
        out[f"{name}/pixels_k{k}"] = pixels[..., ::3, ::3]  # (b 3 h/3 w/3)
    return out


@torch.no_grad()
def gpt_outputs() -> dict[str, torch.Tensor]:
    from generation import GPT, generate

    gpt = GPT.from_pretrained("gpt_emoji").float().eval()
    ids = torch.arange(2 * 8 * gpt.num_codebooks).reshape(2, 8, gpt.num_codebooks) % 97
    logits = gpt(ids, torch.tensor([0, 3]))
    gen = torch.Generator().manual_seed(0)
    sample = generate(gpt, num_tokens=6, labels=torch.tensor([1, 2]), cfg_scale=2.0, generator=gen)
    return {"gpt_emoji/logits": torch.stack(logits), "gpt_emoji/sample": sample}


def all_outputs() -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    out = gpt_outputs()
    for name in CARD_DATA:
        out |= tokenizer_outputs(name)
    return {key: value.contiguous() for key, value in out.items()}


@pytest.fixture(scope="module")
def recorded() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE)


@pytest.mark.parametrize("name", sorted(CARD_DATA))
def test_shipped_tokenizer_outputs_unchanged(name: str, recorded: dict) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        now = tokenizer_outputs(name)
    finally:
        torch.set_num_threads(threads)
    assert now.keys() == {k for k in recorded if k.startswith(name + "/")}
    assert torch.equal(now[f"{name}/ids"], recorded[f"{name}/ids"])
    for key, value in now.items():
        torch.testing.assert_close(value, recorded[key], rtol=0, atol=1e-5, msg=key)


def test_shipped_gpt_outputs_unchanged(recorded: dict) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        now = gpt_outputs()
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(now["gpt_emoji/sample"], recorded["gpt_emoji/sample"])
    torch.testing.assert_close(
        now["gpt_emoji/logits"], recorded["gpt_emoji/logits"], rtol=0, atol=1e-6
    )


if __name__ == "__main__":
    FIXTURE.parent.mkdir(exist_ok=True)
    save_file(all_outputs(), FIXTURE)
    print(f"wrote {FIXTURE}")
