r"""The mode record: every latent mode defined once, with what the rest of the package needs to know.

Config validation, models (build an inference network?), the trainer (a warm-up?), evaluation (which
terms, which validation metric?), decoding (soft context or a marginal over positions?) and alignment
extraction (is there a posterior?) ask a :class:`Mode`, never compare its name. The records themselves
sit beside the objectives in :mod:`varattn.latent.objectives` (``MODE_RECORDS``), so that adding a mode
is its objective function and its record line in that one file, plus its tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Mode"]


@dataclass(frozen=True)
class Mode:
    """What a latent mode is, as the package needs to know it.

    name: the mode's name in configs and :func:`varattn.latent.objective`.
    posterior: trains an inference network q(z | x, y).
    enumerable: its likelihood under the prior can be marginalised exactly over positions (and
        therefore by K-max truncation); False for ``soft`` (no latent variable) and ``vae-dirichlet``
        (continuous z).
    warmup: has a warm-up objective for its first steps (``train.warmup_steps``).
    warmup_uses_posterior: its warm-up objective trains q too (vae-enum's exact start), so the inference
        network's scores are needed during the warm-up; vae-dirichlet's warm-up needs none.
    soft_context: the model predicts from the expected context (no latent variable at test time).
    truncatable: its training objective is a sum over every position weighted by one distribution
        (the prior, or q), so it can be truncated to that distribution's top K positions
        (``topk`` of :func:`varattn.latent.objective`): ``marginal``, ``hard-enum``, ``vae-enum``.
    chain: the alignments of one sequence form a first-order chain (:mod:`varattn.latent.chain`): the
        model also gives jump scores, and the likelihood, its K-max truncation, posteriors and decoding
        run over the whole sequence, not query by query.
    residual_posterior: q's scores are by default the prior's plus the inference network's (see
        :func:`varattn.latent.posterior_scores`), not the network's alone.
    defaults: ``(("section.field", value), ...)``: settings this mode needs other than their general
        default, applied where a recipe or an override does not set them (vae-rws's sample count).
    loss: the objective's function (private to :mod:`varattn.latent.objectives`).
    validation: the quantity that selects checkpoints: ``"nll"`` or ``"elbo"`` (the paper selects
        variational models by the bound they optimise).
    """

    name: str
    posterior: bool = False
    enumerable: bool = True
    warmup: bool = False
    warmup_uses_posterior: bool = False
    soft_context: bool = False
    residual_posterior: bool = False
    chain: bool = False
    truncatable: bool = False
    defaults: tuple[tuple[str, Any], ...] = ()
    loss: Callable[[Any], Any] = field(default=None, compare=False, repr=False)  # the objective's function

    @property
    def validation(self) -> str:
        return "elbo" if self.posterior else "nll"

    @property
    def latent(self) -> bool:
        """The model marginalises a latent alignment at test time (everything but ``soft``)."""
        return not self.soft_context
