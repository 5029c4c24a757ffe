"""Vector quantization with a low-dimensional, L2-normalised codebook.

Papers: van den Oord et al., "Neural Discrete Representation Learning" (VQ-VAE, 2017); Yu et al.,
"Vector-quantized Image Modeling with Improved VQGAN" (ViT-VQGAN, 2022) for the factorized,
L2-normalised codes that TiTok adopts (4096 x 12); Razavi et al. (VQ-VAE-2) for EMA codebook
updates.

Changes from the references: the nearest-code search, losses and EMA statistics run in fp32 even
under autocast; EMA counts are all-reduced across processes so DDP ranks keep one codebook; dead
codes (EMA usage below a threshold) restart from latents of the current batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from tokenizers_vis.quantizers.base import Quantizer, QuantizerOutput, fp32
from tokenizers_vis.registry import QUANTIZERS


def _all_reduce(x: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x)
    return x


@QUANTIZERS.register("vq")
class VectorQuantizer(Quantizer):
    """Nearest-neighbour VQ with a straight-through estimator.

    Args:
        codebook_size: number of codes.
        dim: code dimension (the encoder projects to it).
        normalize: L2-normalise latents and codes, i.e. cosine-similarity lookup (TiTok /
        ViT-VQGAN).
        ema_decay: if set, codes follow an EMA of their assigned latents instead of a codebook loss.
        dead_code_threshold: EMA usage below which a code is restarted (EMA mode only; 0 disables).
    """

    def __init__(
        self,
        codebook_size: int = 4096,
        dim: int = 12,
        normalize: bool = True,
        ema_decay: float | None = None,
        dead_code_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.normalize = normalize
        self.ema_decay = ema_decay
        self.dead_code_threshold = dead_code_threshold
        self.vocab_sizes = (codebook_size,)
        init = torch.randn(codebook_size, dim)
        if ema_decay is None:
            self.codebook = nn.Parameter(init)
        else:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(codebook_size))
            self.register_buffer("ema_sum", init.clone())

    def _prepare(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) if self.normalize else x

    def forward(self, latents: Tensor) -> QuantizerOutput:
        """latents (b n d) -> codes (b n d), ids (b n 1)."""
        if latents.shape[-1] != self.dim:
            raise ValueError(f"VQ expects last dim {self.dim}, got {tuple(latents.shape)}")
        with fp32(latents.device.type):
            z = self._prepare(latents.float())  # (b n d)
            book = self._prepare(self.codebook.float())  # (c d)
            flat = z.flatten(0, 1)  # (b*n d): one row per token, no axis mixing
            dist2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)
            ids = dist2.argmin(dim=1).view(z.shape[0], z.shape[1], 1)  # (b n 1)
            quantized = F.embedding(ids[..., 0], book)  # (b n d)
            losses = {"quantizer/commit": F.mse_loss(z, quantized.detach())}
            if self.ema_decay is None:
                losses["quantizer/codebook"] = F.mse_loss(quantized, z.detach())
            stats = {}
            if self.training and self.ema_decay is not None:
                stats = self._ema_update(flat.detach(), ids.flatten())
            codes = z + (quantized - z).detach()  # (b n d) straight-through
        return QuantizerOutput(codes=codes, ids=ids, losses=losses, stats=stats)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, ids: Tensor) -> dict[str, Tensor]:
        onehot_count = torch.bincount(ids, minlength=self.codebook_size).float()  # (c)
        summed = torch.zeros_like(self.ema_sum).index_add_(0, ids, flat)  # (c d)
        onehot_count, summed = _all_reduce(onehot_count), _all_reduce(summed)
        decay = self.ema_decay
        self.ema_count.mul_(decay).add_(onehot_count, alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(summed, alpha=1 - decay)
        total = self.ema_count.sum()
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        count = (self.ema_count + 1e-5) / (total + self.codebook_size * 1e-5) * total
        self.codebook.copy_(self.ema_sum / count.unsqueeze(1))
        dead = self.ema_count < self.dead_code_threshold
        if self.dead_code_threshold > 0 and bool(dead.any()):
            self._restart(dead, flat)
        return {"quantizer/dead_codes": dead.sum().float()}

    def _restart(self, dead: Tensor, flat: Tensor) -> None:
        picks = torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)
        fresh = flat[picks]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(fresh, src=0)  # every rank restarts to the same latents
        self.codebook[dead] = fresh
        self.ema_sum[dead] = fresh
        self.ema_count[dead] = 1.0

    def ids_to_codes(self, ids: Tensor) -> Tensor:
        """(b n 1) -> (b n d)."""
        self.check_ids(ids)
        return F.embedding(ids[..., 0].long(), self._prepare(self.codebook.float()))
