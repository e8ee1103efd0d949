"""Does ``torch.compile`` pay on CPU for the decoder's teacher-forced loop? (issue 16)

The loop of :meth:`varattn.models.seq2seq.Decoder.forward` runs one LSTM step and one MLP attention per
target position: a dozen small operators on ``[B, 4H]`` and ``[B, S, A]`` tensors, each with its own
launch and autograd node. Inductor could fuse the pointwise ones. Compiling the whole loop would unroll it
once per target length, so the unit compiled here is one step of it (``dynamic=True``: one graph for
every batch size and source length).

Both arms run the same step function, written out here from the decoder's own parameters (its result is
checked against ``Decoder.forward``), eagerly and compiled, alternating round by round in one process with
one thread: forward over the whole target, then backward. Prints the compile time, seconds per round for
each arm, and the ratio eager / compiled (median and range), then the command, commit, machine and date.

    python benchmarks/compile_decoder_ab.py --setting 256 --rounds 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from harness import footer, stamp
from workloads import SIZES  # the same model sizes as the step A/B


def step(pre_t, context, h, c, recurrent, query_weight, query_bias, v, attn_memory, memory, blocked):
    """One teacher-forced step: LSTM gates from [context; h] and the embedding's share ``pre_t`` [B, 4H],
    then MLP attention v · tanh(W q + U m) [B, S] and the new context [B, M]."""
    size = h.size(1)
    gates = torch.addmm(pre_t, torch.cat([context, h], 1), recurrent)
    squashed = gates.sigmoid()
    c = squashed[:, size:2 * size] * c + squashed[:, :size] * gates[:, 2 * size:3 * size].tanh()
    h = squashed[:, 3 * size:] * c.tanh()
    score = F.linear(torch.tanh(F.linear(h, query_weight, query_bias)[:, None, :] + attn_memory), v).squeeze(-1)
    probs = (score + blocked).softmax(-1)
    context = torch.bmm(probs[:, None, :], memory).squeeze(1)
    return h, c, context, score


def run_loop(step_fn, decoder, encoded, tgt_in):
    first = decoder.cells[0]
    embedded = decoder.embedding(tgt_in)
    width = embedded.size(-1)
    pre = F.linear(embedded, first.weight_ih[:, :width], first.bias_ih + first.bias_hh).unbind(1)
    recurrent = torch.cat([first.weight_ih[:, width:], first.weight_hh], 1).t()
    blocked = torch.zeros(encoded.mask.shape).masked_fill(~encoded.mask, float("-inf"))
    batch = tgt_in.size(0)
    h = c = torch.zeros(batch, decoder.hidden)
    context = torch.zeros(batch, encoded.memory.size(-1))
    scorer = decoder.scorer
    hidden, scores = [], []
    for t in range(tgt_in.size(1)):
        h, c, context, score = step_fn(pre[t], context, h, c, recurrent, scorer.query.weight, scorer.query.bias,
                                       scorer.v.weight, encoded.attn_memory, encoded.memory, blocked)
        hidden.append(h)
        scores.append(score)
    return torch.stack(hidden, 1), torch.stack(scores, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=["256", "128"], default="256")  # one decoder layer
    parser.add_argument("--batch", type=int, default=128, help="sentences per batch")
    parser.add_argument("--src-len", type=int, default=16)
    parser.add_argument("--tgt-len", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="forward+backward passes per round and arm")
    args = parser.parse_args()

    from varattn.config import ModelConfig
    from varattn.models.seq2seq import Seq2Seq

    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = Seq2Seq(ModelConfig(mode="soft", dropout=0.0, **SIZES[args.setting]), 5000, 5000).train()
    generator = torch.Generator().manual_seed(2)

    def batch(src_len: int, tgt_len: int):
        src = torch.randint(4, 5000, (args.batch, src_len), generator=generator)
        lengths = torch.randint(max(1, src_len // 2), src_len + 1, (args.batch,), generator=generator)
        lengths[0] = src_len
        src = src.masked_fill(torch.arange(src_len)[None, :] >= lengths[:, None], 0)
        return src, lengths, torch.randint(4, 5000, (args.batch, tgt_len), generator=generator)

    src, lengths, tgt_in = batch(args.src_len, args.tgt_len)
    encoded = model.encode(src, lengths)
    reference_hidden, reference_scores = model.decoder(encoded, tgt_in)
    ours_hidden, ours_scores = run_loop(step, model.decoder, encoded, tgt_in)
    torch.testing.assert_close(ours_hidden, reference_hidden)
    torch.testing.assert_close(ours_scores, reference_scores)

    compiled = torch.compile(step, dynamic=True)
    started = time.perf_counter()
    for src_len, tgt_len in ((args.src_len, args.tgt_len), (args.src_len + 3, args.tgt_len - 2)):
        s, l, t = batch(src_len, tgt_len)
        hidden, scores = run_loop(compiled, model.decoder, model.encode(s, l), t)
        (hidden.sum() + scores.masked_fill(scores.isinf(), 0).sum()).backward()
    compile_seconds = time.perf_counter() - started
    hidden, scores = run_loop(compiled, model.decoder, encoded, tgt_in)
    torch.testing.assert_close(hidden, reference_hidden, rtol=1e-4, atol=1e-5)

    def timed(step_fn) -> float:
        total = 0.0
        for _ in range(args.repeats):
            model.zero_grad(set_to_none=True)
            enc = model.encode(src, lengths)
            start = time.perf_counter()
            hidden, scores = run_loop(step_fn, model.decoder, enc, tgt_in)
            (hidden.square().mean() + scores.masked_fill(~enc.mask[:, None, :], 0).square().mean()).backward()
            total += time.perf_counter() - start
        return total

    eager_s, compiled_s, ratios = [], [], []
    for number in range(args.rounds):
        arms = [("eager", step), ("compiled", compiled)]
        if number % 2:
            arms.reverse()
        seconds = {name: timed(fn) for name, fn in arms}
        eager_s.append(seconds["eager"])
        compiled_s.append(seconds["compiled"])
        ratios.append(seconds["eager"] / seconds["compiled"])
    print(f"setting {args.setting}, batch {args.batch} x source {args.src_len} x target {args.tgt_len}, one thread, "
          f"torch {torch.__version__}")
    print(f"compile (two shapes, forward and backward): {compile_seconds:.1f} s")
    print(f"eager: {statistics.median(eager_s) / args.repeats * 1000:.1f} ms per forward+backward; compiled: "
          f"{statistics.median(compiled_s) / args.repeats * 1000:.1f} ms")
    print(f"speed-up eager / compiled: median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}")
    print("\n" + footer(stamp({})), end="")


if __name__ == "__main__":
    main()
