"""The translation architectures, by the name ``model.arch`` gives them.

An architecture is a class ``Model(config: Config, src_vocab: int, tgt_vocab: int)`` whose forward pass
returns a :class:`varattn.latent.LatentOutput` and which implements the decoding protocol
(:mod:`varattn.models.protocol`). Registering it (:func:`register_architecture`, from its own module,
which :mod:`varattn.models` imports) is all the trainer, evaluation, search and alignment need.
"""

from __future__ import annotations

import importlib

from torch import nn

from varattn.config import register_section

#: model.arch -> "module:Class" (imported on first use) or the class
ARCHITECTURES: dict[str, str | type[nn.Module]] = {
    "rnn": "varattn.models.seq2seq:Seq2Seq",  # reads the model section; the others register themselves
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


def register_architecture(name: str, model: str | type[nn.Module], settings: type | None = None) -> None:
    """Make ``model`` (a class with ``from_config(config, src_vocab, tgt_vocab)``, or ``"module:Class"``)
    the architecture ``model.arch: name`` builds, with its own config section ``name`` when ``settings``
    (a :class:`varattn.config.Section` dataclass) is given — all a new architecture needs besides its
    own file."""
    if settings is not None:
        register_section(name, settings, owner=settings.__module__)
    ARCHITECTURES[name] = model


def build_translation_model(config, src_vocab: int, tgt_vocab: int) -> nn.Module:
    """A fresh translation model of ``config.model.arch`` for the given vocabulary sizes."""
    return architecture(config.model.arch).from_config(config, src_vocab, tgt_vocab)
