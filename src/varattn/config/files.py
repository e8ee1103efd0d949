"""Configuration: one dataclass per section, read from YAML, overridden as ``section.field=value``.

Every default lives here, once. Unknown sections or keys are errors that name the file and the key, so
a typo never silently trains the wrong model.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from varattn.errors import UserError
from varattn.latent import MODE_RECORDS, MODES

@dataclass
class DataConfig:
    """Where the prepared data is and how it is batched."""

    dir: str = ""  # the prepared data folder (varattn prepare)
    train_split: str = "train"  # split to train on
    valid_split: str = "valid"  # split to validate on (picks the best checkpoint, drives the learning-rate decay)
    max_tokens: int = 4096  # padded (source + target) tokens per batch
    max_sentences: int = 0  # 0 = no limit
    eval_max_tokens: int = 8192  # padded tokens per batch when scoring
    reverse: bool = False  # read the prepared folder target -> source (one prepare, both directions)


@dataclass
class ModelConfig:
    """The translation model: the latent mode, the architecture, and the sizes of the RNN of DESIGN §3
    (the paper's by default; other architectures read their own section)."""

    mode: str = "soft"
    arch: str = "rnn"  # rnn (the paper's LSTM) | transformer (see the transformer section)
    emb_size: int = 512  # word embedding size (source and target)
    enc_hidden: int = 512  # per direction; source vectors have 2 * enc_hidden
    enc_layers: int = 2  # BiLSTM encoder layers
    dec_hidden: int = 768  # decoder LSTM size
    dec_layers: int = 2  # decoder LSTM layers
    attn_size: int = 512  # hidden size of the MLP prior attention
    output_size: int = 0  # size of o = tanh(W_o [h; c]); 0 = dec_hidden
    dropout: float = 0.3  # dropout probability
    init_range: float = 0.1  # weights start uniform in +-init_range
    inf_hidden: int = 512  # inference network, per direction
    inf_layers: int = 2  # inference network BiLSTM layers
    samples: int = 1  # K for the sampling modes (vae-rws uses at least 2)
    temperature: float = 0.1  # vae-gumbel
    posterior_param: str = "auto"  # q's scores: independent (the inference network's, the paper's) | residual (the prior's plus the network's) | auto (residual for vae-dirichlet only)
    enum_block: int = 2048  # (target token x source position) cells per block of exact enumeration
    emission: str = "state"  # what predicts the word at an aligned position: state (decoder state and source word, the paper's) | source (the source vector alone: enumeration T times cheaper) | word (the source word's embedding alone, no context: a neural lexical translation table, for aligners; rnn only)
    transition: str = "content"  # hmm: a move's score is content (the attention score of the new position plus its jump's) | jump (the jump's alone: the classical HMM aligner's distortion model)
    jump_slope: float = 0.0  # hmm: jump scores start at -jump_slope * |d - 1| (0 = flat, the chain starts as marginal; > 0 favours the next word)
    jump_width: int = 8  # hmm: jumps s - s' get a learned score each in -jump_width..jump_width; wider ones share the edge's


@dataclass
class TrainConfig:
    """Optimisation, schedule, checkpoints."""

    epochs: int = 30  # passes over the training data
    max_steps: int = 0  # 0 = no limit
    max_seconds: float = 0.0  # 0 = no limit; stop (validate, save) once training has run this long
    lr: float = 3e-4  # Adam learning rate (3e-4, 1E-3, .5 are all read as numbers)
    adam_eps: float = 1e-8  # Adam epsilon
    adam_beta1: float = 0.9  # Adam beta1
    adam_beta2: float = 0.999  # Adam beta2
    clip_norm: float = 5.0  # gradient norm clipping
    lr_decay: float = 0.5  # learning rate x this after an epoch without validation improvement
    decay_from_epoch: int = 2  # first epoch at which the decay may apply
    min_lr: float = 1e-6  # floor of the decayed rate; no improvement at the floor ends training
    seed: int = 1  # every random draw follows from it (a resumed run repeats an uninterrupted one)
    validate_every: int = 0  # steps; 0 = once per epoch only
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = True  # autocast to bfloat16 on CUDA
    tensorboard: bool = False  # also write TensorBoard logs (needs the tensorboard package)
    progress: bool = True  # progress bars
    init_from: str = ""  # run directory or checkpoint to initialise the weights from
    dirichlet_warmup_steps: int = 0  # modes with a warm-up (vae-dirichlet): its length in steps
    eval_samples: int = 10  # Monte-Carlo samples for vae-dirichlet evaluation
    max_nonfinite_steps: int = 10  # skip steps with a non-finite loss or gradient; stop after this many in a row


@dataclass
class DecodeConfig:
    """Decoding defaults used by `varattn translate` and `varattn evaluate`."""

    beam: int = 1  # beam size (1 = greedy)
    alpha: float = 1.0  # GNMT length normalisation exponent
    eos_norm: float = 0.0  # end-of-sentence penalty eos_norm * |x| / (t + 1)
    max_len_a: float = 1.5  # maximum output length = a * |x| + b
    max_len_b: int = 10  # see max_len_a
    kmax: int = 0  # 0 = exact marginal; K = sum over the K most probable positions
    batch_tokens: int = 4000  # source tokens per decoding batch


@dataclass
class VQAConfig:
    """The visual question answering model (the paper's Appendix B sizes); ``model.mode``, ``samples`` and
    ``temperature`` come from the model section."""

    word_emb: int = 300  # question word embedding size
    glove: str = ""  # optional GloVe-format text file to initialise the word embeddings
    question_hidden: int = 1024  # question LSTM size
    attn_hidden: int = 1024  # prior attention MLP size
    classifier_hidden: int = 1024  # answer MLP hidden size
    answer_emb: int = 256  # answer embedding size (inference network)
    inf_hidden: int = 1024  # inference network hidden size
    dropout: float = 0.5  # dropout before the answer layer
    batch_size: int = 512  # questions per batch


@dataclass
class TransformerConfig:
    """The Transformer translation model (``model.arch: transformer``, DESIGN §5b): pre-LayerNorm
    encoder-decoder, a single-head latent alignment on the top decoder state. Defaults are the IWSLT'14
    small Transformer's sizes; ``model.mode``, ``output_size``, ``samples``, ``temperature`` and
    ``enum_block`` come from the model section."""

    encoder_layers: int = 6  # encoder layers
    decoder_layers: int = 6  # decoder layers
    width: int = 512  # model width
    heads: int = 4  # attention heads (the latent alignment is one more, single head)
    ffn: int = 1024  # feed-forward width
    dropout: float = 0.3  # dropout on residual branches
    attention_dropout: float = 0.1  # dropout on attention weights
    positions: str = "sinusoidal"  # sinusoidal | learned
    max_positions: int = 1024  # learned positions only
    cross_attention: str = "all"  # soft cross-attention in the decoder layers: all | none | detached
    align_size: int = 0  # query/key size of the latent alignment attention; 0 = width
    inf_layers: int = 2  # the inference network's Transformer encoder over the target
    label_smoothing: float = 0.0  # soft mode only: the latent modes need the true likelihood


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    vqa: VQAConfig = field(default_factory=VQAConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self, where: str = "config", origins: dict[str, str] | None = None) -> "Config":
        """Check every setting; errors name ``where`` (the file), or ``origins[key]`` (the override that
        set the key)."""
        if self.model.mode not in MODES:
            raise UserError(
                f"{where}: model.mode={self.model.mode!r} is not a mode — use one of {', '.join(MODES)}"
            )
        return self._check_ranges(where, origins or {})

    def _check_ranges(self, where: str, origins: dict[str, str]) -> "Config":
        """Every numeric setting in its range, every float finite, and the combinations that matter."""
        values = flatten(self)

        def fail(key: str, rule: str, fix: str) -> None:
            raise UserError(f"{origins.get(key, where)}: {key}={values[key]!r} {rule} — {fix}")

        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                fail(key, "is not a finite number", f"give a number (default {_default(key)!r})")
        for key, (low, high, closed_high) in _RANGES.items():
            if key not in values:
                continue
            value = values[key]
            low_ok = value > low[0] if low[1] == "open" else value >= low[0]
            high_ok = high is None or (value <= high if closed_high else value < high)
            if not (low_ok and high_ok):
                if high is None:
                    rule = "must be positive" if low[1] == "open" else "must not be negative"
                else:
                    rule = f"must lie in {'(' if low[1] == 'open' else '['}{low[0]:g}, {high:g}{']' if closed_high else ')'}"
                fail(key, rule, f"set it within that range (default {_default(key)!r})")
        if self.train.min_lr >= self.train.lr:
            if "train.lr" in origins and "train.min_lr" not in origins:
                fail("train.lr", f"is not above train.min_lr={self.train.min_lr:g}, the floor of the decayed rate",
                     "raise train.lr or lower train.min_lr (0: no floor)")
            fail("train.min_lr", f"is not below train.lr={self.train.lr:g}",
                 "lower train.min_lr (0: no floor) or raise train.lr")
        if self.decode.max_len_a == 0 and self.decode.max_len_b == 0:
            fail("decode.max_len_b", "with decode.max_len_a=0 allows no output word",
                 "set decode.max_len_b > 0 or decode.max_len_a > 0")
        _check_transformer(self, fail)
        if self.model.posterior_param not in POSTERIOR_PARAMS:
            fail("model.posterior_param", "is not a form of the posterior", f"use one of {', '.join(POSTERIOR_PARAMS)}")
        if self.model.transition not in ("content", "jump"):
            fail("model.transition", "is not a kind of transition", "use content or jump")
        if self.model.emission not in ("state", "source", "word"):
            fail("model.emission", "is not a kind of emission", "use state, source or word")
        if self.model.emission == "word" and self.model.arch != "rnn":
            fail("model.emission", f"word is for the rnn architecture, not {self.model.arch}", "use state or source")
        if not self.data.train_split or not self.data.valid_split:
            fail("data.train_split" if not self.data.train_split else "data.valid_split", "is empty",
                 "name a split of the prepared folder, e.g. train / valid")
        return self


def _check_transformer(config: "Config", fail) -> None:
    """The transformer section's choices and combinations (its ranges are in _RANGES)."""
    t = config.transformer
    if t.positions not in ("sinusoidal", "learned"):
        fail("transformer.positions", "is not a kind of position", "use sinusoidal or learned")
    if t.cross_attention not in ("all", "none", "detached"):
        fail("transformer.cross_attention", "is not a choice", "use all, none or detached")
    if t.width % t.heads:
        fail("transformer.heads", f"does not divide transformer.width={t.width}", "pick heads dividing the width")
    if t.label_smoothing > 0 and config.model.arch == "transformer" and not MODE_RECORDS[config.model.mode].soft_context:
        fail("transformer.label_smoothing", f"is for soft mode only (model.mode={config.model.mode})",
             "set it to 0: the latent modes need the true likelihood")


# Ranges: key -> ((low, "open" | "closed"), high or None, high closed?). Keys of sections other
# engineers add are checked for finiteness only, until they appear here.
_POSITIVE, _COUNT = ((0, "open"), None, False), ((0, "closed"), None, False)
_FRACTION = ((0, "closed"), 1.0, False)
_RANGES = {
    **{f"data.{k}": _POSITIVE for k in ("max_tokens", "eval_max_tokens")},
    "data.max_sentences": _COUNT,
    **{f"model.{k}": _POSITIVE for k in ("emb_size", "enc_hidden", "enc_layers", "dec_hidden", "dec_layers",
                                         "attn_size", "inf_hidden", "inf_layers", "samples", "temperature",
                                         "enum_block", "init_range", "jump_width")},
    "model.jump_slope": _COUNT,
    "model.output_size": _COUNT,
    "model.dropout": _FRACTION,
    **{f"train.{k}": _POSITIVE for k in ("epochs", "lr", "adam_eps", "clip_norm", "eval_samples",
                                         "max_nonfinite_steps")},
    **{f"train.{k}": _COUNT for k in ("max_steps", "max_seconds", "decay_from_epoch", "min_lr", "seed",
                                      "validate_every", "dirichlet_warmup_steps")},
    "train.adam_beta1": _FRACTION,
    "train.adam_beta2": _FRACTION,
    "train.lr_decay": ((0, "open"), 1.0, True),
    **{f"decode.{k}": _POSITIVE for k in ("beam", "batch_tokens")},
    **{f"decode.{k}": _COUNT for k in ("alpha", "eos_norm", "max_len_a", "max_len_b", "kmax")},
    **{f"vqa.{k}": _POSITIVE for k in ("word_emb", "question_hidden", "attn_hidden", "classifier_hidden",
                                       "answer_emb", "inf_hidden", "batch_size")},
    "vqa.dropout": _FRACTION,
    **{f"transformer.{k}": _POSITIVE for k in ("encoder_layers", "decoder_layers", "width", "heads", "ffn",
                                               "max_positions", "inf_layers")},
    **{f"transformer.{k}": _FRACTION for k in ("dropout", "attention_dropout", "label_smoothing")},
    "transformer.align_size": _COUNT,
}

# Settings a resumed run may change (applied, recorded in config.yaml, reported); any other change
# (model shape, mode, data, batch order, seed, optimizer) is refused.
RESUME_CHANGEABLE = frozenset(
    [f"train.{k}" for k in ("epochs", "max_steps", "max_seconds", "lr", "lr_decay", "decay_from_epoch", "min_lr",
                            "validate_every", "device", "bf16", "tensorboard", "progress", "init_from",
                            "eval_samples", "max_nonfinite_steps")]
    + ["data.eval_max_tokens"] + [f"decode.{f.name}" for f in dataclasses.fields(DecodeConfig)]
)


POSTERIOR_PARAMS = ("auto", "independent", "residual")


def from_saved(data: dict, where: str) -> Config:
    """:func:`from_dict` for a config saved with a run or a checkpoint: a key added after it was saved
    takes the value that means what the code of that time did."""
    config = from_dict(data, where)
    model = (data or {}).get("model") or {}
    if "posterior_param" not in model and config.model.mode in MODE_RECORDS \
            and MODE_RECORDS[config.model.mode].residual_posterior:
        config.model.posterior_param = "independent"  # saved before the residual form existed
    return config


def flatten(config: "Config") -> dict:
    """``{"section.key": value}`` of every setting."""
    return {f"{section}.{key}": value for section, fields in config.to_dict().items()
            for key, value in fields.items()}


def _default(key: str):
    section, name = key.split(".", 1)
    return getattr(getattr(Config(), section), name)


def resume_changes(saved: "Config", new: "Config") -> tuple[dict[str, list], dict[str, list]]:
    """Settings that differ between a run's ``saved`` config and the ``new`` one, as
    ``(changeable, refused)``, each ``{key: [saved value, new value]}``."""
    old_values, new_values = flatten(saved), flatten(new)
    changed = {k: [old_values.get(k), v] for k, v in new_values.items() if old_values.get(k) != v}
    return ({k: v for k, v in changed.items() if k in RESUME_CHANGEABLE},
            {k: v for k, v in changed.items() if k not in RESUME_CHANGEABLE})


SECTIONS = ("data", "model", "train", "decode", "vqa", "transformer")


def _section_class(name: str):
    return {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "decode": DecodeConfig,
            "vqa": VQAConfig, "transformer": TransformerConfig}[name]


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
    if not data:
        raise UserError(f"{path}: the config is empty — it would train the 512-wide defaults on no data; start "
                        "from a recipe, e.g. configs/quickstart.yaml, or list the sections to set")
    config = from_dict(data, str(path))
    apply_overrides(config, overrides)
    origins = {item.split("=", 1)[0]: f"override {item!r}" for item in overrides}
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
        if section in SECTIONS:
            annotation = {f.name: f.type for f in dataclasses.fields(_section_class(section))}.get(name)
            if annotation == "str" and not isinstance(value, str):
                value = raw  # e.g. data.dir=2024 stays a string
        from_dict({section: {name: value}}, f"override {item!r}")  # validates the key and the type
        known = {f.name: f.type for f in dataclasses.fields(_section_class(section))}
        setattr(getattr(config, section), name, _coerce(value, known[name], f"override {item!r}", key))
    return config


def describe(config: Config) -> list[tuple[str, object, str]]:
    """Every setting of ``config`` as ``(section.key, value, meaning)``, in declaration order; the
    meaning is the comment beside the field in this module (or its section's docstring's first line)."""
    import inspect
    import io
    import tokenize

    comments: dict[tuple[str, str], str] = {}
    for section in SECTIONS:
        cls = _section_class(section)
        source = inspect.getsource(cls)
        pending = None
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.NAME and token.start[1] == 4 and pending is None:
                pending = (token.string, token.start[0])
            elif token.type == tokenize.COMMENT and pending and token.start[0] == pending[1]:
                comments[(section, pending[0])] = token.string.lstrip("# ").strip()
            if token.type == tokenize.NEWLINE:
                pending = None
    rows = []
    for section in SECTIONS:
        cls = _section_class(section)
        for f in dataclasses.fields(cls):
            meaning = comments.get((section, f.name), "")
            if section == "model" and f.name == "mode":
                meaning = "the latent mode: " + ", ".join(MODES)
            rows.append((f"{section}.{f.name}", getattr(getattr(config, section), f.name), meaning))
    return rows


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


# Keep the type annotations of dataclass fields as plain strings ("int", "float", ...).
assert all(
    isinstance(f.type, str) and f.type in ("int", "float", "str", "bool")
    for section in (DataConfig, ModelConfig, TrainConfig, DecodeConfig, VQAConfig, TransformerConfig)
    for f in dataclasses.fields(section)
), "config fields must be int, float, str or bool"
