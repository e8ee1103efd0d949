"""The NMT model of docs/design.md §3: BiLSTM encoder, input-feeding LSTM decoder, MLP prior attention, and an
output layer that is a :class:`varattn.latent.Likelihood`.

The decoder's input feeding uses the prior's *expected* context ``c_{t-1} = Σ_s p_{t-1}(s) x_s``, so
the recurrent states never depend on a sampled alignment: the loop runs once, and every latent
objective works afterwards on ``[B, T, S]`` tensors. With ``model.input_feed: false`` the decoder LSTM
reads the previous word alone, so teacher forcing is one ``nn.LSTM`` call over the whole target and the
prior attention one ``[B, T, S]`` product (docs/rnn.md).

Dimensions: B batch, S source, T target, E embedding, M memory (= 2 x encoder hidden), H decoder
hidden, A attention, O output layer, V target vocabulary, N rows of a decoding step (batch x beam).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varattn.modules.attention import MLPScorer
from varattn.modules.cuda_graphs import GraphedFunction
from varattn.config import ModelConfig
from varattn.latent import LatentOutput, get_mode, posterior_scores
from varattn.models.chain_decoding import ChainState, chain_step
from varattn.models.protocol import DecodeStep
from varattn.data.vocab import PAD
from varattn.modules.inference import InferenceNetwork
from varattn.modules.jumps import JumpScores
from varattn.modules.output import OutputLayer, SourceLikelihood, TokenLikelihood
from varattn.modules.rnn import run_packed


class Encoder(nn.Module):
    """Bidirectional LSTM over the source: tokens ``[B, S]`` -> source vectors ``x_s`` ``[B, S, M]``."""

    def __init__(self, embedding: nn.Embedding, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.rnn = nn.LSTM(
            embedding.embedding_dim,
            hidden,
            num_layers=layers,
            dropout=dropout if layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )

    def forward(self, src: Tensor, src_lengths: Tensor) -> Tensor:
        return run_packed(self.rnn, self.dropout(self.embedding(src)), src_lengths)


@dataclass
class Encoded:
    """What the decoder needs from the source, per batch row.

    memory ``[B, S, M]``; attn_memory ``[B, S, A]`` (``W_c x_s``); out_memory ``[B, S, O]``
    (``W_x x_s``, the source half of the output layer); mask ``[B, S]`` (True = real token);
    src_lengths ``[B]``.
    """

    memory: Tensor
    attn_memory: Tensor
    out_memory: Tensor
    mask: Tensor
    src_lengths: Tensor

    def index_select(self, index: Tensor) -> "Encoded":
        return Encoded(*(t.index_select(0, index) for t in (
            self.memory, self.attn_memory, self.out_memory, self.mask, self.src_lengths)))


@dataclass
class DecoderState:
    """Recurrent state: per layer ``h, c`` ``[N, H]``; the fed context ``[N, M]`` (``[N, 0]`` without input
    feeding)."""

    h: list[Tensor]
    c: list[Tensor]
    context: Tensor

    def index_select(self, index: Tensor) -> "DecoderState":
        return DecoderState(
            [t.index_select(0, index) for t in self.h],
            [t.index_select(0, index) for t in self.c],
            self.context.index_select(0, index),
        )


class Decoder(nn.Module):
    """LSTM stack with MLP prior attention; input-feeding (``cells``, one :class:`torch.nn.LSTMCell` per
    layer, the paper's) or not (``rnn``, one :class:`torch.nn.LSTM` of ``layers`` layers over the
    previous word's embedding alone)."""

    def __init__(self, embedding: nn.Embedding, memory_size: int, hidden: int, layers: int,
                 attn_size: int, dropout: float, input_feed: bool = True, cuda_graph: bool = False):
        super().__init__()
        self.embedding = embedding
        self.hidden = hidden
        self.layers = layers
        self.input_feed = input_feed
        self.dropout = nn.Dropout(dropout)
        if input_feed:
            sizes = [embedding.embedding_dim + memory_size] + [hidden] * (layers - 1)
            self.cells = nn.ModuleList(nn.LSTMCell(size, hidden) for size in sizes)
        else:
            # nn.LSTM's dropout between layers is the dropout the input-feeding stack applies there
            self.rnn = nn.LSTM(embedding.embedding_dim, hidden, num_layers=layers,
                               dropout=dropout if layers > 1 else 0.0, batch_first=True)
        self.scorer = MLPScorer(hidden, memory_size, attn_size)
        self.cuda_graph = cuda_graph and input_feed
        self.graphs: GraphedFunction | None = None  # made on the first graphed call; not a submodule

    def start(self, encoded: Encoded) -> DecoderState:
        rows = encoded.memory.size(0)
        zeros = encoded.memory.new_zeros(rows, self.hidden)
        fed = encoded.memory.size(-1) if self.input_feed else 0
        return DecoderState([zeros] * self.layers, [zeros] * self.layers, encoded.memory.new_zeros(rows, fed))

    def step(self, encoded: Encoded, state: DecoderState, prev_tokens: Tensor
             ) -> tuple[Tensor, Tensor, DecoderState]:
        """One step. prev_tokens ``[N]`` -> top hidden ``h_t`` ``[N, H]``, prior scores ``[N, S]``
        (unmasked), and the next state whose context is the prior's expected source vector (input
        feeding) or empty."""
        if not self.input_feed:
            embedded = self.dropout(self.embedding(prev_tokens))[:, None, :]  # [N, 1, E]
            top, (h, c) = self.rnn(embedded, (torch.stack(state.h), torch.stack(state.c)))
            top = top.squeeze(1)
            return top, self.scorer(top, encoded.attn_memory), DecoderState(
                list(h.unbind(0)), list(c.unbind(0)), state.context)
        layer_input = torch.cat([self.dropout(self.embedding(prev_tokens)), state.context], dim=-1)
        new_h, new_c = [], []
        for depth, cell in enumerate(self.cells):
            h, c = cell(layer_input, (state.h[depth], state.c[depth]))
            new_h.append(h)
            new_c.append(c)
            if depth + 1 < len(self.cells):
                layer_input = self.dropout(h)
        top = new_h[-1]
        scores = self.scorer(top, encoded.attn_memory)
        probs = scores.float().masked_fill(~encoded.mask, float("-inf")).softmax(-1)
        context = torch.bmm(probs.to(encoded.memory.dtype)[:, None, :], encoded.memory).squeeze(1)
        return top, scores, DecoderState(new_h, new_c, context)

    def forward(self, encoded: Encoded, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing over tgt_in ``[B, T]`` -> hidden ``[B, T, H]``, prior scores ``[B, T, S]``.

        The same recurrence as :meth:`step`, with what does not depend on the previous step taken out of
        the loop: the target embeddings and their dropout for all T at once, the embedding's share of
        the first cell's gates as one ``[B·T, E] x [E, 4H]`` product, and the source mask as an additive
        ``0 / -inf`` row. Per step, the first cell's gates are one product of ``[c_{t-1}; h_{t-1}]``
        ``[B, M + H]`` with the rest of its weights, and the LSTM nonlinearity is written out (gate order
        i, f, g, o as in :class:`torch.nn.LSTMCell`, whose parameters it uses).

        Without input feeding nothing depends on the previous step's attention: one :class:`torch.nn.LSTM`
        call over all T (cuDNN / oneDNN), and the prior scores of every step as one ``[B, T, S]`` product.
        Padding in ``tgt_in`` only follows real tokens, so it never reaches their states.

        With ``model.cuda_graph`` and input feeding, training on CUDA replays the loop from CUDA graphs
        (:class:`varattn.modules.cuda_graphs.GraphedFunction`) captured per bucketed shape
        (:meth:`bucketed`); evaluation, decoding and the CPU run the eager loop."""
        if not self.input_feed:
            hidden, _ = self.rnn(self.dropout(self.embedding(tgt_in)))  # [B, T, H]
            return hidden, self.scorer(hidden, encoded.attn_memory)
        embedded = self.dropout(self.embedding(tgt_in))  # [B, T, E]
        blocked = torch.zeros(encoded.mask.shape, dtype=torch.float32, device=encoded.mask.device)
        blocked = blocked.masked_fill(~encoded.mask, float("-inf"))  # [B, S]
        inputs = (embedded, encoded.memory, encoded.attn_memory, blocked)
        if self.cuda_graph and self.training and embedded.is_cuda and torch.is_grad_enabled():
            if self.graphs is None:
                self.graphs = GraphedFunction(self.loop, self.loop_parameters)
            return self.bucketed(self.graphs, *inputs)
        return self.loop(*inputs)

    def loop_parameters(self) -> list[Tensor]:
        """The parameters :meth:`loop` reads (the embedding's and the memory projection's reach it through
        ``embedded`` and ``attn_memory``)."""
        return [p for name, p in self.named_parameters()
                if not name.startswith(("embedding.", "scorer.memory."))]

    def loop(self, embedded: Tensor, memory: Tensor, attn_memory: Tensor, blocked: Tensor) -> tuple[Tensor, Tensor]:
        """The input-feeding recurrence over all T steps: embedded targets ``[B, T, E]``, memory ``[B, S, M]``,
        attn_memory ``[B, S, A]``, blocked ``[B, S]`` (0 at real source tokens, -inf at padding) -> hidden
        ``[B, T, H]``, prior scores ``[B, T, S]``. Tensors in, tensors out, so that it can be captured."""
        first = self.cells[0]
        width = embedded.size(-1)
        size = self.hidden
        pre = F.linear(embedded, first.weight_ih[:, :width], first.bias_ih + first.bias_hh)  # [B, T, 4H]
        # unbind, not pre[:, t]: each indexing's backward would write a zero [B, T, 4H] tensor
        pre = pre.unbind(1)
        recurrent = torch.cat([first.weight_ih[:, width:], first.weight_hh], 1).t()  # [M + H, 4H]
        rows = embedded.size(0)
        zeros = memory.new_zeros(rows, self.hidden)
        h, c, context = [zeros] * self.layers, [zeros] * self.layers, memory.new_zeros(rows, memory.size(-1))
        hidden, scores = [], []
        for t in range(embedded.size(1)):
            gates = torch.addmm(pre[t], torch.cat([context, h[0]], 1), recurrent)  # [B, 4H]
            squashed = gates.sigmoid()
            c[0] = squashed[:, size:2 * size] * c[0] + squashed[:, :size] * gates[:, 2 * size:3 * size].tanh()
            h[0] = squashed[:, 3 * size:] * c[0].tanh()
            for depth in range(1, len(self.cells)):
                h[depth], c[depth] = self.cells[depth](self.dropout(h[depth - 1]), (h[depth], c[depth]))
            score = self.scorer(h[-1], attn_memory)  # [B, S]
            probs = (score.float() + blocked).softmax(-1)
            context = torch.bmm(probs.to(memory.dtype)[:, None, :], memory).squeeze(1)
            hidden.append(h[-1])
            scores.append(score)
        return torch.stack(hidden, 1), torch.stack(scores, 1)

    @staticmethod
    def bucketed(loop, embedded: Tensor, memory: Tensor, attn_memory: Tensor, blocked: Tensor) -> tuple[Tensor, Tensor]:
        """``loop`` (:meth:`loop`'s signature) on inputs padded to a bucket shape, its outputs cut back to
        ``[B, T, H]`` and ``[B, T, S]``: T and S rounded up to a multiple of 8, B to the next of
        ``8·2^k … 15·2^k`` (at most 1/8 more rows), so that a length-bucketed epoch meets a few dozen shapes.
        Padded target steps follow the real ones, padded source positions are blocked, padded rows see
        every position open (their outputs are dropped, but must stay finite for the gradients)."""
        rows, steps, positions = embedded.size(0), embedded.size(1), memory.size(1)
        extra_rows = bucket_rows(rows) - rows
        extra_steps = -steps % 8
        extra_positions = -positions % 8
        embedded = F.pad(embedded, (0, 0, 0, extra_steps, 0, extra_rows))
        memory = F.pad(memory, (0, 0, 0, extra_positions, 0, extra_rows))
        attn_memory = F.pad(attn_memory, (0, 0, 0, extra_positions, 0, extra_rows))
        blocked = F.pad(F.pad(blocked, (0, extra_positions), value=float("-inf")), (0, 0, 0, extra_rows))
        hidden, scores = loop(embedded, memory, attn_memory, blocked)
        return hidden[:rows, :steps], scores[:rows, :steps, :positions]


def bucket_rows(rows: int) -> int:
    """The smallest ``m·2^k >= rows`` with ``8 <= m <= 15`` (rows itself below 8)."""
    if rows <= 8:
        return rows
    scale = 1
    while rows > 15 * scale:
        scale *= 2
    return -(-rows // scale) * scale


class Seq2Seq(nn.Module):
    """The paper's NMT model, for every mode (the mode's record decides whether q is built and whether
    decoding uses the expected context). Implements :mod:`varattn.models.protocol`."""

    def __init__(self, config: ModelConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        self.config = config
        memory_size = 2 * config.enc_hidden
        output_size = config.output_size or config.dec_hidden
        self.src_embedding = nn.Embedding(src_vocab, config.emb_size, padding_idx=PAD)
        self.tgt_embedding = nn.Embedding(tgt_vocab, config.emb_size, padding_idx=PAD)
        self.encoder = Encoder(self.src_embedding, config.enc_hidden, config.enc_layers, config.dropout)
        self.decoder = Decoder(self.tgt_embedding, memory_size, config.dec_hidden, config.dec_layers,
                               config.attn_size, config.dropout, input_feed=config.input_feed,
                               cuda_graph=config.cuda_graph)
        self.output = OutputLayer(config.dec_hidden, memory_size, output_size, tgt_vocab, config.dropout)
        self.inference = None
        self.mode = get_mode(config.mode)
        if self.mode.posterior:
            self.inference = InferenceNetwork(self.src_embedding, self.tgt_embedding, config.inf_hidden,
                                              config.inf_layers, config.dropout)
        self.jumps = JumpScores(config.jump_width, config.jump_slope) if self.mode.chain else None
        # emission "word": the output layer reads the source word's embedding, not its BiLSTM vector
        self.word_memory = nn.Linear(config.emb_size, output_size, bias=False) if config.emission == "word" else None
        self.reset_parameters()

    @classmethod
    def from_config(cls, config, src_vocab: int, tgt_vocab: int) -> "Seq2Seq":
        """The architecture registry's constructor (:mod:`varattn.models.registry`): the whole Config in."""
        return cls(config.model, src_vocab, tgt_vocab)

    def reset_parameters(self) -> None:
        """All weights uniform in ±init_range (docs/design.md §3); padding embeddings zero."""
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -self.config.init_range, self.config.init_range)
        with torch.no_grad():
            self.src_embedding.weight[PAD].zero_()
            self.tgt_embedding.weight[PAD].zero_()
        if self.jumps is not None:
            self.jumps.reset_parameters()

    @property
    def has_posterior(self) -> bool:
        return self.inference is not None

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """src ``[B, S]``, src_lengths ``[B]`` -> :class:`Encoded`."""
        memory = self.encoder(src, src_lengths)
        mask = src != PAD
        if self.word_memory is not None:
            out_memory = self.word_memory(self.encoder.dropout(self.src_embedding(src)))
        else:
            out_memory = self.output.from_memory(memory)
        return Encoded(memory, self.decoder.scorer.project_memory(memory), out_memory, mask, src_lengths)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor,
                tgt_lengths: Tensor) -> LatentOutput:
        """Teacher-forced pass: tokens ``[B, S]``, ``[B, T]`` -> :class:`varattn.latent.LatentOutput` with
        prior and posterior scores ``[B, T, S]``, mask ``[B, 1, S]`` and query_weights ``[B, T]`` (real target tokens)."""
        encoded = self.encode(src, src_lengths)
        hidden, prior = self.decoder(encoded, tgt_in)
        kind = TokenLikelihood if self.config.emission == "state" else SourceLikelihood
        likelihood = kind(self.output, self.output_query(hidden), encoded.out_memory, tgt_out, self.config.enum_block)
        posterior = None
        if self.inference is not None:
            posterior = posterior_scores(self.mode, self.config.posterior_param, prior,
                                         self.inference(src, src_lengths, tgt_out, tgt_lengths))
        jumps = None if self.jumps is None else self.jumps(src.size(1))
        if jumps is not None and self.config.transition == "jump":
            prior = torch.zeros_like(prior)
        return LatentOutput(prior, posterior, encoded.mask[:, None, :], likelihood, tgt_out != PAD, jumps)

    def start(self, encoded: Encoded) -> DecoderState | ChainState:
        """The decoder state before the first word (decoding protocol); wrapped with the chain's
        forward vector for a chain mode."""
        state = self.decoder.start(encoded)
        return ChainState(state) if self.mode.chain else state

    def step(self, encoded: Encoded, state: DecoderState, prev_tokens: Tensor, kmax: int = 0) -> DecodeStep:
        """One decoding step for rows ``[N]`` (decoding protocol): next-word log-probabilities ``[N, V]``,
        prior scores ``[N, S]`` and the next state."""
        if self.mode.chain:
            hidden, prior, inner = self.decoder.step(encoded, state.inner, prev_tokens)
            return chain_step(self, encoded, state, prev_tokens, hidden, prior, inner, kmax=kmax)
        hidden, prior, state = self.decoder.step(encoded, state, prev_tokens)
        return DecodeStep(self.next_log_probs(encoded, hidden, prior, kmax=kmax), prior, state)

    def output_query(self, hidden: Tensor) -> Tensor:
        """``[..., H]`` -> the decoder state's share of the output layer ``[..., O]`` (see
        :meth:`varattn.modules.output.OutputLayer.query`)."""
        return self.output.query(hidden, self.config.emission)

    def next_log_probs(self, encoded: Encoded, hidden: Tensor, scores: Tensor, kmax: int = 0,
                       soft: bool | None = None, cells: int = 512) -> Tensor:
        """Next-word log-probabilities ``[N, V]`` at a decoding step: hidden ``[N, H]``, scores ``[N, S]``
        (:meth:`varattn.modules.output.OutputLayer.next_word_log_probs`)."""
        soft = self.mode.soft_context if soft is None else soft
        return self.output.next_word_log_probs(self.output_query(hidden), encoded.out_memory, encoded.mask, scores,
                                               soft=soft, kmax=kmax, cells=cells)
