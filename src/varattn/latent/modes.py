r"""The mode record: every latent mode defined once, with what the rest of the package needs to know.

Config validation, models (build an inference network?), the trainer (a warm-up?), evaluation (which
terms, which validation metric?), decoding (soft context or a marginal over positions?) and alignment
extraction (is there a posterior?) ask a :class:`Mode`, never compare its name. Adding a mode means a
record here and its objective in :mod:`varattn.latent.objectives` (a test keeps the two lists equal).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mode", "MODE_RECORDS", "MODES", "get_mode"]


@dataclass(frozen=True)
class Mode:
    """What a latent mode is, as the package needs to know it.

    name: the mode's name in configs and :func:`varattn.latent.objective`.
    posterior: trains an inference network q(z | x, y).
    enumerable: its likelihood under the prior can be marginalised exactly over positions (and
        therefore by K-max truncation); False for ``soft`` (no latent variable) and ``vae-dirichlet``
        (continuous z).
    sampled: the training objective draws discrete samples (REINFORCE or importance weights).
    relaxed: the training objective uses a continuous relaxation (Gumbel-softmax or Dirichlet).
    warmup: has a warm-up objective for its first steps (``train.dirichlet_warmup_steps``).
    soft_context: the model predicts from the expected context (no latent variable at test time).
    validation: the quantity that selects checkpoints: ``"nll"`` or ``"elbo"`` (the paper selects
        variational models by the bound they optimise).
    """

    name: str
    posterior: bool = False
    enumerable: bool = True
    sampled: bool = False
    relaxed: bool = False
    warmup: bool = False
    soft_context: bool = False

    @property
    def validation(self) -> str:
        return "elbo" if self.posterior else "nll"

    @property
    def latent(self) -> bool:
        """The model marginalises a latent alignment at test time (everything but ``soft``)."""
        return not self.soft_context


MODE_RECORDS: dict[str, Mode] = {m.name: m for m in (
    Mode("soft", enumerable=False, soft_context=True),
    Mode("marginal"),
    Mode("hard-enum"),
    Mode("hard-sample", sampled=True),
    Mode("vae-enum", posterior=True),
    Mode("vae-sample", posterior=True, sampled=True),
    Mode("vae-gumbel", posterior=True, relaxed=True),
    Mode("vae-rws", posterior=True, sampled=True),
    Mode("vae-dirichlet", posterior=True, enumerable=False, relaxed=True, warmup=True),
)}

#: every mode's name, in the paper's order
MODES: tuple[str, ...] = tuple(MODE_RECORDS)


def get_mode(name: str) -> Mode:
    """The record of ``name``; ValueError naming the choices for an unknown name."""
    try:
        return MODE_RECORDS[name]
    except KeyError:
        raise ValueError(f"unknown latent mode {name!r}; choose one of {', '.join(MODES)}") from None
