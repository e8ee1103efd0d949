r"""The visual question answering model of Deng et al. (2018), Appendix B, on the latent core.

A question is one query; its alignment z picks one of the image's S ≤ 36 regions x_1..x_S:

.. math::
    \tilde x = \mathrm{LSTM}(\text{question}),\qquad
    p(z = i) \propto \exp\big(w^\top \tanh(W_1 x_i + W_2 \tilde x)\big),\qquad
    p(y \mid x, z) = \mathrm{softmax}\big(f([x_z; \tilde x])\big),

with f a one-hidden-layer ReLU MLP (dropout before its last layer), and an inference network that sees
the answer y through its embedding h_y:

.. math::
    q(z = i) \propto \exp\big(u^\top \tanh(U_1 (x_i \odot \mathrm{ReLU}(V_1 h_y))
                                          + U_2 (\tilde x \odot \mathrm{ReLU}(V_2 h_y)))\big).

The answer layer is a :class:`varattn.latent.Likelihood` (soft contexts ``Σ_i w_i x_i`` or one region at
a time); because its first layer is linear, ``W [x_z; x̃] = W_x x_z + W_q x̃`` and the regions are
projected once. Modes: ``soft``, ``marginal``, ``hard-enum``, ``hard-sample``, ``vae-enum``,
``vae-sample``. Layers use PyTorch's fan-in initialisation (``model.init_range`` is an NMT setting:
uniform ±0.1 on 2048-wide region features would saturate the tanh from the first step).

Dimensions: B questions, L words, S regions, D feature width, Q question vector, H hidden, A answers,
M answers scored per question (1 in training: the sampled one), K points on the simplex per query.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from varattn import latent
from varattn.config import Config, ModelConfig, Section, fraction, positive, register_section, setting
from varattn.errors import UserError


@dataclass
class VQAConfig(Section):
    """The ``vqa`` section: the visual question answering model (the paper's Appendix B sizes);
    ``model.mode``, ``samples`` and ``temperature`` come from the model section."""

    word_emb: int = positive(300, "question word embedding size")
    glove: str = setting("", "optional GloVe-format text file to initialise the word embeddings")
    question_hidden: int = positive(1024, "question LSTM size")
    attn_hidden: int = positive(1024, "prior attention MLP size")
    classifier_hidden: int = positive(1024, "answer MLP hidden size")
    answer_emb: int = positive(256, "answer embedding size (inference network)")
    inf_hidden: int = positive(1024, "inference network hidden size")
    dropout: float = fraction(0.5, "dropout before the answer layer")
    batch_size: int = positive(512, "questions per batch")


register_section("vqa", VQAConfig, owner=__name__)


def vqa_supports(mode: latent.Mode) -> bool:
    """The test-time answer distribution is exact (the expected context, or the marginal over regions),
    so VQA takes every mode whose prior can be enumerated, or ``soft``."""
    return (mode.enumerable or mode.soft_context) and not mode.chain


@dataclass
class Encoded:
    """One batch of questions and images, encoded.

    question ``[B, Q]`` (x̃); prior ``[B, S]`` scores; mask ``[B, S]`` (True = real region);
    regions ``[B, S, D]`` (x_i); projected ``[B, S, H]`` (the region half of the answer MLP's first layer,
    ``W_x x_i``); query ``[B, H]`` (its question half plus bias, ``W_q x̃ + b``).
    """

    question: Tensor
    prior: Tensor
    mask: Tensor
    regions: Tensor
    projected: Tensor
    query: Tensor


class AnswerLikelihood:
    """log p(y_m | x, context) for answers ``answers [B, M]``: a :class:`varattn.latent.Likelihood` over
    queries ``[B, M]`` and positions S (the regions)."""

    def __init__(self, model: "VQAModel", enc: Encoded, answers: Tensor):
        self.model, self.enc, self.answers = model, enc, answers

    def enumerate(self) -> Tensor:
        """[B, M, S]: log p(y_m | z = i) for every region i."""
        log_probs = self.model.region_log_probs(self.enc)                      # [B, S, A]
        index = self.answers[:, None, :].expand(-1, log_probs.shape[1], -1)   # [B, S, M]
        return log_probs.gather(-1, index).transpose(1, 2)

    def __call__(self, weights: Tensor) -> Tensor:
        """weights [B, M, K, S] -> [B, M, K]: log p(y_m | context = Σ_i w_i x_i)."""
        B, M, K, S = weights.shape
        log_probs = self.model.context_log_probs(self.enc, weights.reshape(B, M * K, S))   # [B, M*K, A]
        index = self.answers[:, :, None].expand(B, M, K).reshape(B, M * K, 1)
        return log_probs.gather(-1, index).reshape(B, M, K)


class VQAModel(nn.Module):
    """Question encoder, prior attention over regions, answer MLP and inference network (see the module
    docstring). ``config`` is the ModelConfig (mode, samples); ``vqa`` the sizes."""

    def __init__(self, config: ModelConfig, vqa: VQAConfig, question_vocab: int, num_answers: int,
                 feature_dim: int):
        super().__init__()
        self.mode = latent.get_mode(config.mode)
        self.posterior_param = config.posterior_param
        if not vqa_supports(self.mode):
            choices = [m.name for m in latent.MODE_RECORDS.values() if vqa_supports(m)]
            raise UserError(f"model.mode={config.mode!r} is not available for VQA — use one of {', '.join(choices)}")
        for key in ("word_emb", "question_hidden", "attn_hidden", "classifier_hidden", "answer_emb",
                    "inf_hidden", "batch_size"):
            if getattr(vqa, key) < 1:
                raise UserError(f"vqa.{key}={getattr(vqa, key)} must be positive")
        if not 0.0 <= vqa.dropout < 1.0:
            raise UserError(f"vqa.dropout={vqa.dropout} must lie in [0, 1)")
        self.config, self.vqa = config, vqa
        self.num_answers, self.feature_dim = num_answers, feature_dim
        self.embedding = nn.Embedding(question_vocab, vqa.word_emb, padding_idx=0)
        self.lstm = nn.LSTM(vqa.word_emb, vqa.question_hidden, batch_first=True)
        # prior: w · tanh(W1 x_i + W2 x̃)
        self.prior_regions = nn.Linear(feature_dim, vqa.attn_hidden)
        self.prior_question = nn.Linear(vqa.question_hidden, vqa.attn_hidden, bias=False)
        self.prior_out = nn.Linear(vqa.attn_hidden, 1, bias=False)
        # likelihood: W_o dropout(ReLU(W_x x_z + W_q x̃ + b)) + b_o
        self.answer_regions = nn.Linear(feature_dim, vqa.classifier_hidden, bias=False)
        self.answer_question = nn.Linear(vqa.question_hidden, vqa.classifier_hidden)
        self.dropout = nn.Dropout(vqa.dropout)
        self.answer_out = nn.Linear(vqa.classifier_hidden, num_answers)
        if self.mode.posterior:
            # q: u · tanh(U1 (x_i ⊙ ReLU(V1 h_y)) + U2 (x̃ ⊙ ReLU(V2 h_y)))
            self.answer_embedding = nn.Embedding(num_answers, vqa.answer_emb)
            self.inf_gate_regions = nn.Linear(vqa.answer_emb, feature_dim)
            self.inf_gate_question = nn.Linear(vqa.answer_emb, vqa.question_hidden)
            self.inf_regions = nn.Linear(feature_dim, vqa.inf_hidden)
            self.inf_question = nn.Linear(vqa.question_hidden, vqa.inf_hidden, bias=False)
            self.inf_out = nn.Linear(vqa.inf_hidden, 1, bias=False)

    @property
    def has_posterior(self) -> bool:
        return self.mode.posterior

    def load_glove(self, path: str | Path, words: list[str]) -> int:
        """Initialise the word embeddings of ``words`` (id order) found in a GloVe-format text file
        (``word v_1 .. v_E`` per line); returns how many were found."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"vqa.glove={str(path)!r}: file not found — give a GloVe text file or vqa.glove=''")
        index = {w: i for i, w in enumerate(words) if i > 0}
        found = 0
        with torch.no_grad(), open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                word, _, rest = line.rstrip("\n").partition(" ")
                if word not in index:
                    continue
                try:
                    vector = [float(v) for v in rest.split()]
                except ValueError:
                    raise UserError(f"{path}:{number}: not a word followed by numbers — give a GloVe text file") from None
                if len(vector) != self.vqa.word_emb:
                    raise UserError(f"{path}:{number}: {len(vector)}-d vectors but vqa.word_emb={self.vqa.word_emb} "
                                    f"— set vqa.word_emb={len(vector)}")
                self.embedding.weight[index.pop(word)] = torch.tensor(vector)
                found += 1
        return found

    def encode(self, questions: Tensor, lengths: Tensor, features: Tensor, regions: Tensor) -> Encoded:
        """questions [B, L], lengths [B], features [B, S, D], regions [B] -> :class:`Encoded`."""
        if features.shape[-1] != self.feature_dim:
            raise UserError(f"region features are {features.shape[-1]} wide but the model expects "
                            f"{self.feature_dim} — use data prepared like the training data")
        packed = pack_padded_sequence(self.embedding(questions), lengths.clamp_min(1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        question = h[-1]                                                        # [B, Q]
        features = features.to(self.prior_regions.weight.dtype)
        mask = torch.arange(features.shape[1], device=features.device) < regions[:, None]
        prior = self.prior_out(torch.tanh(self.prior_regions(features)
                                          + self.prior_question(question)[:, None]))[..., 0]
        return Encoded(question, prior, mask, features, self.answer_regions(features),
                       self.answer_question(question))

    def _answer_log_probs(self, hidden: Tensor) -> Tensor:
        return self.answer_out(self.dropout(F.relu(hidden))).float().log_softmax(-1)

    def region_log_probs(self, enc: Encoded) -> Tensor:
        """[B, S, A]: log p(y | z = i) for every region and answer."""
        return self._answer_log_probs(enc.projected + enc.query[:, None])

    def context_log_probs(self, enc: Encoded, weights: Tensor) -> Tensor:
        """weights [B, N, S] -> [B, N, A]: log p(y | context = Σ_i w_i x_i)."""
        context = torch.bmm(weights.to(enc.projected.dtype), enc.projected)   # W_x Σ w x = Σ w W_x x
        return self._answer_log_probs(context + enc.query[:, None])

    def posterior(self, enc: Encoded, answers: Tensor) -> Tensor:
        """answers [B, M] -> q's scores [B, M, S]."""
        h = self.answer_embedding(answers)                                      # [B, M, E]
        gated_regions = enc.regions[:, None] * F.relu(self.inf_gate_regions(h))[:, :, None]   # [B, M, S, D]
        gated_question = enc.question[:, None] * F.relu(self.inf_gate_question(h))            # [B, M, Q]
        hidden = self.inf_regions(gated_regions) + self.inf_question(gated_question)[:, :, None]
        return self.inf_out(torch.tanh(hidden))[..., 0]

    def likelihood(self, enc: Encoded, answers: Tensor) -> AnswerLikelihood:
        return AnswerLikelihood(self, enc, answers)

    def forward(self, questions: Tensor, lengths: Tensor, features: Tensor, regions: Tensor, answers: Tensor
                ) -> latent.LatentOutput:
        """The training pass for answers [B, M]: :meth:`encode`, then :meth:`latent_output` (the trainer
        calls the model itself, so that a DistributedDataParallel wrapper sees the pass)."""
        return self.latent_output(self.encode(questions, lengths, features, regions), answers)

    def latent_output(self, enc: Encoded, answers: Tensor, query_weights: Tensor | None = None) -> latent.LatentOutput:
        """Prior ``[B, M, S]``, posterior ``[B, M, S]`` (``vae-*``), mask ``[B, 1, S]`` and likelihood for
        answers [B, M]; ``query_weights`` [B, M] (default all) marks or weights the answers that count."""
        M = answers.shape[1]
        prior = enc.prior[:, None].expand(-1, M, -1)
        posterior = None
        if self.has_posterior:
            posterior = latent.posterior_scores(self.mode, self.posterior_param, prior, self.posterior(enc, answers))
        if query_weights is None:
            query_weights = torch.ones_like(answers, dtype=torch.bool)
        return latent.LatentOutput(prior, posterior, enc.mask[:, None], self.likelihood(enc, answers), query_weights)

    def answer_log_probs(self, enc: Encoded) -> Tensor:
        """[B, A]: the test-time answer distribution under the prior — the soft context's for ``soft``,
        the exact marginal ``log Σ_i p(i) p(y | i)`` for the latent modes."""
        log_prior = latent.masked_log_softmax(enc.prior, enc.mask)             # [B, S]
        if self.mode.soft_context:
            return self.context_log_probs(enc, log_prior.exp()[:, None])[:, 0]
        joint = log_prior[..., None] + self.region_log_probs(enc)              # [B, S, A]
        return torch.logsumexp(joint.masked_fill(~enc.mask[..., None], float("-inf")), 1)


def build_vqa_model(config: Config, data) -> VQAModel:
    """A fresh model for a prepared :class:`varattn.data.vqa.reader.VQAData` (GloVe vectors when ``vqa.glove``
    is set and ``data`` is not a run's copy)."""
    model = VQAModel(config.model, config.vqa, len(data.question_vocab), len(data.answers), data.feature_dim)
    if config.vqa.glove and not data.meta.get("run_copy"):
        model.load_glove(config.vqa.glove, data.question_vocab.itos)
    return model
