"""The sections every run has: data, model (the latent mode and the paper's RNN), train and decode.

Other sections belong to the component that reads them (the Transformer's to
:mod:`varattn.models.transformer`, VQA's to :mod:`varattn.models.vqa`) and are registered there.
Each section subclasses :class:`varattn.config.fields.Section` and may override its ``check`` for rules
that span fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from varattn.config.fields import Section, count, fraction, positive, setting
from varattn.latent import MODE_RECORDS, MODES

POSTERIOR_PARAMS = ("auto", "independent", "residual")


@dataclass
class DataConfig(Section):
    """Where the prepared data is and how it is batched."""

    dir: str = setting("", "the prepared data folder (varattn prepare)")
    train_split: str = setting("train", "split to train on")
    valid_split: str = setting("valid", "split to validate on (picks the best checkpoint, drives the learning-rate decay)")
    max_tokens: int = positive(4096, "padded (source + target) tokens per batch")
    max_sentences: int = count(0, "0 = no limit")
    eval_max_tokens: int = positive(8192, "padded tokens per batch when scoring")
    reverse: bool = setting(False, "read the prepared folder target -> source (one prepare, both directions)")

    def check(self, config, fail, origins) -> None:
        if not self.train_split or not self.valid_split:
            fail("data.train_split" if not self.train_split else "data.valid_split", "is empty",
                 "name a split of the prepared folder, e.g. train / valid")


@dataclass
class ModelConfig(Section):
    """The translation model: the latent mode, the architecture, and the sizes of the RNN of docs/design.md §3
    (the paper's by default; other architectures read their own section)."""

    mode: str = setting("soft", "the latent mode: " + ", ".join(MODES), choices=MODES, kind="mode")
    arch: str = setting("rnn", "rnn (the paper's LSTM) | transformer (see the transformer section)")
    emb_size: int = positive(512, "word embedding size (source and target)")
    enc_hidden: int = positive(512, "per direction; source vectors have 2 * enc_hidden")
    enc_layers: int = positive(2, "BiLSTM encoder layers")
    dec_hidden: int = positive(768, "decoder LSTM size")
    dec_layers: int = positive(2, "decoder LSTM layers")
    attn_size: int = positive(512, "hidden size of the MLP prior attention")
    output_size: int = count(0, "size of o = tanh(W_o [h; c]); 0 = dec_hidden")
    input_feed: bool = setting(True, "rnn: feed the last step's output vector into the decoder LSTM (the paper's); "
                                     "false runs the decoder LSTM over the whole target in one call")
    cuda_graph: bool = setting(False, "rnn with input feeding, training on CUDA: replay the decoder's "
                                      "teacher-forced loop from CUDA graphs captured per bucketed batch shape "
                                      "(the eager loop elsewhere)")
    dropout: float = fraction(0.3, "dropout probability")
    init_range: float = positive(0.1, "weights start uniform in +-init_range")
    inf_hidden: int = positive(512, "inference network, per direction")
    inf_layers: int = positive(2, "inference network BiLSTM layers")
    samples: int = positive(1, "K for the sampling modes (vae-rws: 5 unless set, and at least 2)")
    temperature: float = positive(0.1, "vae-gumbel's relaxation temperature")
    posterior_param: str = setting(
        "auto", "q's scores: independent (the inference network's, the paper's) | residual (the prior's plus the "
        "network's) | auto (residual for vae-dirichlet only)", choices=POSTERIOR_PARAMS, kind="form of the posterior")
    enum_block: int = positive(2048, "(target token x source position) cells per block of exact enumeration")
    emission: str = setting(
        "state", "what predicts the word at an aligned position: state (decoder state and source word, the "
        "paper's) | source (the source vector alone: enumeration T times cheaper) | word (the source word's "
        "embedding alone, no context: a neural lexical translation table, for aligners; rnn only)",
        choices=("state", "source", "word"), kind="kind of emission")
    transition: str = setting(
        "content", "hmm: a move's score is content (the attention score of the new position plus its jump's) | "
        "jump (the jump's alone: the classical HMM aligner's distortion model)", choices=("content", "jump"), kind="kind of transition")
    jump_slope: float = count(0.0, "hmm: jump scores start at -jump_slope * |d - 1| (0 = flat, the chain starts "
                                   "as marginal; > 0 favours the next word)")
    jump_width: int = positive(8, "hmm: jumps s - s' get a learned score each in -jump_width..jump_width; wider "
                                  "ones share the edge's")

    def check(self, config, fail, origins) -> None:
        if self.emission == "word" and self.arch != "rnn":
            fail("model.emission", f"word is for the rnn architecture, not {self.arch}", "use state or source")


@dataclass
class TrainConfig(Section):
    """Optimisation, schedule, checkpoints."""

    epochs: int = positive(30, "passes over the training data")
    max_steps: int = count(0, "0 = no limit")
    max_seconds: float = count(0.0, "0 = no limit; stop (validate, save) once training has run this long")
    lr: float = positive(3e-4, "Adam learning rate (3e-4, 1E-3, .5 are all read as numbers)")
    adam_eps: float = positive(1e-8, "Adam epsilon")
    adam_beta1: float = fraction(0.9, "Adam beta1")
    adam_beta2: float = fraction(0.999, "Adam beta2")
    clip_norm: float = positive(5.0, "gradient norm clipping")
    lr_decay: float = setting(0.5, "learning rate x this after an epoch without validation improvement",
                              low=0, low_open=True, high=1.0)
    decay_from_epoch: int = count(2, "first epoch at which the decay may apply")
    min_lr: float = count(1e-6, "floor of the decayed rate; no improvement at the floor ends training")
    seed: int = count(1, "every random draw follows from it (a resumed run repeats an uninterrupted one)")
    validate_every: int = count(0, "steps; 0 = once per epoch only")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    bf16: bool = setting(True, "autocast to bfloat16 on CUDA")
    cpu_bf16: bool = setting(False, "training on a CPU: autocast to bfloat16 where the CPU has native bf16 "
                                    "products (AVX-512 BF16, AMX; float32 elsewhere); evaluation stays float32")
    tensorboard: bool = setting(False, "also write TensorBoard logs (needs the tensorboard package)")
    progress: bool = setting(True, "progress bars")
    init_from: str = setting("", "run directory or checkpoint to initialise the weights from")
    warmup_steps: int = count(0, "modes with a warm-up objective (vae-dirichlet: 1000 unless set; vae-enum: the exact start, 0 unless set): its length in steps")
    enumerate_topk: int = count(0, "training only (marginal, hard-enum, vae-enum): enumerate the K positions "
                                   "of highest prior score per query (q's for vae-enum); 0 = all; evaluation "
                                   "stays exact")
    eval_samples: int = positive(10, "Monte-Carlo samples for vae-dirichlet evaluation")
    max_nonfinite_steps: int = positive(10, "skip steps with a non-finite loss or gradient; stop after this many in a row")

    def check(self, config, fail, origins) -> None:
        if self.min_lr >= self.lr:
            if "train.lr" in origins and "train.min_lr" not in origins:
                fail("train.lr", f"is not above train.min_lr={self.min_lr:g}, the floor of the decayed rate",
                     "raise train.lr or lower train.min_lr (0: no floor)")
            fail("train.min_lr", f"is not below train.lr={self.lr:g}", "lower train.min_lr (0: no floor) or raise train.lr")


@dataclass
class DecodeConfig(Section):
    """Decoding defaults used by `varattn translate` and `varattn evaluate`."""

    beam: int = positive(1, "beam size (1 = greedy)")
    alpha: float = count(1.0, "GNMT length normalisation exponent")
    eos_norm: float = count(0.0, "end-of-sentence penalty eos_norm * |x| / (t + 1)")
    max_len_a: float = count(1.5, "maximum output length = a * |x| + b")
    max_len_b: int = count(10, "see max_len_a")
    kmax: int = count(0, "0 = exact marginal; K = sum over the K most probable positions")
    batch_tokens: int = positive(4000, "source tokens per decoding batch")

    def check(self, config, fail, origins) -> None:
        if self.max_len_a == 0 and self.max_len_b == 0:
            fail("decode.max_len_b", "with decode.max_len_a=0 allows no output word",
                 "set decode.max_len_b > 0 or decode.max_len_a > 0")


__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "DecodeConfig", "POSTERIOR_PARAMS", "MODE_RECORDS"]
