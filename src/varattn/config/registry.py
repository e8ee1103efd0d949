"""The sections a config has: the core's four, then each registered component's.

A component (an architecture, a task) that reads settings of its own registers their dataclass under a
section name with :func:`register_section`; :class:`Config` then has that section, YAML files and
overrides may set it, and validation and ``varattn config show`` read its fields' metadata. The
built-in components register when :mod:`varattn.models` is imported, which :func:`sections` does on
first use (the config layer names no component itself).
"""

from __future__ import annotations

import dataclasses
import importlib

from varattn.errors import UserError

from varattn.config.fields import Section, check_field
from varattn.config.sections import DataConfig, DecodeConfig, ModelConfig, TrainConfig

__all__ = ["Config", "register_section", "sections", "section_owner"]

_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
                              "decode": DecodeConfig}
_OWNERS: dict[str, str] = {name: "varattn.config.sections" for name in _SECTIONS}
_BUILTINS_LOADED = False


def register_section(name: str, settings: type, owner: str) -> None:
    """Give every config the section ``name`` with the dataclass ``settings`` (fields made with
    :func:`varattn.config.fields.setting`), owned by the module ``owner``. Registering the same class
    again is a no-op; another class under a taken name is an error."""
    if not (dataclasses.is_dataclass(settings) and issubclass(settings, Section)):
        raise TypeError(f"section {name!r}: {settings!r} is not a dataclass subclassing varattn.config.Section")
    kinds = {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
             for f in dataclasses.fields(settings)}
    odd = [key for key, kind in kinds.items() if kind not in ("int", "float", "str", "bool")]
    if odd:
        raise TypeError(f"section {name!r}: fields {odd} must be int, float, str or bool")
    if _SECTIONS.get(name, settings) is not settings:
        raise ValueError(f"section {name!r} is already {_SECTIONS[name].__qualname__} of {_OWNERS[name]}")
    _SECTIONS[name] = settings
    _OWNERS[name] = owner


def sections() -> dict[str, type]:
    """Section name -> its dataclass, the core's first, then in registration order."""
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        importlib.import_module("varattn.models")  # the built-in architectures register their sections
    return dict(_SECTIONS)


def section_owner(name: str) -> str:
    sections()
    return _OWNERS[name]


class Config:
    """Every setting of a run: one attribute per section (``config.model``, ``config.transformer``, ...),
    each a dataclass instance. ``Config(model=ModelConfig(...))`` fills the sections not given with
    their defaults."""

    def __init__(self, **given):
        known = sections()
        unknown = set(given) - set(known)
        if unknown:
            raise TypeError(f"unknown config sections {sorted(unknown)}; known: {', '.join(known)}")
        for name, settings in known.items():
            setattr(self, name, given[name] if given.get(name) is not None else settings())

    def section_names(self) -> list[str]:
        return [name for name in sections() if name in vars(self)]

    def to_dict(self) -> dict:
        return {name: dataclasses.asdict(getattr(self, name)) for name in self.section_names()}

    def __eq__(self, other) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in self.section_names()) + ")"

    def validate(self, where: str = "config", origins: dict[str, str] | None = None) -> "Config":
        """Check every setting against its field's range and choices, then each section's ``check``;
        errors name ``where`` (the file), or ``origins[key]`` (the override that set the key)."""
        origins = origins or {}

        def fail(key: str, rule: str, fix: str) -> None:
            section, name = key.split(".", 1)
            raise UserError(f"{origins.get(key, where)}: {key}={getattr(getattr(self, section), name)!r} {rule} — {fix}")

        for section in self.section_names():
            values = getattr(self, section)
            for field in dataclasses.fields(values):
                problem = check_field(field, getattr(values, field.name))
                if problem:
                    fail(f"{section}.{field.name}", *problem)
        for section in self.section_names():
            getattr(self, section).check(self, fail, origins)
        return self
