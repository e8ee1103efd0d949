"""The ``hmm`` mode (a first-order alignment chain) in both architectures: flat jumps reproduce
``marginal``, decoding's scores equal forward scoring of what it chose, padding changes nothing."""

import pytest
import torch

from varattn import config as config_lib
from varattn import latent
from varattn.config import ModelConfig
from varattn.data.vocab import EOS
from varattn.decoding.search import beam_search, greedy
from varattn.models.registry import build_translation_model
from varattn.models.seq2seq import Seq2Seq

from conftest import TINY_MODEL
from test_model import make_batch, random_sentences

TRANSFORMER = {"encoder_layers": 1, "decoder_layers": 2, "width": 16, "heads": 2, "ffn": 32, "dropout": 0.0,
               "attention_dropout": 0.0, "inf_layers": 1}

pytestmark = pytest.mark.usefixtures("one_thread")


def build(arch: str, mode: str, seed: int = 0):
    torch.manual_seed(seed)
    settings = {"model": {"mode": mode, "arch": arch, **(TINY_MODEL if arch == "rnn" else {})}}
    if arch == "transformer":
        settings["transformer"] = TRANSFORMER
    config = config_lib.from_dict(settings).validate()
    return build_translation_model(config, 30, 25).double().eval()


def sequence_log_prob(model, batch) -> torch.Tensor:
    """Σ_t log p(y_t | y_<t) per sentence by the teacher-forced forward algorithm ``[B]``."""
    out = model(*batch)
    terms = latent.token_terms(model.mode, out)
    return -(terms["nll"].double().masked_fill(~out.query_weights, 0.0)).sum(-1)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_flat_jumps_reproduce_marginal(arch):
    hmm = build(arch, "hmm")
    with torch.no_grad():
        hmm.jumps.bias.zero_()
    marginal = build(arch, "marginal")
    missing, unexpected = marginal.load_state_dict(hmm.state_dict(), strict=False)
    assert not missing and unexpected == ["jumps.bias"]
    batch = make_batch(random_sentences(6, torch.Generator().manual_seed(2)))
    loss_hmm, stats_hmm = latent.batch_objective(hmm.mode, hmm(*batch))
    loss_marginal, stats_marginal = latent.batch_objective(marginal.mode, marginal(*batch))
    assert loss_hmm.item() == pytest.approx(loss_marginal.item(), abs=1e-10)
    assert stats_hmm["nll"] == pytest.approx(stats_marginal["nll"], abs=1e-9)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_jumps_change_the_likelihood_and_get_gradients(arch):
    model = build(arch, "hmm").train()
    with torch.no_grad():
        model.jumps.bias.copy_(torch.linspace(-2, 2, model.jumps.bias.numel()))
    batch = make_batch(random_sentences(4, torch.Generator().manual_seed(3)))
    loss, _ = latent.batch_objective(model.mode, model(*batch))
    loss.backward()
    assert model.jumps.bias.grad.abs().sum() > 0
    flat = build(arch, "hmm")
    with torch.no_grad():
        flat.jumps.bias.zero_()
    assert loss.item() != pytest.approx(latent.batch_objective(flat.mode, flat(*batch))[0].item(), abs=1e-6)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
@pytest.mark.parametrize("kmax", [0, 2])
def test_decoding_scores_equal_forward_scoring_of_the_output(arch, kmax):
    model = build(arch, "hmm", seed=1)
    with torch.no_grad():
        model.jumps.bias.copy_(torch.linspace(-1.5, 1.0, model.jumps.bias.numel()))
    sources = [s for s, _ in random_sentences(5, torch.Generator().manual_seed(4))]
    batch = make_batch([(s, [5]) for s in sources])
    src, src_lengths = batch[0], batch[1]
    for hypotheses in (greedy(model, src, src_lengths, kmax=kmax, max_len_b=6),
                       beam_search(model, src, src_lengths, beam=3, kmax=kmax, max_len_b=6)):
        hypotheses = [h[0] if isinstance(h, list) else h for h in hypotheses]
        chosen = make_batch([(s, h.tokens) for s, h in zip(sources, hypotheses)])
        if kmax:
            out = model(*chosen)
            expected = latent.token_terms(model.mode, out, kmax=(kmax,))[f"kmax{kmax}"]
            expected = -(expected.double().masked_fill(~out.query_weights, 0.0)).sum(-1)
        else:
            expected = sequence_log_prob(model, chosen)
        for row, h in enumerate(hypotheses):
            assert h.log_prob == pytest.approx(expected[row].item(), rel=1e-6)  # decoding runs in float32


