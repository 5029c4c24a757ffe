"""GPT: a decoder-only transformer over ordered 1D image tokens, class-conditional.

Follows LlamaGen (Sun et al., 2024, "Autoregressive Model Beats Diffusion: Llama for Scalable Image
Generation"): pre-norm blocks with RMSNorm, rotary positions, a SwiGLU MLP and the class as the
first token of the sequence, replaced by a learned "null" class when it is dropped (classifier-free
guidance). For sub-codebook tokens, ids (b n g) with g > 1, it follows FQGAN's factorized AR head
(Bai et al., 2024, "Factorized Visual Tokenization and Generation"): the input embedding combines
the g sub-embeddings and a small causal transformer predicts the g sub-ids of a position one after
another, each seeing the ones before it.

What we changed: rotary positions are 1D (our tokens are an ordered sequence, coarse to fine, not a
raster grid); the g sub-embeddings are summed rather than concatenated and projected; the head
embeds earlier sub-ids with the input tables instead of a second set; for g = 1 the head is one
RMSNorm and one linear layer. Attention is torch SDPA; the KV cache belongs to the caller
(`new_cache`), so the modules hold no state between calls.

    sequence   [class, e(ids_0), ..., e(ids_{n-2})]     (b n w)
    trunk      causal blocks                           (b n w)    output t predicts token t
    head       [h_t, E(id_t,0), ..., E(id_t,g-2)]      ((b n) g w) causal -> g logits
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import SwiGLU
from torch import Tensor, nn

from tokenizers_vis import PretrainedMixin


def rotary_table(length: int, head_dim: int, base: float = 10000.0) -> Tensor:
    """(2 length head_dim): cos and sin of 1D rotary embeddings (RoFormer), half-split layout."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (d/2,)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)  # (length d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (length d)
    return torch.stack([angles.cos(), angles.sin()]).float()


