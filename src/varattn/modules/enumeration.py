r"""Exact enumeration of the output layer over every alignment, in memory O(block · V).

For target token t of batch row b and source position s,

.. math::
    \ell(t, s) = \log \mathrm{softmax}(W_g\, o_{ts} + b_g)_{y_t}, \qquad
    o_{ts} = \mathrm{dropout}(\tanh(r_t + m_{b s})),

with ``r_t = W_h h_t + b`` (rows) and ``m_{bs} = W_x x_s`` (projected memory). Autograd would keep
every ``[cells, V]`` logit of the batch for the backward pass. :class:`BlockwiseEnumeration` keeps
none: the forward pass computes, block by block of ``rows_per_block`` target tokens (all their source
positions), the logits, their log-sum-exp and the target's log-probability; the backward pass
recomputes one block's logits and uses

.. math::
    \frac{\partial \ell}{\partial \mathrm{logits}} = g \, (\mathrm{onehot}(y) - \mathrm{softmax}(\mathrm{logits}))

to accumulate the gradients of ``W_g``, ``b_g``, the rows and the memory, so at most one block of
``[rows_per_block · S, V]`` floats is alive at a time. Dropout masks are not stored: the random
generator state at the start of the forward pass is saved and replayed in the backward pass, so the
recomputed masks are exactly the forward ones (the blocks draw them in the same order).

Dtypes: under autocast the matrix products run in the autocast dtype (bf16 on GPU) with float32
log-sum-exp, softmax and gradient accumulation; otherwise everything runs in the inputs' dtype
(float32, or float64 for tests). The result is float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BlockwiseEnumeration", "enumerate_blockwise"]


def _compute_dtype(like: Tensor) -> torch.dtype:
    kind = like.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return like.dtype


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


class BlockwiseEnumeration(torch.autograd.Function):
    """rows ``[N, O]``, memory ``[B, S, O]``, row_batch ``[N]`` (batch row of each target token),
    targets ``[N]``, weight ``[V, O]``, bias ``[V]`` -> ``log p(target_n | o_{n s})`` ``[N, S]``."""

    @staticmethod
    def forward(ctx, rows: Tensor, memory: Tensor, row_batch: Tensor, targets: Tensor, weight: Tensor,
                bias: Tensor, rows_per_block: int, dropout: float, training: bool) -> Tensor:
        drop = dropout if training and dropout > 0 else 0.0
        ctx.rng = None
        if drop:  # replayed by backward so that the recomputed masks are the forward's
            ctx.rng = (torch.get_rng_state(),
                       torch.cuda.get_rng_state(rows.device) if rows.device.type == "cuda" else None)
        compute = _compute_dtype(rows)
        # one block holding the whole batch: keep its activations and softmax, recompute nothing
        keep = rows.size(0) <= rows_per_block
        out, ctx.kept = _forward(rows, memory, row_batch, targets, weight, bias, rows_per_block, drop, compute,
                                 keep)
        ctx.save_for_backward(rows, memory, row_batch, targets, weight, bias)
        ctx.config = (rows_per_block, drop, compute)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        rows, memory, row_batch, targets, weight, bias = ctx.saved_tensors
        rows_per_block, drop, compute = ctx.config
        need_rows, need_memory, _, _, need_weight, need_bias = ctx.needs_input_grad[:6]
        acc = torch.promote_types(compute, torch.float32)
        sources = memory.size(1)
        grad_rows = torch.zeros(rows.shape, dtype=acc, device=rows.device) if need_rows else None
        grad_memory = torch.zeros(memory.shape, dtype=acc, device=memory.device) if need_memory else None
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=acc, device=bias.device) if need_bias else None
        with torch.random.fork_rng(_rng_devices(rows.device), enabled=ctx.rng is not None), \
                torch.autocast(rows.device.type, enabled=False):
            if ctx.rng is not None:
                torch.set_rng_state(ctx.rng[0])
                if ctx.rng[1] is not None:
                    torch.cuda.set_rng_state(ctx.rng[1], rows.device)
            w, b = weight.to(compute), bias.to(compute)
            buffer = None
            for start in range(0, rows.size(0), rows_per_block):
                part = slice(start, start + rows_per_block)
                g = grad_out[part].reshape(-1).to(acc)                               # [n*S]
                if ctx.kept is not None:
                    o, tanh, mask, probs = ctx.kept
                    ctx.kept = None
                else:
                    o, tanh, mask = _activation(rows[part], memory, row_batch[part], drop, compute)
                    buffer = _buffer(buffer, o, w, acc)
                    probs = _linear_into(o, w, b, buffer[: o.size(0)])              # [n*S, V]
                    _softmax_(probs)
                # d ℓ / d logits = g (onehot(y) - softmax(logits)), built in place in the softmax buffer
                grad_logits = probs.mul_(-g[:, None])
                tgt = targets[part].repeat_interleave(sources)
                grad_logits.scatter_add_(1, tgt[:, None], g[:, None])
                grad_logits = grad_logits.to(compute)
                if need_weight and grad_weight.dtype == compute:
                    grad_weight.addmm_(grad_logits.t(), o)
                elif need_weight:
                    grad_weight.add_(grad_logits.t().mm(o))
                if need_bias:
                    grad_bias.add_(grad_logits.sum(0))
                if not (need_rows or need_memory):
                    continue
                grad_pre = grad_logits.mm(w).to(acc)                                  # [n*S, O]
                if mask is not None:
                    grad_pre.mul_(mask)
                grad_pre.mul_(1 - tanh.to(acc).square())
                grad_pre = grad_pre.view(-1, sources, rows.size(1))                   # [n, S, O]
                if need_rows:
                    grad_rows[part] = grad_pre.sum(1)
                if need_memory:
                    grad_memory.index_add_(0, row_batch[part], grad_pre)
        cast = lambda grad, like: None if grad is None else grad.to(like.dtype)  # noqa: E731
        return (cast(grad_rows, rows), cast(grad_memory, memory), None, None, cast(grad_weight, weight),
                cast(grad_bias, bias), None, None, None)


def _forward(rows: Tensor, memory: Tensor, row_batch: Tensor, targets: Tensor, weight: Tensor, bias: Tensor,
             rows_per_block: int, drop: float, compute: torch.dtype, keep: bool) -> tuple[Tensor, tuple | None]:
    """The values ``[N, S]``; with ``keep`` (one block only) also that block's activation and softmax."""
    out_dtype = torch.promote_types(compute, torch.float32)
    sources = memory.size(1)
    out = rows.new_empty(rows.size(0), sources, dtype=out_dtype)
    kept = None
    with torch.autocast(rows.device.type, enabled=False):
        w, b = weight.to(compute), bias.to(compute)
        buffer = None
        for start in range(0, rows.size(0), rows_per_block):
            part = slice(start, start + rows_per_block)
            activation = _activation(rows[part], memory, row_batch[part], drop, compute)
            buffer = _buffer(buffer, activation[0], w, out_dtype)
            logits = _linear_into(activation[0], w, b, buffer[: activation[0].size(0)])  # [n*S, V]
            picked = logits.gather(1, targets[part].repeat_interleave(sources)[:, None]).squeeze(1)
            out[part] = (picked - _softmax_(logits)).view(-1, sources)
            if keep:
                kept = activation + (logits,)
    return out, kept


