"""Configuration: one dataclass per section, read from YAML, overridden as ``section.field=value``.

Every default lives here, once. Unknown sections or keys are errors that name the file and the key, so
a typo never silently trains the wrong model.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from varattn.errors import UserError
from varattn.latent import MODES

@dataclass
class DataConfig:
    """Where the prepared data is and how it is batched."""

    dir: str = ""
    train_split: str = "train"
    valid_split: str = "valid"
    max_tokens: int = 4096  # padded (source + target) tokens per batch
    max_sentences: int = 0  # 0 = no limit
    eval_max_tokens: int = 8192
    reverse: bool = False  # read the prepared folder target -> source (one prepare, both directions)


@dataclass
class ModelConfig:
    """The translation model: the latent mode, the architecture, and the sizes of the RNN of DESIGN §3
    (the paper's by default; other architectures read their own section)."""

    mode: str = "soft"
    arch: str = "rnn"  # rnn (the paper's LSTM) | transformer (see the transformer section)
    emb_size: int = 512
    enc_hidden: int = 512  # per direction; source vectors have 2 * enc_hidden
    enc_layers: int = 2
    dec_hidden: int = 768
    dec_layers: int = 2
    attn_size: int = 512
    output_size: int = 0  # size of o = tanh(W_o [h; c]); 0 = dec_hidden
    dropout: float = 0.3
    init_range: float = 0.1
    inf_hidden: int = 512  # inference network, per direction
    inf_layers: int = 2
    samples: int = 1  # K for the sampling modes (vae-rws uses at least 2)
    temperature: float = 0.1  # vae-gumbel
    enum_block: int = 2048  # (target token x source position) cells per block of exact enumeration


@dataclass
class TrainConfig:
    """Optimisation, schedule, checkpoints."""

    epochs: int = 30
    max_steps: int = 0  # 0 = no limit
    max_seconds: float = 0.0  # 0 = no limit; stop (validate, save) once training has run this long
    lr: float = 3e-4
    adam_eps: float = 1e-8
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    clip_norm: float = 5.0
    lr_decay: float = 0.5
    decay_from_epoch: int = 2
    min_lr: float = 0.0
    seed: int = 1
    validate_every: int = 0  # steps; 0 = once per epoch only
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = True  # autocast to bfloat16 on CUDA
    tensorboard: bool = False
    progress: bool = True
    init_from: str = ""  # run directory or checkpoint to initialise the weights from
    dirichlet_warmup_steps: int = 0
    eval_samples: int = 10  # Monte-Carlo samples for vae-dirichlet evaluation


@dataclass
class DecodeConfig:
    """Decoding defaults used by `varattn translate` and `varattn evaluate`."""

    beam: int = 1
    alpha: float = 1.0  # GNMT length normalisation exponent
    eos_norm: float = 0.0  # end-of-sentence penalty eos_norm * |x| / (t + 1)
    max_len_a: float = 1.5  # maximum output length = a * |x| + b
    max_len_b: int = 10
    kmax: int = 0  # 0 = exact marginal; K = sum over the K most probable positions
    batch_tokens: int = 4000


@dataclass
class VQAConfig:
    """The visual question answering model (the paper's Appendix B sizes); ``model.mode``, ``samples`` and
    ``temperature`` come from the model section."""

    word_emb: int = 300
    glove: str = ""  # optional GloVe-format text file to initialise the word embeddings
    question_hidden: int = 1024
    attn_hidden: int = 1024
    classifier_hidden: int = 1024
    answer_emb: int = 256
    inf_hidden: int = 1024
    dropout: float = 0.5
    batch_size: int = 512


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    vqa: VQAConfig = field(default_factory=VQAConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self, where: str = "config") -> "Config":
        if self.model.mode not in MODES:
            raise UserError(
                f"{where}: model.mode={self.model.mode!r} is not a mode — use one of {', '.join(MODES)}"
            )
        positive = {
            "data.max_tokens": self.data.max_tokens,
            "model.emb_size": self.model.emb_size,
            "model.enc_hidden": self.model.enc_hidden,
            "model.dec_hidden": self.model.dec_hidden,
            "model.attn_size": self.model.attn_size,
            "model.enc_layers": self.model.enc_layers,
            "model.dec_layers": self.model.dec_layers,
            "model.samples": self.model.samples,
            "model.enum_block": self.model.enum_block,
            "train.epochs": self.train.epochs,
            "decode.beam": self.decode.beam,
        }
        for key, value in positive.items():
            if value <= 0:
                raise UserError(f"{where}: {key}={value} must be positive — set it to a number > 0")
        if not 0.0 <= self.model.dropout < 1.0:
            raise UserError(f"{where}: model.dropout={self.model.dropout} must lie in [0, 1)")
        if self.train.lr <= 0:
            raise UserError(f"{where}: train.lr={self.train.lr} must be positive")
        if self.model.temperature <= 0:
            raise UserError(f"{where}: model.temperature must be positive")
        return self


SECTIONS = ("data", "model", "train", "decode", "vqa")


def _section_class(name: str):
    return {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "decode": DecodeConfig,
            "vqa": VQAConfig}[name]


def _coerce(value, annotation: str, where: str, key: str):
    """Check a YAML value against a field's annotation; ints are accepted for floats."""
    expected = {"int": int, "float": float, "str": str, "bool": bool}[annotation]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and value is None:
        return ""
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise UserError(
            f"{where}: {key}={value!r} should be {annotation} — write e.g. {key}={_example(annotation)}"
        )
    return value


def _example(annotation: str) -> str:
    return {"int": "4", "float": "0.5", "str": "text", "bool": "true"}[annotation]


def from_dict(data: dict, where: str = "config") -> Config:
    """Build a Config from nested dicts, rejecting unknown sections and keys."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where}: the top level must be a mapping of sections ({', '.join(SECTIONS)})")
    config = Config()
    for section, values in data.items():
        if section not in SECTIONS:
            raise UserError(f"{where}: unknown section {section!r} — use one of {', '.join(SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise UserError(f"{where}: section {section!r} must be a mapping of field: value")
        target = getattr(config, section)
        known = {f.name: f.type for f in dataclasses.fields(_section_class(section))}
        for key, value in values.items():
            if key not in known:
                raise UserError(
                    f"{where}: unknown key {section}.{key} — known keys: {', '.join(sorted(known))}"
                )
            setattr(target, key, _coerce(value, known[key], where, f"{section}.{key}"))
    return config


def load(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config file, then apply ``section.field=value`` overrides in order."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found — give the path of a YAML file, e.g. configs/quickstart.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{path}{line}: not valid YAML ({reason}) — fix the syntax") from None
    config = from_dict(data, str(path))
    apply_overrides(config, overrides)
    return config.validate(str(path))


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
        if section in SECTIONS:
            annotation = {f.name: f.type for f in dataclasses.fields(_section_class(section))}.get(name)
            if annotation == "str" and not isinstance(value, str):
                value = raw  # e.g. data.dir=2024 stays a string
        from_dict({section: {name: value}}, f"override {item!r}")  # validates the key and the type
        known = {f.name: f.type for f in dataclasses.fields(_section_class(section))}
        setattr(getattr(config, section), name, _coerce(value, known[name], f"override {item!r}", key))
    return config


def save(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


# Keep the type annotations of dataclass fields as plain strings ("int", "float", ...).
assert all(
    isinstance(f.type, str) and f.type in ("int", "float", "str", "bool")
    for section in (DataConfig, ModelConfig, TrainConfig, DecodeConfig, VQAConfig)
    for f in dataclasses.fields(section)
), "config fields must be int, float, str or bool"
