"""Encoder-side refinement: spend encode time to find token ids that decode closer to the image.

Why: the encoder is amortised (one forward pass guesses the tokens of any image), and a small,
briefly trained encoder leaves quality on the table: the amortisation gap (Cremer et al.,
"Inference Suboptimality in Variational Autoencoders", 2018). Learned codecs close part of it per
image at encode time (Yang et al., "Improving Inference for Neural Image Compression", NeurIPS
2020), as JPEG and WebP encoders spend time on rate-distortion search. Here: Adam steps on the
pre-quantisation latents, through the frozen quantizer (straight-through) and decoder, keeping per
image the ids with the lowest error seen. Step 0 is the plain `encode`, so the result is never
worse on the objective.

The decoder and the token format are untouched: refined tokens decode anywhere plain ones do and
cost the same bytes. The objective averages the error over several prefix lengths (by default
1, 2, 4, .., k), so every prefix of a refined sequence still decodes to the whole image.

Use it for compression. A generator trained on tokens should see the encoder's own tokens (plain
`encode`), which is the distribution it will be asked to produce.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from einops import rearrange, repeat
from torch import Tensor

from tokenizers_vis.tokenizer import Tokenizer, Tokens, prefix_lengths


@contextmanager
def evaluating(tokenizer: Tokenizer) -> Iterator[None]:
    """Eval mode for the duration (a VQ codebook must not update from refinement steps); the
    caller's mode comes back."""
    was_training = tokenizer.training
    tokenizer.eval()
    try:
        yield
    finally:
        tokenizer.train(was_training)


def prefix_errors(
    tokenizer: Tokenizer, codes: Tensor, images: Tensor, prefixes: list[int]
) -> Tensor:
    """codes (b K d), images (b 3 h w) -> (b,) mean squared error averaged over `prefixes`.

    All prefixes decode in one batch: (p*b) sequences, each with its own length.
    """
    b, p = images.shape[0], len(prefixes)
    lengths = repeat(torch.tensor(prefixes, device=codes.device), "p -> (p b)", b=b)
    codes = repeat(codes, "b n d -> (p b) n d", p=p)  # (p*b K d)
    recon = tokenizer.decode_codes(codes, lengths).float()  # (p*b 3 h w) in [-1, 1]
    target = repeat(images.float(), "b c h w -> (p b) c h w", p=p)
    errors = (recon - target).square().mean(dim=(1, 2, 3))  # (p*b)
    return rearrange(errors, "(p b) -> p b", p=p).mean(dim=0)  # (b)


def refine_tokens(
    tokenizer: Tokenizer,
    images: Tensor,
    num_tokens: int | None = None,
    steps: int = 50,
    lr: float = 0.1,
    prefixes: Sequence[int] | None = None,
) -> Tokens:
    """Encode `images` (b 3 h w) in [-1, 1] to k tokens, refined for `steps` Adam steps.

    Args:
        tokenizer: a tokenizer with a deterministic decoder (the ViT decoder).
        images: (b 3 h w) in [-1, 1].
        num_tokens: k in 1..K (default K).
        steps: refinement steps; 0 gives exactly `tokenizer.encode(images, k)`.
        lr: Adam step size on the latents (FSQ latents are pre-tanh, so ~0.1 moves a code by
            a fraction of a level per step).
        prefixes: prefix lengths whose errors are averaged (default 1, 2, 4, .., k).

    Returns:
        Tokens with ids (b k g).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    k = int(tokenizer.check_lengths(num_tokens, 1, images.device)[0])
    prefixes = sorted(set(prefixes)) if prefixes is not None else prefix_lengths(k)
    if not prefixes or prefixes[0] < 1 or prefixes[-1] > k:
        raise ValueError(f"prefixes must lie in 1..{k}, got {prefixes}")
    tokenizer.check_images(images)
    # enable_grad: callers often sit in no_grad / inference code; refinement needs gradients
    # with respect to the latents only (`backward(inputs=...)` below never touches the weights).
    with evaluating(tokenizer), torch.enable_grad():
        with torch.no_grad():
            latents = tokenizer.encoder(images)  # (b K d)
        best_ids = descend(tokenizer, latents, images, prefixes, steps, lr)  # (b K g)
    return Tokens(best_ids[:, :k].contiguous())


def descend(
    tokenizer: Tokenizer,
    latents: Tensor,
    images: Tensor,
    prefixes: list[int],
    steps: int,
    lr: float,
) -> Tensor:
    """Adam on latents (b K d) against `prefix_errors`; -> (b K g) ids with the lowest error
    seen per image (step 0, the latents as given, included)."""
    latents = latents.detach().float().requires_grad_(True)
    optimizer = torch.optim.Adam([latents], lr=lr)
    best_error = torch.full(images.shape[:1], float("inf"), device=images.device)  # (b)
    best_ids = None
    for step in range(steps + 1):
        quantized = tokenizer.quantizer(latents)  # codes (b K d), ids (b K g)
        errors = prefix_errors(tokenizer, quantized.codes, images, prefixes)  # (b)
        better = errors.detach() < best_error  # (b)
        best_error = torch.where(better, errors.detach(), best_error)
        ids = quantized.ids.detach()
        keep = rearrange(better, "b -> b 1 1")
        best_ids = ids if best_ids is None else torch.where(keep, ids, best_ids)
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        # Per-image objectives are independent, so the sum steps each image on its own.
        errors.sum().backward(inputs=[latents])
        optimizer.step()
    return best_ids
