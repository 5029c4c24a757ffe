"""The shipped `gpt_emoji` loads by name and reproduces its model card's bits per token."""

from __future__ import annotations

import math

import pytest
import torch

from generation.gpt import GPT
from tokenizers_vis import Tokenizer
from tokenizers_vis.data.emoji import load_emoji
from tokenizers_vis.data.transforms import to_tensor

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gpt_emoji_codes_test_emoji_at_its_cards_bits_per_token() -> None:
    assert "gpt_emoji" in GPT.list_pretrained()
    gpt = GPT.from_pretrained("gpt_emoji").eval()
    data = load_emoji(32)
    test = data["splits"] == "test"
    images = torch.stack([to_tensor(im) for im in data["images"][test]])  # (179 3 32 32)
    labels = torch.from_numpy(data["labels"][test])
    with torch.no_grad():
        ids = Tokenizer.from_pretrained("emoji32").eval().encode(images).ids  # (179 64 1)
        bits = {}
        for name, condition in (("unconditional", None), ("class", labels)):
            logits = gpt(ids, condition)[0]  # (179 64 4096)
            nats = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), ids[..., 0].flatten()
            )
            bits[name] = nats.item() / math.log(2)
    # The card: 4.95 / 4.89 bits per token (static tables: 7.42; bit-packed: 12).
    assert bits["unconditional"] == pytest.approx(4.95, abs=0.02)
    assert bits["class"] == pytest.approx(4.89, abs=0.02)


def test_emoji32_static_table_codes_test_emoji_at_7_42_bits_per_token() -> None:
    from tokenizers_vis.codec import static_table
    from tokenizers_vis.hub import resolve as resolve_tokenizer

    table = static_table.load(resolve_tokenizer("emoji32"))
    data = load_emoji(32)
    test = data["splits"] == "test"
    images = torch.stack([to_tensor(im) for im in data["images"][test]])  # (179 3 32 32)
    with torch.no_grad():
        ids = Tokenizer.from_pretrained("emoji32").eval().encode(images).ids.numpy()
    bits = table.bits(ids) / ids[..., 0].size  # the baseline: 7.42 bits per token
    assert bits == pytest.approx(7.417, abs=0.005)


def test_shipped_entropy_models_load_by_name(tmp_path) -> None:
    from generation.entropy import GPTEntropyModel
    from tokenizers_vis.codec.entropy import EntropyModelLoadError, load_entropy_model
    from tokenizers_vis.codec.static_table import StaticTable

    assert isinstance(load_entropy_model("gpt_emoji"), GPTEntropyModel)  # --entropy-model gpt_emoji
    assert isinstance(load_entropy_model("emoji32"), StaticTable)  # a tokenizer's own table
    with pytest.raises(EntropyModelLoadError, match="no such file or directory or shipped"):
        load_entropy_model("gpt_nonesuch")
