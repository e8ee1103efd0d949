"""The translation architectures, by the name ``model.arch`` gives them.

An architecture is a class ``Model(config: Config, src_vocab: int, tgt_vocab: int)`` whose forward pass
returns a :class:`varattn.latent.LatentOutput` and which implements the decoding protocol
(:mod:`varattn.models.protocol`). Registering it here (a ``module:Class`` line, imported on first use)
is all the trainer, evaluation, search and alignment need.
"""

from __future__ import annotations

import importlib

from torch import nn

#: model.arch -> "module:Class" (imported on first use) or the class
ARCHITECTURES: dict[str, str | type[nn.Module]] = {
    "rnn": "varattn.models.seq2seq:Seq2Seq",
    "transformer": "varattn.models.transformer:TransformerSeq2Seq",
}


def architecture(name: str) -> type[nn.Module]:
    """The model class registered as ``name``; ValueError naming the choices for an unknown one."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    entry = ARCHITECTURES[name]
    if isinstance(entry, str):
        module, _, cls = entry.partition(":")
        entry = getattr(importlib.import_module(module), cls)
    return entry


def register_architecture(name: str, model: str | type[nn.Module]) -> None:
    """Make ``model`` (a class with ``from_config(config, src_vocab, tgt_vocab)``, or ``"module:Class"``)
    the architecture ``model.arch: name`` builds — all a new architecture needs besides its own file."""
    ARCHITECTURES[name] = model


def build_translation_model(config, src_vocab: int, tgt_vocab: int) -> nn.Module:
    """A fresh translation model of ``config.model.arch`` for the given vocabulary sizes."""
    return architecture(config.model.arch).from_config(config, src_vocab, tgt_vocab)
