"""GPTSystem: the LightningModule that trains a `GPT` on pretokenized shards.

The system owns what is about training, not the model: the class dropout that teaches the null
class for classifier-free guidance, the loss over the valid positions, the optimizer and its
schedule. Validation logs the cross-entropy and the bits an image's tokens would cost coded with
the model's probabilities (`val/bits_per_image`), the number the entropy coder will achieve.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from generation.gpt import GPT
from generation.presets import gpt_spec


def adamw(params: Iterable[Any]) -> torch.optim.Optimizer:
    """Default optimizer: AdamW as LlamaGen trains (betas 0.9 / 0.95, weight decay 0.05)."""
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)


def token_losses(logits: list[Tensor], ids: Tensor, lengths: Tensor | None) -> Tensor:
    """Cross-entropy in nats of every sub-id: logits g x (b n V_j), ids (b n g) -> (b n g).

    Positions at or after a sample's length are 0.
    """
    b, n, _ = ids.shape
    ce = torch.stack(
        [
            F.cross_entropy(lg.float().flatten(0, 1), ids[..., j].flatten(), reduction="none")
            for j, lg in enumerate(logits)
        ],
        dim=-1,
    ).view(b, n, -1)  # (b n g)
    if lengths is not None:
        valid = torch.arange(n, device=ids.device)[None, :] < lengths[:, None]  # (b n)
        ce = ce * valid[..., None]
    return ce


class GPTSystem(L.LightningModule):
    """Train a GPT with next-token cross-entropy and class dropout.

    Args:
        gpt: a preset name ("gpt_tiny", "gpt_emoji", "gpt_b") or a spec dict (optionally with
            "name": preset plus changed keys). Vocabularies, K and classes come from `data_info`.
        data_info: the token data's `vocab_sizes`, `max_tokens`, `num_classes`, `class_names`
            and `tokenizer` (LightningCLI links it from the data module).
        optimizer: factory for the optimizer (LightningCLI fills it from YAML). 1-D parameters
            (norm scales) get no weight decay.
        warmup_steps: linear learning-rate warm-up.
        lr_decay: "cosine" to `min_lr_ratio` at `trainer.max_steps`, or "constant".
        min_lr_ratio: final learning rate as a fraction of the peak.
        class_dropout: probability that a training label becomes the null class (CFG).
        init_from: a pretrained GPT directory whose weights start this run (same architecture).
    """

    def __init__(
        self,
        gpt: str | dict[str, Any] = "gpt_tiny",
        data_info: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = adamw,
        warmup_steps: int = 100,
        lr_decay: str = "cosine",
        min_lr_ratio: float = 0.1,
        class_dropout: float = 0.1,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        if lr_decay not in ("cosine", "constant"):
            raise ValueError(f"lr_decay must be 'cosine' or 'constant', got {lr_decay!r}")
        if not 0.0 <= class_dropout < 1.0:
            raise ValueError(f"class_dropout must be in [0, 1), got {class_dropout}")
        self.save_hyperparameters(ignore=["optimizer"])
        self.gpt = GPT(**gpt_spec(gpt, data_info))
        if init_from:
            pretrained = GPT.from_pretrained(init_from)
            if pretrained.config != self.gpt.config:
                raise ValueError(f"init_from {init_from!r} has another architecture or data")
            self.gpt.load_state_dict(pretrained.state_dict(), strict=True)
        self.tokenizer_name = (data_info or {}).get("tokenizer")
        self.optimizer_factory = optimizer

    def __deepcopy__(self, memo: dict[int, Any]) -> GPTSystem:
        """Copy the module (EMAWeightAveraging does) but share the optimizer factory, which under
        LightningCLI holds the whole CLI (trainer, data and, under DDP, a process group)."""
        memo[id(self.optimizer_factory)] = self.optimizer_factory
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))  # __getstate__ drops trainer
        return new

    def losses(self, batch: tuple[Tensor, Tensor, Tensor], drop: float) -> tuple[Tensor, Tensor]:
        """(mean cross-entropy per sub-id, bits per image (b,)) of a batch."""
        ids, lengths, labels = batch
        if self.gpt.num_classes == 0:
            labels = None
        elif drop > 0:
            labels = self.gpt.drop_labels(labels, drop)
        ce = token_losses(self.gpt(ids, labels), ids, lengths)  # (b n g)
        count = lengths.sum() * ids.shape[2]
        return ce.sum() / count, ce.sum(dim=(1, 2)) / math.log(2)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self.losses(batch, self.hparams.class_dropout)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        loss, bits = self.losses(batch, 0.0)
        b = batch[0].shape[0]
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=b)
        self.log("val/bits_per_image", bits.mean(), sync_dist=True, batch_size=b)
        self.log("val/bits_per_token", bits.sum() / batch[1].sum(), sync_dist=True, batch_size=b)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The resolved spec, so export needs neither the presets nor the data of this run.
        checkpoint["gpt_spec"] = self.gpt.config
        checkpoint["tokenizer"] = self.tokenizer_name

    def configure_optimizers(self) -> Any:
        params = [p for p in self.gpt.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2]},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        optimizer = self.optimizer_factory(groups)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _lr_factor(self, step: int) -> float:
        h = self.hparams
        if step < h.warmup_steps:
            return (step + 1) / h.warmup_steps
        total = max(0, self.trainer.max_steps) if self._trainer is not None else 0
        if h.lr_decay == "constant" or total <= h.warmup_steps:
            return 1.0
        progress = min(1.0, (step - h.warmup_steps) / (total - h.warmup_steps))
        return h.min_lr_ratio + (1 - h.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
