"""generation: autoregressive models over vistok's ordered 1D tokens.

Uses only the public API of `tokenizers_vis`, as any other generative model would:

    from generation import GPT, generate, sample_images
    gpt = GPT.from_pretrained("runs/gpt_emoji/export")
    tok = tokenizers_vis.Tokenizer.from_pretrained("emoji32")
    images, ids = sample_images(gpt, tok, num_tokens=16, labels=torch.tensor([0, 1]),
                                cfg_scale=2.0, generator=torch.Generator().manual_seed(0))

Training (`GPTSystem`, `TokenDataModule`) imports lightning and is not imported here.
"""

from __future__ import annotations

from generation.gpt import GPT, KVCache
from generation.presets import GPT_PRESETS, gpt_spec, list_gpts
from generation.sampling import generate, sample_images

__all__ = ["GPT", "GPT_PRESETS", "KVCache", "generate", "gpt_spec", "list_gpts", "sample_images"]
