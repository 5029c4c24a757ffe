"""Loss weights: the one table that turns components' unweighted named terms into a loss.

Components return unweighted terms under fixed names (`"recon/l1"`, `"quantizer/commit"`, ...);
the training system weighs them with `loss_weights`, a dict keyed by those names, given whole in
the YAML (`model.loss_weights`) or in Python. The rules make a silent weight impossible:

  * a name no component returns (a typo such as "recon/L1") is refused when the system is built;
  * a term a component returns but the table does not name is refused at the first step that
    produces it, naming the term. There is no implicit weight: 0 is how a term is logged without
    training on it;
  * a table given replaces the defaults; it is not merged with them, so a YAML's table is the
    whole story of the run.

Three terms are computed only with a positive weight, because computing them costs a network:
"recon/perceptual" (the Inception distance), "gan/generator" (builds the discriminator) and
"semantic/cosine" / "semantic/contrastive" (builds the alignment head and its teacher).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from tokenizers_vis.errors import VistokError

# Every unweighted term a vistok component returns, with the weight a run uses when it gives no
# table (the ViT tokenizer recipes' values; the cheap terms absent from a run are ignored).
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {
    "recon/l1": 1.0,  # the training system: pixels
    "recon/l2": 1.0,
    "recon/perceptual": 0.0,  # the system: offline Inception distance (0: not computed)
    "quantizer/commit": 0.25,  # VQ / factorized quantizers
    "quantizer/codebook": 0.25,
    "quantizer/disentangle": 0.0,  # factorized quantizers (FQGAN uses 0.1)
    "semantic/cosine": 0.0,  # the system's semantic alignment head (FQGAN uses 0.5)
    "semantic/contrastive": 0.0,
    "flow/mse": 1.0,  # a generative decoder's flow-matching term
    "repa/cosine_distance": 0.5,  # the system's REPA term (0.5 in the paper)
    "gan/generator": 0.0,  # the system's hinge GAN (0: no discriminator)
}
LOSS_TERMS = frozenset(DEFAULT_LOSS_WEIGHTS)


class LossWeightError(VistokError):
    """A loss-weight table that names an unknown term, or misses a term a run produces."""


def check_loss_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """The table a run uses: `weights` (refusing unknown names) or the defaults when None."""
    if weights is None:
        return dict(DEFAULT_LOSS_WEIGHTS)
    unknown = sorted(set(weights) - LOSS_TERMS)
    if unknown:
        raise LossWeightError(
            f"loss_weights: unknown terms {unknown}; known: {', '.join(sorted(LOSS_TERMS))}"
        )
    return {name: float(value) for name, value in weights.items()}


def weigh(
    terms: Mapping[str, Tensor], weights: Mapping[str, float], device: torch.device
) -> Tensor:
    """() sum of weight * term over `terms`, on `device`; a term missing from `weights` is
    refused by name."""
    missing = sorted(set(terms) - set(weights))
    if missing:
        raise LossWeightError(
            f"loss terms {missing} have no weight in loss_weights (weighted: "
            f"{', '.join(sorted(weights))}); give each one, 0 to log it without training on it"
        )
    total = torch.zeros((), device=device)
    for name, value in terms.items():
        total = total + weights[name] * value
    return total
