"""A differentiable function replayed from CUDA graphs, one capture per input signature.

A step that launches many small kernels (a recurrent loop over the target, run for every token) spends its
time in launches; a CUDA graph records the launches of one forward and one backward once and replays them as
one. :class:`GraphedFunction` wraps ``function(*inputs) -> tuple of tensors`` whose parameters are
``parameters``: the first call with a new signature (shapes, dtypes, which inputs need gradients, the
autocast state) captures the forward and the backward graph; later calls copy the inputs into the captured
ones, replay, and return copies of the outputs, and their backward replays the backward graph and returns
copies of the gradients. Copies, not the captured tensors themselves, so that nothing outside the function
ever holds memory a later replay overwrites.

All captures share one memory pool, which is safe only while one call is in flight (its forward replayed,
its backward not yet run): a call made while another is in flight, a signature beyond ``max_graphs``
captures, or a call without gradients runs ``function`` eagerly instead. A call whose backward never runs
(a skipped step) stops being in flight once its autograd graph is freed.

Capture needs what a CUDA graph needs: static shapes (callers pad to buckets), no synchronisation with the
host and no data-dependent control flow inside ``function``. Dropout inside it draws from the default CUDA
generator, which graphs support. Under autocast, capture and replay run with autocast's weight cache off
(a cached cast would be recorded once and go stale when the optimizer updates the weight).
"""

from __future__ import annotations

import weakref
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor

WARMUP_CALLS = 3  # eager forward + backward runs on a side stream before capture (lazy initialisation)


class _Ticket:
    """Held by the autograd node of a replayed call: alive while the call may still run its backward."""


class _Captured:
    """One signature's forward and backward graphs and their static tensors."""

    def __init__(self, function: Callable[..., tuple[Tensor, ...]], parameters: list[Tensor],
                 sample: tuple[Tensor, ...], pool) -> None:
        self.inputs = tuple(s.detach().clone().requires_grad_(s.requires_grad) for s in sample)
        self.needs_grad = [x.requires_grad for x in self.inputs] + [p.requires_grad for p in parameters]
        surface = [x for x in (*self.inputs, *parameters) if x.requires_grad]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                outputs = function(*self.inputs)
                torch.autograd.grad(outputs, surface, [torch.ones_like(o) for o in outputs], allow_unused=True)
        torch.cuda.current_stream().wait_stream(side)
        self.forward_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.forward_graph, pool=pool):
            self.outputs = tuple(function(*self.inputs))
        self.grad_outputs = tuple(torch.zeros_like(o) for o in self.outputs)
        self.backward_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.backward_graph, pool=pool):
            grads = torch.autograd.grad(self.outputs, surface, self.grad_outputs, allow_unused=True)
        self.grads = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(surface, grads))


class _Replay(torch.autograd.Function):
    """forward(captured, ticket, *inputs, *parameters): the captured graphs as one autograd node."""

    @staticmethod
    def forward(ctx, captured: _Captured, ticket: _Ticket, *tensors: Tensor) -> tuple[Tensor, ...]:
        for static, real in zip(captured.inputs, tensors):
            static.copy_(real)
        captured.forward_graph.replay()
        ctx.captured, ctx.ticket = captured, ticket
        return tuple(o.clone() for o in captured.outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Optional[Tensor]):
        captured = ctx.captured
        for static, grad in zip(captured.grad_outputs, grads):
            if grad is None:
                static.zero_()
            else:
                static.copy_(grad)
        captured.backward_graph.replay()
        ctx.ticket = None  # no longer in flight
        computed = iter(captured.grads)
        return (None, None, *(next(computed).clone() if needed else None for needed in captured.needs_grad))


class GraphedFunction:
    """``function(*inputs) -> tuple of tensors`` (parameters ``parameters()``), replayed from CUDA graphs
    captured per input signature; see the module docstring for when it runs eagerly instead.

    ``counts`` says how calls went: ``captured`` signatures, ``replayed`` calls, ``eager`` calls."""

    def __init__(self, function: Callable[..., tuple[Tensor, ...]], parameters: Callable[[], Iterable[Tensor]],
                 max_graphs: int = 64) -> None:
        self.function = function
        self.parameters = parameters
        self.max_graphs = max_graphs
        self.captures: dict[tuple, _Captured] = {}
        self.pool = None
        self.in_flight: Optional[weakref.ref] = None
        self.counts = {"captured": 0, "replayed": 0, "eager": 0}

    def _busy(self) -> bool:
        return self.in_flight is not None and self.in_flight() is not None

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        autocast = torch.is_autocast_enabled("cuda")
        parameters = list(self.parameters())
        key = (tuple((tuple(x.shape), x.dtype, x.requires_grad) for x in inputs), autocast,
               torch.get_autocast_dtype("cuda") if autocast else None, tuple(p.requires_grad for p in parameters))
        known = key in self.captures
        if (not torch.is_grad_enabled() or self._busy()
                or (not known and len(self.captures) >= self.max_graphs)):
            self.counts["eager"] += 1
            return tuple(self.function(*inputs))
        with torch.autocast("cuda", dtype=key[2] or torch.bfloat16, enabled=autocast, cache_enabled=False):
            if not known:
                if self.pool is None:
                    self.pool = torch.cuda.graph_pool_handle()
                self.captures[key] = _Captured(self.function, parameters, inputs, self.pool)
                self.counts["captured"] += 1
            ticket = _Ticket()
            outputs = _Replay.apply(self.captures[key], ticket, *inputs, *parameters)
        self.in_flight = weakref.ref(ticket)
        self.counts["replayed"] += 1
        return outputs
