"""Semantic alignment: one sub-codebook's tokens predict a frozen teacher's image features.

Follows FQGAN (Bai et al., "Factorized Visual Tokenization and Generation", arXiv:2411.16681,
2024): the semantic sub-codebook's codes pass through a small head that regresses a pretrained
vision model's features (CLIP / DINO there) with a cosine loss, so that sub-codebook's vocabulary
comes to mean something while the others keep the detail.

What we changed:
  * 1D ordered tokens have no grid to match a feature map against, so the head predicts the
    teacher's global (pooled) image feature from the sub-codebook's codes at the prefix the
    decoder saw (per-sample lengths, a masked mean over positions with a learned position
    embedding): short prefixes have to carry the semantics too.
  * Teachers load offline only (`losses.teachers`): the TF-FID InceptionV3 or a timm model whose
    weights come from a local file. Nothing downloads.
  * Targets are centred by a running mean of the teacher features: Inception's pool features are
    non-negative, so raw cosines are all near 1 and a constant prediction would already score
    well. A contrastive (InfoNCE over the batch) loss is the alternative to the cosine.
  * The teacher is frozen (no gradients, always in eval mode) and its features are cached per
    image (`losses.feature_cache`), so each training image pays for one teacher pass.

The head's loss is an unweighted named term ("semantic/cosine" or "semantic/contrastive"); its
weight lives in the training system.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tokenizers_vis.losses.feature_cache import FeatureCache
from tokenizers_vis.losses.teachers import build_teacher, teacher_key
from tokenizers_vis.quantizers.factorized import sub_dims

AlignmentLoss = Literal["cosine", "contrastive"]


class SemanticAlignment(nn.Module):
    """Head and loss: a sub-codebook's codes predict the teacher's (centred) image features.

    Args:
        in_dim: code dimension of the aligned sub-codebook.
        feature_dim: teacher feature size.
        num_tokens: K, for the learned position embedding.
        width: head width.
        loss: "cosine" (1 - cos, FQGAN's) or "contrastive" (InfoNCE over the batch).
        temperature: InfoNCE temperature.
        momentum: of the running mean that centres the teacher features.
    """

    def __init__(
        self,
        in_dim: int,
        feature_dim: int,
        num_tokens: int,
        width: int = 256,
        loss: AlignmentLoss = "cosine",
        temperature: float = 0.1,
        momentum: float = 0.99,
    ) -> None:
        super().__init__()
        if loss not in ("cosine", "contrastive"):
            raise ValueError(f"loss must be 'cosine' or 'contrastive', got {loss!r}")
        self.loss, self.temperature, self.momentum = loss, temperature, momentum
        self.token_mlp = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, width))
        self.pos_embed = nn.Parameter(torch.zeros(num_tokens, width))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, feature_dim))
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        # A float flag, not a bool: weight averaging (EMA) interpolates every buffer.
        self.register_buffer("initialized", torch.zeros(()))

    def predict(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """codes (b n d), lengths (b,) or None -> (b feature_dim) predicted centred features."""
        b, n, _ = codes.shape
        h = self.token_mlp(codes) + self.pos_embed[:n]  # (b n w)
        valid = torch.ones(b, n, dtype=torch.bool, device=codes.device)
        if lengths is not None:
            valid = torch.arange(n, device=codes.device)[None] < lengths[:, None]  # (b n)
        weights = rearrange(valid.to(h.dtype), "b n -> b n 1")
        pooled = (h * weights).sum(1) / weights.sum(1).clamp_min(1)  # (b w)
        return self.out(pooled)

    @torch.no_grad()
    def _centre(self, features: Tensor) -> Tensor:
        if self.training:
            batch_mean = features.mean(0)
            if not bool(self.initialized > 0):
                self.feature_mean.copy_(batch_mean)
                self.initialized.fill_(1.0)
            else:
                self.feature_mean.lerp_(batch_mean, 1 - self.momentum)
        return features - self.feature_mean

    def forward(
        self, codes: Tensor, features: Tensor, lengths: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Unweighted alignment term.

        Args:
            codes: (b n d) the aligned sub-codebook's straight-through codes.
            features: (b f) teacher features (detached; no gradient reaches the teacher).
            lengths: (b,) prefix length each sample's decoder saw; None = all n.

        Returns:
            {"semantic/cosine": ()} or {"semantic/contrastive": ()}, float32.
        """
        pred = self.predict(codes, lengths).float()  # (b f)
        target = self._centre(features.detach().float())  # (b f)
        if self.loss == "cosine":
            value = (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
        else:
            logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).t()  # (b b)
            labels = torch.arange(pred.shape[0], device=pred.device)
            value = F.cross_entropy(logits / self.temperature, labels)
        return {f"semantic/{self.loss}": value}


def build_alignment(
    spec: dict[str, Any], quantizer: nn.Module, num_tokens: int
) -> tuple[SemanticAlignment, FeatureCache, int]:
    """The head, the cached teacher and the aligned sub-codebook's index from a spec.

    Args:
        spec: `{"codebook": 0, "teacher": {"name": "inception"}, "cache": True, "width": 256,
            "loss": "cosine", "temperature": 0.1}`; every key optional (these are the defaults);
            `"cache_file": PATH` keeps the teacher's features on disk across runs.
        quantizer: the tokenizer's quantizer (its sub-codebooks' code dims size the head).
        num_tokens: K.
    """
    spec = dict(spec)
    codebook = int(spec.pop("codebook", 0))
    teacher_spec = spec.pop("teacher", {"name": "inception"})
    teacher = build_teacher(teacher_spec)
    cache = FeatureCache(
        teacher,
        max_entries=100_000 if spec.pop("cache", True) else 0,
        path=spec.pop("cache_file", None),
        teacher_key=teacher_key(teacher_spec),
    )
    dims = sub_dims(quantizer)
    if not 0 <= codebook < len(dims):
        raise ValueError(f"semantic codebook {codebook} out of range: {len(dims)} sub-codebooks")
    head = SemanticAlignment(dims[codebook], teacher.num_features, num_tokens, **spec)
    return head, cache, codebook
