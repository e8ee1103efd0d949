"""The block-wise enumeration Function: values and gradients equal autograd's, dropout masks are replayed,
and its memory follows the block size, not B·T·S·V."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from varattn.config import ModelConfig
from varattn.modules.enumeration import enumerate_blockwise
from varattn.models.seq2seq import Seq2Seq

from conftest import TINY_MODEL


def problem(batch=3, length=4, sources=5, size=6, vocab=11, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(batch * length, size, generator=g, dtype=dtype).requires_grad_()
    memory = torch.randn(batch, sources, size, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(vocab, size, generator=g, dtype=dtype).requires_grad_()
    bias = torch.randn(vocab, generator=g, dtype=dtype).requires_grad_()
    row_batch = torch.arange(batch).repeat_interleave(length)
    targets = torch.randint(0, vocab, (batch * length,), generator=g)
    upstream = torch.randn(batch * length, sources, generator=g, dtype=dtype)
    return rows, memory, row_batch, targets, weight, bias, upstream


def reference(rows, memory, row_batch, targets, weight, bias, rows_per_block=None, dropout=0.0):
    """Plain autograd, block by block in the Function's order (so dropout draws the same masks)."""
    rows_per_block = rows_per_block or rows.size(0)
    pieces = []
    for start in range(0, rows.size(0), rows_per_block):
        part = slice(start, start + rows_per_block)
        pre = rows[part, None, :] + memory[row_batch[part]]
        o = F.dropout(torch.tanh(pre), dropout, training=dropout > 0)
        log_probs = F.log_softmax(F.linear(o, weight, bias), -1)
        pieces.append(log_probs.gather(-1, targets[part, None, None].expand(-1, pre.size(1), 1)).squeeze(-1))
    return torch.cat(pieces, 0)


def values_and_grads(fn, inputs, upstream):
    for tensor in inputs:
        tensor.grad = None
    values = fn()
    values.backward(upstream)
    return values.detach(), [tensor.grad.clone() for tensor in inputs]


@pytest.mark.parametrize("rows_per_block", [1, 5, 12, 100])
def test_function_equals_autograd_in_float64(rows_per_block):
    rows, memory, row_batch, targets, weight, bias, upstream = problem()
    leaves = (rows, memory, weight, bias)
    want = values_and_grads(lambda: reference(rows, memory, row_batch, targets, weight, bias), leaves, upstream)
    got = values_and_grads(lambda: enumerate_blockwise(rows, memory, row_batch, targets, weight, bias, rows_per_block),
                           leaves, upstream)
    assert got[0].dtype == torch.float64
    torch.testing.assert_close(got[0], want[0])
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b)


def test_function_passes_gradcheck():
    rows, memory, row_batch, targets, weight, bias, _ = problem(batch=2, length=3, sources=3, size=3, vocab=5)
    torch.autograd.gradcheck(lambda r, m, w, b: enumerate_blockwise(r, m, row_batch, targets, w, b, 2),
                             (rows, memory, weight, bias))


@pytest.mark.parametrize("rows_per_block", [2, 100])
def test_dropout_masks_are_the_forward_ones_in_backward(rows_per_block):
    rows, memory, row_batch, targets, weight, bias, upstream = problem()
    leaves = (rows, memory, weight, bias)
    torch.manual_seed(7)
    want = values_and_grads(lambda: reference(rows, memory, row_batch, targets, weight, bias, rows_per_block, 0.4),
                            leaves, upstream)
    after_reference = torch.get_rng_state()
    torch.manual_seed(7)
    values = enumerate_blockwise(rows, memory, row_batch, targets, weight, bias, rows_per_block, 0.4, True)
    after_forward = torch.get_rng_state()
    for tensor in leaves:
        tensor.grad = None
    values.backward(upstream)
    assert torch.equal(torch.get_rng_state(), after_forward)  # backward replays the masks without drawing anew
    assert torch.equal(after_forward, after_reference)        # the forward drew exactly the reference's masks
    torch.testing.assert_close(values, want[0])
    for tensor, grad in zip(leaves, want[1]):
        torch.testing.assert_close(tensor.grad, grad)
    no_dropout = reference(rows, memory, row_batch, targets, weight, bias)
    assert not torch.allclose(values, no_dropout)              # the masks did something


def test_autocast_bf16_keeps_float32_results_close():
    rows, memory, row_batch, targets, weight, bias, upstream = problem(dtype=torch.float32)
    leaves = (rows, memory, weight, bias)
    exact = values_and_grads(lambda: enumerate_blockwise(rows, memory, row_batch, targets, weight, bias, 5),
                             leaves, upstream)

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return enumerate_blockwise(rows, memory, row_batch, targets, weight, bias, 5)

    got = values_and_grads(bf16, leaves, upstream)
    assert got[0].dtype == torch.float32 and all(g.dtype == torch.float32 for g in got[1])
    torch.testing.assert_close(got[0], exact[0], atol=0.1, rtol=0.05)
    for a, b in zip(got[1], exact[1]):
        torch.testing.assert_close(a, b, atol=0.3, rtol=0.1)


class LargestAllocation(TorchDispatchMode):
    """The largest storage (bytes) any operation returns while active, forward and backward."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.bytes = max(self.bytes, leaf.untyped_storage().nbytes())
        return out


def largest_allocation(batch, block, naive=False, vocab=400):
    torch.manual_seed(0)
    config = ModelConfig(mode="marginal", enum_block=block, **{**TINY_MODEL, "dec_hidden": 8, "enc_hidden": 4})
    model = Seq2Seq(config, 20, vocab)
    src = torch.randint(4, 20, (batch, 6))
    tgt = torch.randint(4, vocab, (batch, 5))
    lengths = torch.full((batch,), 6), torch.full((batch,), 5)
    likelihood = model(src, lengths[0], tgt, tgt, lengths[1]).likelihood
    likelihood.hidden_proj = likelihood.hidden_proj.detach().requires_grad_()  # measure the enumeration only
    likelihood.out_memory = likelihood.out_memory.detach().requires_grad_()
    with LargestAllocation() as mode:
        if naive:  # everything materialised: [B, T, S, V] log-probabilities
            pre = likelihood.hidden_proj[:, :, None, :] + likelihood.out_memory[:, None, :, :]
            values = model.output.log_probs(pre).gather(-1, tgt[:, :, None, None].expand(-1, -1, 6, 1))
        else:
            values = likelihood.enumerate()
        values.sum().backward()
    return mode.bytes




def test_peak_allocation_grows_with_the_block_not_with_btsv(one_thread):
    one, eight = largest_allocation(batch=1, block=12), largest_allocation(batch=8, block=12)
    assert one == eight == 12 * 400 * 4                   # one block of [cells, V] float32, whatever B·T·S·V
    assert largest_allocation(batch=8, block=48) == 48 * 400 * 4
    naive_one, naive_eight = largest_allocation(1, 12, naive=True), largest_allocation(8, 12, naive=True)
    assert naive_eight == 8 * naive_one == 8 * 5 * 6 * 400 * 4