def _buffer(buffer: Tensor | None, o: Tensor, weight: Tensor, dtype: torch.dtype) -> Tensor:
    """The ``[n*S, V]`` logits buffer, made at the first (largest) block and reused by the others: one
    allocation per pass (on CPU a fresh large allocation costs page faults comparable to a tenth of the
    block's matrix product)."""
    if buffer is None:
        buffer = torch.empty(o.size(0), weight.size(0), dtype=dtype, device=o.device)
    return buffer


def _linear_into(o: Tensor, weight: Tensor, bias: Tensor, out: Tensor) -> Tensor:
    """``out = o W^T + b`` (``o`` in the compute dtype; ``out`` float32 or float64)."""
    if o.dtype == out.dtype:
        return torch.addmm(bias, o, weight.t(), out=out)
    return out.copy_(F.linear(o, weight, bias))


def _softmax_(logits: Tensor) -> Tensor:
    """Turn ``logits`` ``[n, V]`` into their softmax in place (no temporary of size V); returns their
    log-sum-exp ``[n]``."""
    top = logits.amax(1, keepdim=True)
    total = logits.sub_(top).exp_().sum(1, keepdim=True)
    logits.div_(total)
    return (total.log_() + top).squeeze(1)


def _activation(rows: Tensor, memory: Tensor, row_batch: Tensor, drop: float, compute: torch.dtype
                ) -> tuple[Tensor, Tensor, Tensor | None]:
    """One block: ``o = dropout(tanh(r_n + m_{b(n) s}))`` flattened to ``[n*S, O]`` in ``compute``, the
    tanh, and the scaled dropout mask (None without dropout). The mask is drawn exactly as
    ``nn.Dropout`` draws it for a tensor of this shape and dtype."""
    pre = rows[:, None, :] + memory.index_select(0, row_batch)              # [n, S, O]
    tanh = torch.tanh(pre.to(compute)).view(-1, pre.size(-1))
    if not drop:
        return tanh, tanh, None
    mask = F.dropout(torch.ones_like(tanh), drop, True)
    return tanh * mask, tanh, mask


def enumerate_blockwise(rows: Tensor, memory: Tensor, row_batch: Tensor, targets: Tensor, weight: Tensor,
                        bias: Tensor, rows_per_block: int, dropout: float = 0.0,
                        training: bool = False) -> Tensor:
    """:class:`BlockwiseEnumeration` as a function (see the module docstring); ``[N, S]``."""
    rows_per_block = max(1, int(rows_per_block))
    if torch.is_grad_enabled() and any(t.requires_grad for t in (rows, memory, weight, bias)):
        return BlockwiseEnumeration.apply(rows, memory, row_batch, targets, weight, bias, rows_per_block,
                                          float(dropout), bool(training))
    drop = dropout if training and dropout > 0 else 0.0
    return _forward(rows, memory, row_batch, targets, weight, bias, rows_per_block, drop, _compute_dtype(rows),
                    False)[0]
