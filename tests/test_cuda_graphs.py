"""``model.cuda_graph`` (issue 24, item 4): the input-feeding decoder's teacher-forced loop replayed from CUDA
graphs captured per bucketed shape. Everywhere: the bucket rule against a brute-force search, the padded loop
equal to the unpadded one in value and gradient, the setting inert on the CPU. With a CUDA device: the graphed
training pass equal to the eager one over steps and shapes, a second call in flight run eagerly, bf16."""

import pytest
import torch

from varattn.config import ModelConfig
from varattn.models.seq2seq import Decoder, Seq2Seq, bucket_rows
from varattn.training.trainer import Trainer

from conftest import TINY_MODEL
from test_input_feed import config_of
from test_model import make_batch, random_sentences

pytestmark = pytest.mark.usefixtures("one_thread")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_bucket_rows_is_the_smallest_allowed_size_at_or_above():
    allowed = sorted({m * 2 ** k for m in range(8, 16) for k in range(12)})
    for rows in range(1, 5000):
        want = rows if rows <= 8 else min(a for a in allowed if a >= rows)
        assert bucket_rows(rows) == want
        assert bucket_rows(rows) - rows <= rows / 8


def decoder_inputs(rows: int, steps: int, positions: int, layers: int, generator: torch.Generator):
    decoder = Decoder(torch.nn.Embedding(20, 6), 10, 7, layers, 5, 0.0).double()
    embedded = torch.randn(rows, steps, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(rows, positions, 10, generator=generator, dtype=torch.float64, requires_grad=True)
    attn_memory = torch.randn(rows, positions, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    lengths = torch.randint(1, positions + 1, (rows,), generator=generator)
    lengths[0] = positions
    blocked = torch.zeros(rows, positions).masked_fill(torch.arange(positions) >= lengths[:, None], float("-inf"))
    return decoder, (embedded, memory, attn_memory, blocked)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("shape", [(3, 5, 4), (9, 8, 8), (17, 11, 13), (40, 1, 1)])
def test_the_padded_loop_equals_the_loop_in_value_and_gradient(shape, layers):
    decoder, inputs = decoder_inputs(*shape, layers, torch.Generator().manual_seed(sum(shape)))
    plain = decoder.loop(*inputs)
    padded = decoder.bucketed(decoder.loop, *inputs)
    # the attention softmax runs in float32 (as in training under bf16): a wider row sums in another order
    close = {"rtol": 1e-5, "atol": 1e-6}
    for got, want in zip(padded, plain):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, **close)
    weights = [torch.randn_like(t) for t in plain]
    surface = [*inputs[:3], *decoder.loop_parameters()]
    # allow_unused: with one target step the fed context (so the memory) never reaches an output
    want = torch.autograd.grad(sum((t * w).sum() for t, w in zip(plain, weights)), surface, allow_unused=True)
    got = torch.autograd.grad(sum((t * w).sum() for t, w in zip(padded, weights)), surface, allow_unused=True)
    for g, w in zip(got, want):
        if w is None:
            assert g is None or not g.any()
            continue
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, w, **close)


@pytest.mark.parametrize("layers", [1, 2])
def test_the_loop_parameters_are_the_ones_it_reads(layers):
    decoder, inputs = decoder_inputs(3, 4, 5, layers, torch.Generator().manual_seed(1))
    hidden, scores = decoder.loop(*inputs)
    everything = list(decoder.parameters())
    grads = torch.autograd.grad(hidden.sum() + scores.sum(), everything, allow_unused=True)
    read = [p for p, g in zip(everything, grads) if g is not None]
    assert [id(p) for p in decoder.loop_parameters()] == [id(p) for p in read]


def test_on_the_cpu_the_setting_trains_the_eager_loop(synthetic_data, tmp_path):
    config = config_of(synthetic_data, "vae-enum", input_feed=True, max_steps=3, eval_samples=2)
    config.model.cuda_graph = True
    trainer = Trainer(config, tmp_path / "run")
    assert trainer.model.decoder.cuda_graph
    trainer.run()
    assert trainer.model.decoder.graphs is None  # never built off CUDA