def test_padding_does_not_change_a_sentence():
    model = Seq2Seq(ModelConfig(mode="hmm", **TINY_MODEL), 30, 25).double().eval()
    with torch.no_grad():
        model.jumps.bias.normal_()
    sentences = random_sentences(5, torch.Generator().manual_seed(1))
    together = sequence_log_prob(model, make_batch(sentences))
    for row, sentence in enumerate(sentences):
        alone = sequence_log_prob(model, make_batch([sentence]))
        assert together[row].item() == pytest.approx(alone[0].item(), abs=1e-9)


def test_eos_is_part_of_the_chain():
    """The </s> step is scored like any other token: the sequence log-probability includes it."""
    model = build("rnn", "hmm")
    batch = make_batch([([4, 5, 6], [7, 8])])
    out = model(*batch)
    assert out.query_weights.sum().item() == 3 and batch[3][0, 2].item() == EOS


def test_align_gives_the_chain_posterior_and_viterbi(synthetic_data, tmp_path):
    """Train a tiny hmm run, align the synthetic test split: the posterior matrices equal an independent
    forward-backward in float64 over the same model outputs, Viterbi rows are one-hot, AER is scored."""
    import json

    import numpy as np

    from varattn.analysis.report import AlignInput, ReportOptions, run_align
    from varattn.data.text.prepared import load_prepared
    from varattn.training.runs import load_run
    from varattn.training.trainer import train

    from conftest import tiny_config

    train(tiny_config(synthetic_data, "hmm", max_steps=6, lr=0.01), tmp_path / "run")
    run = load_run(tmp_path / "run", torch.device("cpu"))
    data = load_prepared(synthetic_data)
    summary = run_align(run, tmp_path / "align", AlignInput(data=data, split="test", limit=40),
                        report=ReportOptions(pictures=0, formats=("png",)))
    document = json.loads((tmp_path / "align" / "alignments.json").read_text(encoding="utf-8"))
    assert document["distributions"] == ["prior", "posterior", "viterbi"]
    assert set(summary["scores"]) >= {"prior", "posterior", "viterbi"}
    record = min(document["pairs"], key=lambda r: len(r["src"]) ** len(r["tgt"]))
    src = torch.tensor([run.data.src_vocab.encode(record["src"])])
    tgt = run.data.tgt_vocab.encode(record["tgt"][:-1])
    batch = make_batch([(src[0].tolist(), tgt)])
    model = run.model.double().eval()
    with torch.no_grad():
        out = model(*batch)
        emissions = out.likelihood.enumerate().double()
    # brute force over every path (the pair is short enough: S^T at most a few hundred thousand)
    import itertools
    S, T = len(record["src"]), len(record["tgt"])
    assert S ** T <= 200_000, "the test needs a shorter pair for its brute force"
    prior, jumps = out.prior[0].double(), out.jumps[0].double()
    marg = torch.zeros(T, S, dtype=torch.float64)
    values, paths = [], []
    for path in itertools.product(range(S), repeat=T):
        total, prev = 0.0, -1
        for t, s in enumerate(path):
            row = prior[t] + jumps[prev + 1]
            total += float(row[s] - torch.logsumexp(row, 0)) + float(emissions[0, t, s])
            prev = s
        values.append(total)
        paths.append(path)
    weights = torch.tensor(values).sub(torch.tensor(values).logsumexp(0)).exp()
    for w, path in zip(weights, paths):
        for t, s in enumerate(path):
            marg[t, s] += w
    np.testing.assert_allclose(np.array(record["posterior"]), marg.numpy(), atol=2e-5)
    viterbi = np.array(record["viterbi"])
    assert set(np.unique(viterbi)) <= {0.0, 1.0} and (viterbi.sum(-1) == 1).all()


def test_jump_only_transitions_and_the_sloped_start():
    """transition=jump: a move's probability is softmax over s of J(s - s') alone, the same for every
    decoder state; jump_slope starts J at -slope * |d - 1|."""
    model = Seq2Seq(ModelConfig(mode="hmm", transition="jump", jump_slope=0.5, jump_width=3, **TINY_MODEL),
                    30, 25).double().eval()
    assert model.jumps.bias.tolist() == [-0.5 * abs(d - 1) for d in range(-3, 4)]
    batch = make_batch(random_sentences(3, torch.Generator().manual_seed(5)))
    out = model(*batch)
    assert out.prior.abs().sum() == 0
    transitions = latent.chain_transitions(out.prior, out.jumps, out.mask)
    src_len = batch[1][0].item()
    table = model.jumps(batch[0].size(1))[0, :, :src_len]
    expected = table - table.logsumexp(-1, keepdim=True)
    assert torch.allclose(transitions[0, 2, :, :src_len], expected, atol=1e-12)
