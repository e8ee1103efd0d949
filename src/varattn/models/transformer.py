"""A Transformer with a latent alignment (docs/design.md §5b), for every mode of the paper.

Pre-LayerNorm encoder-decoder. The decoder's top state h_t never depends on z: the latent alignment is a
dedicated single-head attention on h_t, ``score(t, s) = (W_q h_t)·(W_k x_s) / sqrt(A)``, giving the prior
over source positions, and the output layer of the LSTM model (``W_h h_t + W_x x_s``,
:class:`varattn.modules.output.OutputLayer`) gives ``p(y_t | z_t = s)``, so soft, marginal, hard,
variational and relaxed objectives, enumeration and K-max apply unchanged.

``transformer.cross_attention`` says how the decoder layers below the latent head see the source:
``all`` (ordinary soft multi-head cross-attention in every layer: a side channel beside z), ``none``
(the decoder is a language model over y<t; the source reaches the output only through z) or ``detached``
(soft cross-attention onto stop-gradient source vectors: the side channel reads the encoder but never
shapes it).

Dimensions: B batch, S source, T target, D width, H heads, d = D / H, A alignment size, O output layer,
V target vocabulary, L decoder layers, N rows of a decoding step (batch x beam).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varattn.config import Section, count, fraction, positive, setting
from varattn.data.vocab import PAD
from varattn.errors import UserError
from varattn.latent import LatentOutput, get_mode, posterior_scores
from varattn.models.chain_decoding import ChainState, chain_step
from varattn.models.protocol import CrossAttentionMaps, DecodeStep
from varattn.models.registry import register_architecture
from varattn.modules.jumps import JumpScores
from varattn.modules.output import OutputLayer, SourceLikelihood, TokenLikelihood


@dataclass
class TransformerConfig(Section):
    """The ``transformer`` section (``model.arch: transformer``, docs/design.md §5b): pre-LayerNorm
    encoder-decoder, a single-head latent alignment on the top decoder state. Defaults are the IWSLT'14
    small Transformer's sizes; ``model.mode``, ``output_size``, ``samples``, ``temperature`` and
    ``enum_block`` come from the model section."""

    encoder_layers: int = positive(6, "encoder layers")
    decoder_layers: int = positive(6, "decoder layers")
    width: int = positive(512, "model width")
    heads: int = positive(4, "attention heads (the latent alignment is one more, single head)")
    ffn: int = positive(1024, "feed-forward width")
    dropout: float = fraction(0.3, "dropout on residual branches")
    attention_dropout: float = fraction(0.1, "dropout on attention weights")
    positions: str = setting("sinusoidal", "sinusoidal | learned", choices=("sinusoidal", "learned"),
                             kind="kind of position")
    max_positions: int = positive(1024, "learned positions only")
    cross_attention: str = setting("all", "soft cross-attention in the decoder layers: all | none | detached",
                                   choices=("all", "none", "detached"))
    align_size: int = count(0, "query/key size of the latent alignment attention; 0 = width")
    inf_layers: int = positive(2, "the inference network's Transformer encoder over the target")
    label_smoothing: float = fraction(0.0, "soft mode only: the latent modes need the true likelihood")

    def check(self, config, fail, origins) -> None:
        if self.width % self.heads:
            fail("transformer.heads", f"does not divide transformer.width={self.width}", "pick heads dividing the width")
        if self.label_smoothing > 0 and config.model.arch == "transformer" and get_mode(config.model.mode).latent:
            fail("transformer.label_smoothing", f"is for soft mode only (model.mode={config.model.mode})",
                 "set it to 0: the latent modes need the true likelihood")



def sinusoids(positions: Tensor, width: int) -> Tensor:
    """Sinusoidal position vectors (Vaswani et al. 2017): positions ``[...]`` -> ``[..., D]``."""
    half = width // 2
    rates = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32)
                      * (-math.log(10000.0) / max(half - 1, 1)))
    angles = positions.float()[..., None] * rates
    vectors = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(vectors, (0, width - 2 * half))


class Embedder(nn.Module):
    """Token embedding scaled by sqrt(D) plus positions, then dropout: ids ``[B, L]`` -> ``[B, L, D]``."""

    def __init__(self, embedding: nn.Embedding, config: TransformerConfig):
        super().__init__()
        self.embedding = embedding
        self.scale = math.sqrt(config.width)
        self.learned = nn.Embedding(config.max_positions, config.width) if config.positions == "learned" else None
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, tokens: Tensor, offset: int = 0) -> Tensor:
        positions = torch.arange(offset, offset + tokens.size(1), device=tokens.device)
        if self.learned is not None:
            if offset + tokens.size(1) > self.learned.num_embeddings:
                raise ValueError(f"a sequence of {offset + tokens.size(1)} tokens is longer than "
                                 f"transformer.max_positions={self.learned.num_embeddings}")
            where = self.learned(positions)
        else:
            where = sinusoids(positions, self.embedding.embedding_dim)
        vectors = self.embedding(tokens) * self.scale + where.to(self.embedding.weight.dtype)
        return self.dropout(vectors)


class Attention(nn.Module):
    """Multi-head attention (``F.scaled_dot_product_attention``); keys and values can be projected once
    (:meth:`keys_values`) and reused, as decoding's cross-attention and self-attention cache do."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def _split(self, x: Tensor) -> Tensor:
        """``[B, L, D]`` -> ``[B, H, L, d]``."""
        return x.view(x.size(0), x.size(1), self.heads, -1).transpose(1, 2)

    def keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """memory ``[B, L, D]`` -> keys, values ``[B, H, L, d]``."""
        return self._split(self.key(memory)), self._split(self.value(memory))

    def attend(self, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None = None,
               causal: bool = False) -> Tensor:
        """queries from x ``[B, Lq, D]``; keys, values ``[B, H, Lk, d]``; mask ``[B, 1, 1, Lk]`` bool
        (True = attend) -> ``[B, Lq, D]``."""
        q = self._split(self.query(x))
        mixed = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal,
                                               dropout_p=self.dropout if self.training else 0.0)
        return self.out(mixed.transpose(1, 2).reshape(x.shape))

    def weights(self, x: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """The attention probabilities ``[B, H, Lq, Lk]`` (no dropout), for export."""
        q = self._split(self.query(x))
        scores = q @ keys.transpose(-1, -2) / math.sqrt(q.size(-1))
        return scores.float().masked_fill(~mask, float("-inf")).softmax(-1)


class FeedForward(nn.Sequential):
    def __init__(self, width: int, ffn: int, dropout: float):
        super().__init__(nn.Linear(width, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, width))


class EncoderLayer(nn.Module):
    """Pre-LN self-attention and feed-forward blocks; also the inference network's target encoder."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width)
        self.attention = Attention(config.width, config.heads, config.attention_dropout)
        self.norm2 = nn.LayerNorm(config.width)
        self.ffn = FeedForward(config.width, config.ffn, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x ``[B, L, D]``, mask ``[B, 1, 1, L]`` -> ``[B, L, D]``."""
        h = self.norm1(x)
        x = x + self.dropout(self.attention.attend(h, *self.attention.keys_values(h), mask=mask))
        return x + self.dropout(self.ffn(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """Embedder, pre-LN layers and a final LayerNorm: ids ``[B, L]`` -> vectors ``[B, L, D]``."""

    def __init__(self, embedding: nn.Embedding, config: TransformerConfig, layers: int):
        super().__init__()
        self.embed = Embedder(embedding, config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(layers))
        self.norm = nn.LayerNorm(config.width)

    def forward(self, tokens: Tensor) -> Tensor:
        mask = (tokens != PAD)[:, None, None, :]
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


class DecoderLayer(nn.Module):
    """Pre-LN causal self-attention, optional soft cross-attention, feed-forward."""

    def __init__(self, config: TransformerConfig, cross: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width)
        self.self_attention = Attention(config.width, config.heads, config.attention_dropout)
        self.cross = None
        if cross:
            self.norm_cross = nn.LayerNorm(config.width)
            self.cross = Attention(config.width, config.heads, config.attention_dropout)
        self.norm2 = nn.LayerNorm(config.width)
        self.ffn = FeedForward(config.width, config.ffn, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None, cross_kv: tuple[Tensor, Tensor] | None,
                src_mask: Tensor, need_weights: bool = False):
        """x ``[B, Lq, D]``: the whole target prefix (``past`` None, causal) or the newest position after a
        cache ``past`` of keys/values ``[B, H, t, d]``; cross_kv: the source's ``[B, H, S, d]``; src_mask
        ``[B, 1, 1, S]``. Returns ``(x, (keys, values))`` with every position's keys/values so far, and
        with ``need_weights`` the cross-attention probabilities ``[B, H, Lq, S]`` third."""
        h = self.norm1(x)
        keys, values = self.self_attention.keys_values(h)
        if past is not None:
            keys, values = torch.cat([past[0], keys], dim=2), torch.cat([past[1], values], dim=2)
        x = x + self.dropout(self.self_attention.attend(h, keys, values, causal=past is None))
        weights = None
        if self.cross is not None:
            h = self.norm_cross(x)
            if need_weights:
                weights = self.cross.weights(h, cross_kv[0], src_mask)
            x = x + self.dropout(self.cross.attend(h, *cross_kv, mask=src_mask))
        x = x + self.dropout(self.ffn(self.norm2(x)))
        return (x, (keys, values), weights) if need_weights else (x, (keys, values))


@dataclass
class Encoded:
    """What decoding needs from the source, per batch row.

    memory ``[B, S, D]`` (source vectors x_s); align_keys ``[B, S, A]`` (``W_k x_s``); out_memory
    ``[B, S, O]`` (``W_x x_s``); cross: per decoder layer the cross-attention keys and values
    ``[B, H, S, d]`` (empty pairs where a layer has none); mask ``[B, S]``; src_lengths ``[B]``.
    """

    memory: Tensor
    align_keys: Tensor
    out_memory: Tensor
    cross: list[tuple[Tensor, Tensor] | None]
    mask: Tensor
    src_lengths: Tensor

    def index_select(self, rows: Tensor) -> "Encoded":
        pick = lambda t: t.index_select(0, rows)  # noqa: E731
        return Encoded(pick(self.memory), pick(self.align_keys), pick(self.out_memory),
                       [None if kv is None else (pick(kv[0]), pick(kv[1])) for kv in self.cross],
                       pick(self.mask), pick(self.src_lengths))


@dataclass
class Cache:
    """The key/value cache of decoding: per decoder layer the self-attention keys and values of every
    word read so far ``[N, H, t, d]``; ``length`` = t."""

    keys: list[Tensor]
    values: list[Tensor]
    length: int

    def index_select(self, rows: Tensor) -> "Cache":
        return Cache([k.index_select(0, rows) for k in self.keys], [v.index_select(0, rows) for v in self.values],
                     self.length)


class AlignmentAttention(nn.Module):
    """The latent head: ``score(t, s) = (W_q h_t)·(W_k x_s) / sqrt(A)`` (one head, unmasked scores)."""

    def __init__(self, width: int, size: int):
        super().__init__()
        self.query = nn.Linear(width, size)
        self.key = nn.Linear(width, size, bias=False)
        self.scale = 1.0 / math.sqrt(size)

    def project_memory(self, memory: Tensor) -> Tensor:
        """memory ``[B, S, D]`` -> keys ``[B, S, A]``."""
        return self.key(memory)

    def forward(self, hidden: Tensor, keys: Tensor) -> Tensor:
        """hidden ``[B, T, D]`` (or ``[N, D]``), keys ``[B, S, A]`` -> scores ``[B, T, S]`` (``[N, S]``)."""
        q = self.query(hidden) * self.scale
        if q.dim() == 2:
            return torch.bmm(q[:, None, :], keys.transpose(1, 2)).squeeze(1)
        return torch.bmm(q, keys.transpose(1, 2))


class TransformerInference(nn.Module):
    """q(z_t = s | x, y): a bidirectional Transformer encoder over the whole target ``y_1 .. </s>``,
    bilinear scores ``g_t^T U x_s`` against the model's source vectors. Training only."""

    def __init__(self, tgt_embedding: nn.Embedding, config: TransformerConfig):
        super().__init__()
        self.encoder = TransformerEncoder(tgt_embedding, config, config.inf_layers)
        self.bilinear = nn.Linear(config.width, config.width, bias=False)

    def forward(self, memory: Tensor, tgt: Tensor) -> Tensor:
        """memory ``[B, S, D]``, tgt ``[B, T]`` -> scores ``[B, T, S]``, unmasked."""
        target = self.encoder(tgt)
        return torch.bmm(target, self.bilinear(memory).transpose(1, 2)) / math.sqrt(target.size(-1))


class SmoothedLikelihood(TokenLikelihood):
    """TokenLikelihood whose soft-context values are label-smoothed while training (soft mode only):
    ``(1 - ε) log p(y) + ε mean_v log p(v)``."""

    def __init__(self, *args, smoothing: float):
        super().__init__(*args)
        self.smoothing = smoothing

    def __call__(self, weights: Tensor) -> Tensor:
        if not self.layer.training or self.smoothing == 0.0:
            return super().__call__(weights)
        context = torch.matmul(weights.to(self.out_memory.dtype), self.out_memory[:, None, :, :])
        log_probs = self.layer.log_probs(self.hidden_proj[:, :, None, :] + context)  # [B, T, K, V]
        targets = self.targets[:, :, None].expand(log_probs.shape[:-1])
        gold = log_probs.gather(-1, targets[..., None]).squeeze(-1)
        return (1.0 - self.smoothing) * gold + self.smoothing * log_probs.mean(-1)


class TransformerSeq2Seq(nn.Module, CrossAttentionMaps):
    """Transformer translation model for every mode; implements :mod:`varattn.models.protocol`.

    ``.config`` is the model section (mode, output size, enumeration block), ``.transformer`` the
    transformer section.
    """

    def __init__(self, config, src_vocab: int, tgt_vocab: int):
        super().__init__()
        self.config = config.model
        self.transformer = t = config.transformer
        if t.width % t.heads:
            raise ValueError(f"transformer.heads={t.heads} does not divide transformer.width={t.width}")
        self.mode = get_mode(self.config.mode)
        output_size = self.config.output_size or t.width
        self.src_embedding = nn.Embedding(src_vocab, t.width, padding_idx=PAD)
        self.tgt_embedding = nn.Embedding(tgt_vocab, t.width, padding_idx=PAD)
        self.encoder = TransformerEncoder(self.src_embedding, t, t.encoder_layers)
        self.embed_target = Embedder(self.tgt_embedding, t)
        self.layers = nn.ModuleList(DecoderLayer(t, cross=t.cross_attention != "none")
                                    for _ in range(t.decoder_layers))
        self.norm = nn.LayerNorm(t.width)
        self.align = AlignmentAttention(t.width, t.align_size or t.width)
        self.output = OutputLayer(t.width, t.width, output_size, tgt_vocab, t.dropout)
        self.inference = TransformerInference(self.tgt_embedding, t) if self.mode.posterior else None
        self.jumps = JumpScores(self.config.jump_width, self.config.jump_slope) if self.mode.chain else None
        self.reset_parameters()

    @classmethod
    def from_config(cls, config, src_vocab: int, tgt_vocab: int) -> "TransformerSeq2Seq":
        """The architecture registry's constructor: the whole Config (model and transformer sections)."""
        return cls(config, src_vocab, tgt_vocab)

    def reset_parameters(self) -> None:
        """Xavier-uniform matrices, zero biases, N(0, D^-1/2) embeddings, zero padding embeddings."""
        for name, parameter in self.named_parameters():
            if "embedding" in name or ".learned." in name:
                nn.init.normal_(parameter, 0.0, parameter.size(-1) ** -0.5)
            elif parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
            elif "norm" not in name:
                nn.init.zeros_(parameter)
        with torch.no_grad():
            self.src_embedding.weight[PAD].zero_()
            self.tgt_embedding.weight[PAD].zero_()
        if self.jumps is not None:
            self.jumps.reset_parameters()

    @property
    def has_posterior(self) -> bool:
        return self.inference is not None

    # -- encoding ---------------------------------------------------------------------------------

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """src ``[B, S]``, src_lengths ``[B]`` -> :class:`Encoded` (cross-attention keys/values included)."""
        memory = self.encoder(src)
        side = memory.detach() if self.transformer.cross_attention == "detached" else memory
        cross = [None if layer.cross is None else layer.cross.keys_values(side) for layer in self.layers]
        return Encoded(memory, self.align.project_memory(memory), self.output.from_memory(memory), cross,
                       src != PAD, src_lengths)

    def decode(self, encoded: Encoded, tgt_in: Tensor) -> Tensor:
        """Teacher forcing, all positions at once: tgt_in ``[B, T]`` -> top states h ``[B, T, D]``."""
        src_mask = encoded.mask[:, None, None, :]
        x = self.embed_target(tgt_in)
        for layer, cross_kv in zip(self.layers, encoded.cross):
            x, _ = layer(x, None, cross_kv, src_mask)
        return self.norm(x)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor,
                tgt_lengths: Tensor) -> LatentOutput:
        """Teacher-forced pass -> :class:`varattn.latent.LatentOutput`: prior and posterior scores
        ``[B, T, S]``, mask ``[B, 1, S]``, the output layer's likelihood, query_weights ``[B, T]``."""
        encoded = self.encode(src, src_lengths)
        hidden = self.decode(encoded, tgt_in)
        prior = self.align(hidden, encoded.align_keys)
        hidden_proj = self.output_query(hidden)
        args = (self.output, hidden_proj, encoded.out_memory, tgt_out, self.config.enum_block)
        smoothing = self.transformer.label_smoothing if self.mode.soft_context else 0.0
        plain = TokenLikelihood if self.config.emission == "state" else SourceLikelihood
        likelihood = SmoothedLikelihood(*args, smoothing=smoothing) if smoothing else plain(*args)
        posterior = None
        if self.inference is not None:
            posterior = posterior_scores(self.mode, self.config.posterior_param, prior,
                                         self.inference(encoded.memory, tgt_out))
        jumps = None if self.jumps is None else self.jumps(src.size(1))
        if jumps is not None and self.config.transition == "jump":
            prior = torch.zeros_like(prior)
        return LatentOutput(prior, posterior, encoded.mask[:, None, :], likelihood, tgt_out != PAD, jumps)

    # -- decoding protocol ------------------------------------------------------------------------

    def start(self, encoded: Encoded) -> Cache:
        """An empty key/value cache for every row of ``encoded``."""
        rows = encoded.memory.size(0)
        t = self.transformer
        empty = encoded.memory.new_zeros(rows, t.heads, 0, t.width // t.heads)
        cache = Cache([empty] * len(self.layers), [empty] * len(self.layers), 0)
        return ChainState(cache) if self.mode.chain else cache

    def step_hidden(self, encoded: Encoded, cache: Cache, prev_tokens: Tensor) -> tuple[Tensor, Cache]:
        """One word for rows ``[N]`` against the cache: top state ``[N, D]`` and the longer cache."""
        src_mask = encoded.mask[:, None, None, :]
        x = self.embed_target(prev_tokens[:, None], offset=cache.length)
        keys, values = [], []
        for depth, (layer, cross_kv) in enumerate(zip(self.layers, encoded.cross)):
            x, (k, v) = layer(x, (cache.keys[depth], cache.values[depth]), cross_kv, src_mask)
            keys.append(k)
            values.append(v)
        return self.norm(x).squeeze(1), Cache(keys, values, cache.length + 1)

    def step(self, encoded: Encoded, state: Cache, prev_tokens: Tensor, kmax: int = 0) -> DecodeStep:
        """One decoding step (decoding protocol): next-word log-probabilities ``[N, V]``, prior scores
        ``[N, S]``, the extended cache; the prefix is never re-run."""
        if self.mode.chain:
            hidden, inner = self.step_hidden(encoded, state.inner, prev_tokens)
            prior = self.align(hidden, encoded.align_keys)
            return chain_step(self, encoded, state, prev_tokens, hidden, prior, inner, kmax=kmax)
        hidden, state = self.step_hidden(encoded, state, prev_tokens)
        prior = self.align(hidden, encoded.align_keys)
        return DecodeStep(self.next_log_probs(encoded, hidden, prior, kmax=kmax), prior, state)

    def output_query(self, hidden: Tensor) -> Tensor:
        """``[..., D]`` -> the decoder state's share of the output layer ``[..., O]``."""
        return self.output.query(hidden, self.config.emission)

    def next_log_probs(self, encoded, hidden: Tensor, scores: Tensor, kmax: int = 0,
                       soft: bool | None = None, cells: int = 512) -> Tensor:
        """Next-word log-probabilities ``[N, V]``: the rule the LSTM model decodes with (soft context,
        exact marginal over positions, or K-max; :meth:`varattn.modules.output.OutputLayer.next_word_log_probs`)."""
        soft = self.mode.soft_context if soft is None else soft
        return self.output.next_word_log_probs(self.output_query(hidden), encoded.out_memory, encoded.mask, scores,
                                               soft=soft, kmax=kmax, cells=cells)

    # -- soft cross-attention maps ----------------------------------------------------------------

    @torch.no_grad()
    def attention_maps(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """The decoder's soft cross-attention probabilities, teacher-forced: ``[L, H, B, T, S]`` (zero on
        padded source positions). ValueError when the decoder has none (``cross_attention: none``)."""
        if self.transformer.cross_attention == "none":
            raise ValueError("this Transformer has no soft cross-attention (transformer.cross_attention=none)")
        encoded = self.encode(src, src_lengths)
        src_mask = encoded.mask[:, None, None, :]
        x = self.embed_target(tgt_in)
        maps = []
        for layer, cross_kv in zip(self.layers, encoded.cross):
            x, _, weights = layer(x, None, cross_kv, src_mask, need_weights=True)
            maps.append(weights.transpose(0, 1))
        return torch.stack(maps)

    # -- the soft baseline's alignment, for `varattn align` ---------------------------------------

    #: the (layer, head) of the soft cross-attention :meth:`cross_alignment` gives, 0-based; None = average
    export_heads: tuple[int | None, int | None] = (None, None)

    def select_heads(self, layer: int | None = None, head: int | None = None) -> None:
        """Choose the cross-attention map :meth:`cross_alignment` exports (None: average over that axis)."""
        t = self.transformer
        if t.cross_attention == "none":
            raise UserError("this Transformer has no soft cross-attention (transformer.cross_attention=none) — "
                            "leave out layer and head")
        for name, value, count in (("layer", layer, t.decoder_layers), ("head", head, t.heads)):
            if value is not None and not 0 <= value < count:
                raise UserError(f"{name} {value}: the model has {count} decoder {name}s — give 0 to {count - 1}")
        self.export_heads = (layer, head)

    def cross_alignment(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor | None:
        """The soft cross-attention of :attr:`export_heads` (averaged over unchosen layers/heads) as
        probabilities ``[B, T, S]``, or None when the decoder has none."""
        if self.transformer.cross_attention == "none":
            return None
        maps = self.attention_maps(src, src_lengths, tgt_in)
        layer, head = self.export_heads
        maps = maps.mean(0) if layer is None else maps[layer]
        return maps.mean(0) if head is None else maps[head]


register_architecture("transformer", TransformerSeq2Seq, settings=TransformerConfig)