def test_without_input_feeding_the_setting_does_nothing():
    config = ModelConfig(mode="soft", input_feed=False, cuda_graph=True, **TINY_MODEL)
    assert not Seq2Seq(config, 20, 20).decoder.cuda_graph


def cuda_models(mode: str, layers: int = 2):
    models = []
    for graph in (False, True):
        torch.manual_seed(5)
        config = ModelConfig(mode=mode, cuda_graph=graph, **{**TINY_MODEL, "dec_layers": layers, "dropout": 0.0})
        models.append(Seq2Seq(config, 30, 25).cuda().train())
    return models


def gradients(model, batch):
    out = model(*batch)
    objective = out.prior.float().logsumexp(-1).sum() + out.likelihood.enumerate().float().logsumexp(-1).sum()
    model.zero_grad(set_to_none=True)
    objective.backward()
    return out.prior.detach().clone(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@cuda
@pytest.mark.parametrize("mode", ["soft", "vae-enum"])
def test_the_graphed_pass_equals_the_eager_one_over_steps_and_shapes(mode):
    eager, graphed = cuda_models(mode)
    generator = torch.Generator().manual_seed(11)
    batches = [[t.cuda() for t in make_batch(random_sentences(count, generator))] for count in (5, 7, 12)]
    for batch in (batches[0], batches[1], batches[0], batches[2], batches[1]):  # seen shapes are replayed
        want_prior, want = gradients(eager, batch)
        got_prior, got = gradients(graphed, batch)
        torch.testing.assert_close(got_prior, want_prior, rtol=1e-5, atol=1e-5)
        assert got.keys() == want.keys()
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5)
        with torch.no_grad():  # the same update keeps the two models equal
            for a, b in zip(eager.parameters(), graphed.parameters()):
                a.sub_(0.1 * a.grad)
                b.sub_(0.1 * b.grad)
    counts = graphed.decoder.graphs.counts
    assert counts["replayed"] == 5 and 1 <= counts["captured"] <= 3 and counts["eager"] == 0


@cuda
def test_a_second_call_in_flight_runs_eagerly_and_a_dropped_one_frees_the_graphs():
    _, graphed = cuda_models("soft")
    batch = [t.cuda() for t in make_batch(random_sentences(6, torch.Generator().manual_seed(2)))]
    first = graphed(*batch).prior
    second = graphed(*batch).prior  # the first has not run its backward
    assert graphed.decoder.graphs.counts == {"captured": 1, "replayed": 1, "eager": 1}
    torch.testing.assert_close(first, second)
    del first, second  # a skipped step: its graph is freed without a backward
    graphed(*batch)
    assert graphed.decoder.graphs.counts["replayed"] == 2


@cuda
def test_bf16_autocast_replays_after_the_weights_change():
    eager, graphed = cuda_models("soft", layers=1)
    batch = [t.cuda() for t in make_batch(random_sentences(6, torch.Generator().manual_seed(3)))]
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            want_prior, want = gradients(eager, batch)
            got_prior, got = gradients(graphed, batch)
        torch.testing.assert_close(got_prior.float(), want_prior.float(), rtol=2e-2, atol=2e-2)
        with torch.no_grad():
            for a, b in zip(eager.parameters(), graphed.parameters()):
                a.sub_(0.5 * a.grad)
                b.sub_(0.5 * b.grad)
    assert graphed.decoder.graphs.counts["replayed"] == 3


def test_a_run_resumes_with_the_setting_changed(synthetic_data, tmp_path):
    """It changes no weight, so, like train.bf16, it may change between sessions of a run."""
    config = config_of(synthetic_data, "soft", input_feed=True, max_steps=2, eval_samples=2)
    Trainer(config, tmp_path / "run").run()
    config.model.cuda_graph = True
    config.train.max_steps = 4
    resumed = Trainer(config, tmp_path / "run", resume=True)
    assert resumed.model.decoder.cuda_graph
    assert resumed.run()["steps"] == 4
