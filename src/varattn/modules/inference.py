"""Inference network ``q(z_t = s | x, y)`` for translation (docs/design.md §3).

Its own BiLSTM over the source, a BiLSTM over the whole target ``y_1 .. y_T`` (packed, so padding
never enters it and q does not depend on what else is in the batch), and a bilinear score
``g_t^T U x_s``. It shares only the embeddings with the generative model, and exists only in training.
"""

from __future__ import annotations

from torch import Tensor, nn

from varattn.modules.attention import BilinearScorer
from varattn.modules.rnn import run_packed


class InferenceNetwork(nn.Module):
    """Posterior scores ``[B, T, S]`` from source ``[B, S]`` and target ``[B, T]`` tokens."""

    def __init__(self, src_embedding: nn.Embedding, tgt_embedding: nn.Embedding, hidden: int,
                 layers: int, dropout: float):
        super().__init__()
        self.src_embedding = src_embedding
        self.tgt_embedding = tgt_embedding
        self.dropout = nn.Dropout(dropout)

        def bilstm(size: int) -> nn.LSTM:
            return nn.LSTM(size, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                           bidirectional=True, batch_first=True)

        self.src_rnn = bilstm(src_embedding.embedding_dim)
        self.tgt_rnn = bilstm(tgt_embedding.embedding_dim)
        self.scorer = BilinearScorer(2 * hidden, 2 * hidden)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt: Tensor, tgt_lengths: Tensor) -> Tensor:
        """src ``[B, S]``, tgt ``[B, T]`` (the tokens being predicted, ``y_1 .. y_n </s>``) ->
        scores ``[B, T, S]``, unmasked."""
        source = run_packed(self.src_rnn, self.dropout(self.src_embedding(src)), src_lengths)
        target = run_packed(self.tgt_rnn, self.dropout(self.tgt_embedding(tgt)), tgt_lengths)
        return self.scorer(self.dropout(target), source)
