"""Configs as files: YAML recipes, ``section.field=value`` overrides, saved run configs.

A recipe is one per corpus and architecture; the mode is a setting like any other
(``model.mode=vae-enum``). What a setting ends up as, from weakest to strongest: its field's default,
the mode's own default (:attr:`varattn.latent.Mode.defaults`, e.g. vae-rws's 5 samples), the recipe's
top-level settings, the recipe's ``modes: {MODE: {section: {field: value}}}`` block for the chosen
mode, the overrides. Unknown sections or keys are errors that name the file and the key, so a typo
never silently trains the wrong model.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from pathlib import Path

import yaml

from varattn.config.fields import help_of
from varattn.config.registry import Config, sections
from varattn.config.sections import DecodeConfig
from varattn.errors import UserError
from varattn.latent import MODE_RECORDS, MODES

__all__ = ["from_dict", "from_saved", "load", "apply_overrides", "describe", "save", "flatten",
           "resume_changes", "RESUME_CHANGEABLE", "RENAMED"]

#: old spelling -> new spelling of keys renamed since runs were first saved; saved configs are read
#: silently, a file or an override with the old name is refused with one line naming the new one
RENAMED = {"train.dirichlet_warmup_steps": "train.warmup_steps"}

# Settings a resumed run may change (applied, recorded in config.yaml, reported); any other change
# (model shape, mode, data, batch order, seed, optimizer) is refused.
RESUME_CHANGEABLE = frozenset(
    [f"train.{k}" for k in ("epochs", "max_steps", "max_seconds", "lr", "lr_decay", "decay_from_epoch", "min_lr",
                            "validate_every", "device", "bf16", "cpu_bf16", "tensorboard", "progress", "init_from",
                            "eval_samples", "max_nonfinite_steps")]
    + ["data.eval_max_tokens", "model.cuda_graph"] + [f"decode.{f.name}" for f in dataclasses.fields(DecodeConfig)]
)


def from_saved(data: dict, where: str) -> Config:
    """:func:`from_dict` for a config saved with a run or a checkpoint: renamed keys are read under their
    new name, no mode default is added (a saved config has every key), and a key added after it was
    saved takes the value that means what the code of that time did."""
    data = {section: dict(values) if isinstance(values, dict) else values for section, values in (data or {}).items()}
    for old, new in RENAMED.items():
        (old_section, old_name), (new_section, new_name) = old.split(".", 1), new.split(".", 1)
        if isinstance(data.get(old_section), dict) and old_name in data[old_section]:
            data.setdefault(new_section, {})[new_name] = data[old_section].pop(old_name)
    config = from_dict(data, where, mode_defaults=False)
    model = (data or {}).get("model") or {}
    if "posterior_param" not in model and config.model.mode in MODE_RECORDS \
            and MODE_RECORDS[config.model.mode].residual_posterior:
        config.model.posterior_param = "independent"  # saved before the residual form existed
    return config


def flatten(config: Config) -> dict:
    """``{"section.key": value}`` of every setting."""
    return {f"{section}.{key}": value for section, fields in config.to_dict().items()
            for key, value in fields.items()}


def _default(key: str):
    section, name = key.split(".", 1)
    return getattr(sections()[section](), name)


def resume_changes(saved: Config, new: Config) -> tuple[dict[str, list], dict[str, list]]:
    """Settings that differ between a run's ``saved`` config and the ``new`` one, as
    ``(changeable, refused)``, each ``{key: [saved value, new value]}``."""
    old_values, new_values = flatten(saved), flatten(new)
    changed = {k: [old_values.get(k), v] for k, v in new_values.items() if old_values.get(k) != v}
    return ({k: v for k, v in changed.items() if k in RESUME_CHANGEABLE},
            {k: v for k, v in changed.items() if k not in RESUME_CHANGEABLE})


def _fields(section: str) -> dict[str, str]:
    """Field name -> its type's name (``int``, ``float``, ``str`` or ``bool``), annotations postponed or not."""
    return {f.name: f.type if isinstance(f.type, str) else f.type.__name__
            for f in dataclasses.fields(sections()[section])}


def _coerce(value, annotation: str, where: str, key: str):
    """Check a YAML value against a field's annotation; ints are accepted for floats."""
    expected = {"int": int, "float": float, "str": str, "bool": bool}[annotation]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 3e-4 and 1E-3 as text
    if expected is float and isinstance(value, str) and _NON_FINITE.fullmatch(value.strip()):
        raise UserError(f"{where}: {key}={value} is a float but not a finite number — give a finite number "
                        f"(default {_default(key)!r})")
    if expected is str and value is None:
        return ""
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise UserError(
            f"{where}: {key}={value!r} should be {annotation} — write e.g. {key}={_example(annotation)}"
        )
    return value


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_NON_FINITE = re.compile(r"[-+]?\.?(nan|inf|infinity)", re.IGNORECASE)  # what float() reads as nan or +-inf


def _example(annotation: str) -> str:
    return {"int": "4", "float": "0.5", "str": "text", "bool": "true"}[annotation]


def _refuse_renamed(key: str, where: str) -> None:
    if key in RENAMED:
        raise UserError(f"{where}: {key} is now {RENAMED[key]} — rename it")