def apply_rotary(x: Tensor, rope: Tensor) -> Tensor:
    """Rotate x (... t d) by rope (2 t d): pairs (i, i + d/2) turn by the position's angle."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)  # (... t d)
    return (x * rope[0] + rotated * rope[1]).to(x.dtype)


class KVCache:
    """Keys and values of every attention layer for the positions computed so far.

    Buffers (layers b heads length d) are allocated on the first write, in the dtype and on the
    device of the keys (so autocast needs no special case).

    Args:
        layers: attention layers that write to it.
        length: the most positions it holds.
    """

    def __init__(self, layers: int, length: int) -> None:
        self.layers, self.capacity = layers, length
        self.keys: Tensor | None = None
        self.values: Tensor | None = None
        self.length = 0  # positions stored; moved on by `advance` once every layer has written

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (b heads t d) after the cached positions; return all (b heads length+t d)."""
        if self.keys is None:
            b, heads, _, d = k.shape
            self.keys = k.new_zeros(self.layers, b, heads, self.capacity, d)
            self.values = v.new_zeros(self.layers, b, heads, self.capacity, d)
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions, asked for {end}")
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, t: int) -> None:
        self.length += t


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary positions, through torch SDPA.

    Dropout acts on the output projection only: dropout on the attention probabilities (LlamaGen
    sets it to 0 too) pushes CPU SDPA onto its slow unfused path.
    """

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if width % num_heads or (width // num_heads) % 2:
            raise ValueError(f"width {width} must split into {num_heads} heads of even size")
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.proj_drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, rope: Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        """x (b t w) at positions start..start+t-1 (start = cached positions) -> (b t w)."""
        qkv = rearrange(self.qkv(x), "b t (n h d) -> n b h t d", n=3, h=self.num_heads)
        q, k = apply_rotary(qkv[:2], rope)  # (b h t d) each, both rotated in one go
        v = qkv[2]
        start, t = (cache.length if cache is not None else 0), x.shape[1]
        if cache is not None:
            k, v = cache.write(layer, k, v)  # (b h start+t d)
        mask = None
        if start > 0 and t > 1:  # new queries see the whole cache and the new keys up to their own
            keys = torch.arange(start + t, device=x.device)  # (start+t,)
            mask = keys[None, :] <= start + torch.arange(t, device=x.device)[:, None]  # (t start+t)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=start == 0 and t > 1
        )  # (b h t d)
        return self.proj_drop(self.proj(rearrange(out, "b h t d -> b t (h d)")))


class Block(nn.Module):
    """Pre-norm transformer block: RMSNorm -> attention, RMSNorm -> SwiGLU (LlamaGen / Llama)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = 8 * math.ceil(mlp_ratio * width / 8)
        self.norm1 = nn.RMSNorm(width, eps=1e-5)
        self.attn = Attention(width, num_heads, dropout)
        self.norm2 = nn.RMSNorm(width, eps=1e-5)
        self.mlp = SwiGLU(width, hidden, bias=False, drop=(0.0, dropout))

    def forward(
        self, x: Tensor, rope: Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        """x (b t w) -> (b t w)."""
        x = x + self.attn(self.norm1(x), rope, cache, layer)
        return x + self.mlp(self.norm2(x))


class GPT(PretrainedMixin, nn.Module):
    """Class-conditional autoregressive model of token sequences ids (b n g), n <= K.

    Args:
        vocab_sizes: one vocabulary size per sub-codebook (the tokenizer's `vocab_sizes`).
        max_tokens: K, the longest sequence (the tokenizer's `max_tokens`).
        num_classes: class labels 0..num_classes-1; 0 for an unconditional model. Label
            `num_classes` (`null_class`) is the learned "no class" of classifier-free guidance.
        class_names: optional names of the classes, for `--class NAME`.
        width, depth, num_heads: trunk size.
        mlp_ratio: SwiGLU hidden size relative to width (8/3 keeps Llama's parameter count).
        head_depth: blocks of the factorized head (used only when g > 1).
        dropout: on embeddings, attention and MLP outputs while training.
        rope_base: rotary frequency base.

    The arguments, as given, are `self.config` (`tokenizers_vis.hub.PretrainedMixin`): saved as
    `config.json["gpt"]` (`"kind": "gpt"`), so a GPT directory gets a tokenizer's guarantees
    (strict loading, no unpickling, the spec checked against the weights' header first) and a
    tokenizer loader never mistakes it for a tokenizer.
    """

    pretrained_kind = "gpt"
    shipped_dir = Path(__file__).parent / "pretrained"

    def __init__(
        self,
        vocab_sizes: list[int],
        max_tokens: int,
        num_classes: int = 0,
        class_names: list[str] | None = None,
        width: int = 256,
        depth: int = 6,
        num_heads: int = 8,
        mlp_ratio: float = 8 / 3,
        head_depth: int = 1,
        dropout: float = 0.0,
        rope_base: float = 10000.0,
    ) -> None:
        super().__init__()
        vocab_sizes = [int(v) for v in vocab_sizes]
        if not vocab_sizes or min(vocab_sizes) < 2 or max_tokens < 1 or num_classes < 0:
            raise ValueError("GPT needs vocab_sizes >= 2, max_tokens >= 1 and num_classes >= 0")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        self.vocab_sizes, self.max_tokens = tuple(vocab_sizes), max_tokens
        self.num_classes, self.class_names = num_classes, list(class_names or [])
        self.class_embed = nn.Embedding(num_classes + 1, width)  # last row: the null class
        self.embed = nn.ModuleList(nn.Embedding(v, width) for v in vocab_sizes)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(width, num_heads, mlp_ratio, dropout) for _ in range(depth)
        )
        g = len(vocab_sizes)
        self.head_blocks = nn.ModuleList(
            Block(width, num_heads, mlp_ratio, dropout) for _ in range(head_depth if g > 1 else 0)
        )
        self.norm = nn.RMSNorm(width, eps=1e-5)
        self.outputs = nn.ModuleList(nn.Linear(width, v, bias=False) for v in vocab_sizes)
        head_dim = width // num_heads
        self.register_buffer("rope", rotary_table(max_tokens, head_dim, rope_base), False)
        self.register_buffer("head_rope", rotary_table(g, head_dim, rope_base), False)
        self.apply(_init_weights)
        for out in self.outputs:  # zero logits at the start: the loss begins at log(vocab)
            nn.init.zeros_(out.weight)

    @property
    def null_class(self) -> int:
        """The label that means "no class" (unconditional samples, the CFG branch)."""
        return self.num_classes

    @property
    def num_codebooks(self) -> int:
        return len(self.vocab_sizes)

    def labels_for(self, labels: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """(b,) int64 labels; None means the null class for every sample."""
        if labels is None:
            return torch.full((batch,), self.null_class, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, device=device).long()
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
        if bool((labels < 0).any()) or bool((labels > self.null_class).any()):
            raise ValueError(
                f"labels must be in 0..{self.null_class} (null), got {labels.tolist()}"
            )
        return labels

    def drop_labels(
        self, labels: Tensor, prob: float, generator: torch.Generator | None = None
    ) -> Tensor:
        """Replace each label by the null class with probability `prob` (CFG training)."""
        drop = torch.rand(labels.shape, generator=generator, device=labels.device) < prob  # (b,)
        return torch.where(drop, self.null_class, labels)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """ids (b t g) -> (b t w): the sum of the g sub-embeddings."""
        return sum(embed(ids[..., j]) for j, embed in enumerate(self.embed))

    def new_cache(self, length: int | None = None) -> KVCache:
        """An empty KV cache for sequences of up to `length` positions (default K)."""
        return KVCache(len(self.blocks), length or self.max_tokens)

    def hidden(self, ids: Tensor, labels: Tensor | None, cache: KVCache | None = None) -> Tensor:
        """Trunk features of [class, ids_0, .., ids_{t-1}]: (b t+1 w); output i predicts token i.

        With a cache, only the positions it does not hold yet are computed and returned:
        (b t+1-cached w). Call it with the whole prefix every step.
        """
        b, t, _ = ids.shape
        if t >= self.max_tokens:
            raise ValueError(
                f"prefix of {t} tokens: this GPT predicts tokens 0..{self.max_tokens - 1}"
            )
        start = 0 if cache is None else cache.length
        x = self.embed_tokens(ids[:, max(start - 1, 0) :])  # (b t' w)
        if start == 0:
            cls = self.class_embed(self.labels_for(labels, b, ids.device))  # (b w)
            x = torch.cat([cls[:, None], x], dim=1)  # (b t+1 w)
        x = self.drop(x)
        rope = self.rope[:, start : start + x.shape[1]]  # (2 t' d)
        for layer, block in enumerate(self.blocks):
            x = block(x, rope, cache, layer)
        if cache is not None:
            cache.advance(x.shape[1])
        return x

    def head(self, h: Tensor, sub_ids: Tensor) -> Tensor:
        """Factorized head features: h (b w), earlier sub-ids (b j) -> (b j+1 w), normalised.

        Output i is the feature that predicts sub-id i of the position.
        """
        subs = [self.embed[i](sub_ids[:, i]) for i in range(sub_ids.shape[1])]  # j x (b w)
        x = torch.stack([h, *subs], dim=1)  # (b j+1 w)
        rope = self.head_rope[:, : x.shape[1]]
        for block in self.head_blocks:
            x = block(x, rope)
        return self.norm(x)

    def forward(self, ids: Tensor, labels: Tensor | None = None) -> list[Tensor]:
        """Teacher-forced logits of every token: ids (b n g) -> g tensors (b n V_j).

        Logits at position t depend only on ids[:, :t] and, for sub-codebook j, on
        ids[:, t, :j].
        """
        b = ids.shape[0]
        h = self.hidden(ids[:, :-1], labels)  # (b n w)
        sub_ids = rearrange(ids[..., :-1], "b n j -> (b n) j")  # earlier sub-ids (j = g - 1)
        feats = self.head(rearrange(h, "b n w -> (b n) w"), sub_ids)  # ((b n) g w)
        feats = rearrange(feats, "(b n) g w -> b n g w", b=b)
        return [out(feats[:, :, j]) for j, out in enumerate(self.outputs)]

    def sub_logits(self, h: Tensor, sub_ids: Tensor) -> Tensor:
        """Logits of sub-id j = sub_ids.shape[1] of a position: h (b w), sub_ids (b j) -> (b V_j)
        (the first j sub-ids of the position are given)."""
        j = sub_ids.shape[1]
        return self.outputs[j](self.head(h, sub_ids)[:, -1])

    def next_token_logits(
        self, ids: Tensor, labels: Tensor | None = None, sub_ids: Tensor | None = None
    ) -> Tensor:
        """The entropy-model interface: logits of the next (sub-)id after a prefix.

        Args:
            ids: (b t g) the prefix, t < K (t = 0 for the first token).
            labels: (b,) class labels, or None for the null class.
            sub_ids: (b j) sub-ids of token t already known (j < g); None for j = 0.

        Returns:
            (b V_j) logits of sub-id j of token t; softmax gives the probabilities.
        """
        h = self.hidden(ids, labels)[:, -1]  # (b w)
        if sub_ids is None:
            sub_ids = ids.new_zeros(ids.shape[0], 0)
        return self.sub_logits(h, sub_ids)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
