"""Loss weights: one table keyed by term names; unknown names and unweighted terms are refused;
every shipped recipe (configs/tokenizer/*.yaml) weighs every term its run produces."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tokenizers_vis.errors import VistokError
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.tokenizer import Tokenizer
from tokenizers_vis.training.loss_weights import (
    DEFAULT_LOSS_WEIGHTS,
    LOSS_TERMS,
    LossWeightError,
    check_loss_weights,
    weigh,
)
from tokenizers_vis.training.system import TokenizerSystem

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "tokenizer"
# Recipes that are layered over another (LightningCLI --config a.yaml --config b.yaml).
LAYERED = {"emoji32_fvq_semantic": "emoji32_fvq", "photo32_fsq": "emoji32_fsq"}
TINY = {"width": 16, "depth": 1, "num_heads": 1}  # same parts and terms, a fraction of the cost

pytestmark = pytest.mark.usefixtures("one_thread")


def test_an_unknown_term_is_refused_with_the_known_ones() -> None:
    with pytest.raises(LossWeightError, match=r"unknown terms \['recon/L1'\]; known: .*recon/l1"):
        TokenizerSystem("tiny_cpu_fsq", loss_weights={"recon/L1": 1.0, "recon/l2": 1.0})
    assert issubclass(LossWeightError, VistokError)  # a user mistake: one line, exit 2 in the CLI


def test_a_produced_term_without_a_weight_is_refused_at_the_first_step(images16) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    system = TokenizerSystem("tiny_cpu_vq", loss_weights={"recon/l1": 1.0, "recon/l2": 1.0})
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    data = DataLoader(TensorDataset(images16, torch.zeros(4)), batch_size=4)
    with pytest.raises(LossWeightError, match=r"loss terms \['quantizer/commit'\] have no weight"):
        trainer.fit(system, data)  # the VQ's commitment term
    assert trainer.global_step == 0  # refused before any weight moved


def test_weights_multiply_their_terms_and_zero_logs_without_training() -> None:
    weights = {"recon/l1": 2.0, "recon/l2": 0.0}
    terms = {"recon/l1": torch.tensor(0.5), "recon/l2": torch.tensor(3.0)}
    assert weigh(terms, check_loss_weights(weights), torch.device("cpu")) == 1.0
    assert check_loss_weights(None) == DEFAULT_LOSS_WEIGHTS and set(LOSS_TERMS) == set(
        DEFAULT_LOSS_WEIGHTS
    )


def test_the_default_table_weighs_every_term_of_every_preset() -> None:
    for name in ("tiny_cpu_fsq", "tiny_cpu_vq", "tiny_cpu_fvq"):
        tok = Tokenizer(**preset_spec(name)).train()
        out = tok(torch.rand(2, 3, 16, 16) * 2 - 1)
        assert set(out.losses) <= LOSS_TERMS, name
    system = TokenizerSystem("tiny_cpu_fvq")
    assert system.discriminator is None and system.semantic is None  # weight 0: not built


def test_optional_parts_follow_their_weights() -> None:
    weights = {"recon/l1": 1.0, "recon/l2": 1.0, "gan/generator": 0.1}
    system = TokenizerSystem("tiny_cpu_fsq", loss_weights=weights, adversarial={"channels": 8})
    assert system.discriminator is not None and system.adversarial["start_step"] == 0
    with pytest.raises(ValueError, match=r"adversarial: unknown keys \['start'\]"):
        TokenizerSystem("tiny_cpu_fsq", loss_weights=weights, adversarial={"start": 5})
    semantic = {"teacher": {"name": "timm", "model": "test_vit"}, "loss": "contrastive"}
    wrong = {**DEFAULT_LOSS_WEIGHTS, "semantic/cosine": 0.5}
    with pytest.raises(LossWeightError, match="'semantic/contrastive', which loss_weights weighs"):
        TokenizerSystem("tiny_cpu_fvq", loss_weights=wrong, semantic=semantic)


def recipe(name: str) -> dict:
    """The `model` section LightningCLI builds from a recipe (and the one it is layered over);
    a later config's dict replaces the earlier one's, as jsonargparse does."""
    model = {}
    for part in (LAYERED.get(name), name):
        if part is not None:
            model |= yaml.safe_load((CONFIGS / f"{part}.yaml").read_text())["model"]
    return model


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_recipe_weighs_every_term_its_run_produces(name: str) -> None:
    model = recipe(name)
    weights = check_loss_weights(model.get("loss_weights"))  # no unknown names
    spec = preset_spec(model.get("tokenizer", "tiny_cpu_fsq"), encoder=TINY, decoder=TINY)
    tok = Tokenizer(**spec).train()
    size = tok.image_size
    out = tok(torch.rand(1, 3, size, size) * 2 - 1)
    terms = {"recon/l1": torch.zeros(()), "recon/l2": torch.zeros(()), **out.losses}
    assert torch.isfinite(weigh(terms, weights, torch.device("cpu")))  # refuses a missing one