def _set_all(config: Config, data: dict, where: str, skip: typing.Container[str] = ()) -> set[str]:
    """Set ``{section: {field: value}}`` on ``config`` (keys in ``skip`` left alone); the keys it names."""
    known_sections = sections()
    named = set()
    for section, values in data.items():
        if section not in known_sections:
            raise UserError(f"{where}: unknown section {section!r} — use one of {', '.join(known_sections)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise UserError(f"{where}: section {section!r} must be a mapping of field: value")
        known = _fields(section)
        for key, value in values.items():
            _refuse_renamed(f"{section}.{key}", where)
            if key not in known:
                raise UserError(f"{where}: unknown key {section}.{key} — known keys: {', '.join(sorted(known))}")
            named.add(f"{section}.{key}")
            if f"{section}.{key}" not in skip:
                setattr(getattr(config, section), key, _coerce(value, known[key], where, f"{section}.{key}"))
    return named


def _mode_blocks(blocks, where: str) -> dict:
    """A recipe's ``modes:`` block, checked: ``{mode: {section: {field: value}}}``."""
    if blocks is None:
        return {}
    if not isinstance(blocks, dict) or not all(isinstance(v, dict) or v is None for v in blocks.values()):
        raise UserError(f"{where}: 'modes' must map a mode to its sections, e.g. modes: {{vae-rws: {{model: "
                        "{samples: 5}}}")
    unknown = [mode for mode in blocks if mode not in MODES]
    if unknown:
        raise UserError(f"{where}: modes.{unknown[0]} is not a mode — use one of {', '.join(MODES)}")
    return {mode: values or {} for mode, values in blocks.items()}


def _apply_mode(config: Config, named: set[str], blocks: dict, where: str, overridden: set[str]) -> None:
    """The chosen mode's recipe block, then the mode's own defaults, on the keys nothing stronger set."""
    mode = config.model.mode
    named |= _set_all(config, blocks.get(mode, {}), f"{where} (modes.{mode})", skip=overridden)
    record = MODE_RECORDS.get(mode)
    for key, value in (record.defaults if record else ()):
        if key not in named and key not in overridden:
            section, name = key.split(".", 1)
            setattr(getattr(config, section), name, value)


def from_dict(data: dict, where: str = "config", mode_defaults: bool = True) -> Config:
    """Build a Config from nested dicts (a recipe's shape, ``modes:`` block included), rejecting unknown
    sections and keys; the mode's defaults fill what ``data`` leaves unset unless ``mode_defaults`` is
    False."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where}: the top level must be a mapping of sections ({', '.join(sections())})")
    data = dict(data)
    blocks = _mode_blocks(data.pop("modes", None), where)
    config = Config()
    named = _set_all(config, data, where)
    if mode_defaults:
        _apply_mode(config, named, blocks, where, overridden=set())
    return config


def _recipe_moved(path: Path) -> str | None:
    """For a recipe path of the one-file-per-mode layout (``configs/CORPUS/[transformer-]MODE.yaml``), the
    command that replaces it."""
    arch, _, mode = path.stem.partition("-") if path.stem.startswith("transformer-") else ("", "", path.stem)
    if mode not in MODES or not path.parent.is_dir():
        return None
    recipe = path.parent / f"{arch or 'rnn'}.yaml"
    if recipe.is_file():
        return f"{recipe} model.mode={mode}"
    others = sorted(str(p) for p in path.parent.glob("*.yaml"))
    return f"one of {', '.join(others)} with model.mode={mode}" if others else None


def load(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML recipe, then apply ``section.field=value`` overrides in order (see the module's
    docstring for what wins)."""
    path = Path(path)
    if not path.is_file():
        moved = _recipe_moved(path)
        if moved:
            raise UserError(f"{path}: recipes are one per corpus and architecture, the mode an override — use {moved}")
        raise UserError(f"{path}: config file not found — give the path of a YAML file, e.g. configs/quickstart.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{path}{line}: not valid YAML ({reason}) — fix the syntax") from None
    if not data:
        raise UserError(f"{path}: the config is empty — it would train the 512-wide defaults on no data; start "
                        "from a recipe, e.g. configs/quickstart.yaml, or list the sections to set")
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections ({', '.join(sections())})")
    data = dict(data)
    blocks = _mode_blocks(data.pop("modes", None), str(path))
    config = Config()
    named = _set_all(config, data, str(path))
    apply_overrides(config, overrides)
    origins = {item.split("=", 1)[0]: f"override {item!r}" for item in overrides}
    _apply_mode(config, named, blocks, str(path), overridden=set(origins))
    return config.validate(str(path), origins)


def apply_overrides(config: Config, overrides: typing.Sequence[str]) -> Config:
    """Apply ``section.field=value`` strings; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UserError(f"override {item!r}: write it as section.field=value, e.g. train.max_steps=20")
        key, raw = item.split("=", 1)
        section, name = key.split(".", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if section in sections() and _fields(section).get(name) == "str" and not isinstance(value, str):
            value = raw  # e.g. data.dir=2024 stays a string
        _set_all(config, {section: {name: value}}, f"override {item!r}")
    return config


def describe(config: Config) -> list[tuple[str, object, str]]:
    """Every setting of ``config`` as ``(section.key, value, meaning)``, in declaration order; the
    meaning is the help text of the field's :func:`varattn.config.fields.setting`."""
    return [(f"{section}.{f.name}", getattr(getattr(config, section), f.name), help_of(f))
            for section in config.section_names() for f in dataclasses.fields(getattr(config, section))]


def save(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException as error:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(error, OSError):  # name the file meant, not its temporary twin (or none)
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
