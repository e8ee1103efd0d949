"""The Transformer with a latent alignment (issue 12): every mode trains, padding and batching never change a
sentence's numbers, cached decoding equals recomputing the prefix, exact resume, the command line, DDP."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from varattn import config as config_lib
from varattn import latent
from varattn.cli.main import main
from varattn.config import MODES
from varattn.data.vocab import BOS, PAD
from varattn.decoding.search import beam_search
from varattn.errors import UserError
from varattn.models.registry import build_translation_model
from varattn.models.transformer import TransformerSeq2Seq
from varattn.tasks.translation_scores import score_split
from varattn.training import checkpoint
from varattn.training.runs import load_run
from varattn.training.trainer import Trainer, train

from test_model import make_batch, random_sentences

TINY = {"encoder_layers": 2, "decoder_layers": 2, "width": 16, "heads": 2, "ffn": 32, "dropout": 0.0,
        "attention_dropout": 0.0, "inf_layers": 1}
README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_transformer(data_dir, mode="soft", transformer=None, **train):
    settings = {"data": {"dir": str(data_dir), "max_tokens": 400, "eval_max_tokens": 2000},
                "model": {"mode": mode, "arch": "transformer"},
                "transformer": {**TINY, **(transformer or {})},
                "train": {"epochs": 1, "lr": 0.003, "progress": False, "device": "cpu", **train}}
    return config_lib.from_dict(settings).validate()


def model_of(mode, src_vocab=30, tgt_vocab=25, **transformer):
    torch.manual_seed(0)
    config = config_lib.from_dict({"model": {"mode": mode, "arch": "transformer"},
                                   "transformer": {**TINY, **transformer}}).validate()
    return build_translation_model(config, src_vocab, tgt_vocab).double().eval()


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_trains_and_reports(synthetic_data, tmp_path, mode):
    extra = {"warmup_steps": 2} if mode == "vae-dirichlet" else {}
    config = tiny_transformer(synthetic_data, mode, max_steps=6, eval_samples=3, lr=0.01, **extra)
    if mode == "vae-rws":
        config.model.samples = 3
    trainer = Trainer(config, tmp_path / mode)
    before = score_split(trainer.model, trainer.valid_split, trainer.device, samples=3)
    summary = trainer.run()
    record = json.loads((tmp_path / mode / "log.jsonl").read_text().splitlines()[-1])
    assert summary["steps"] == 6
    assert record["ppl"] < before["ppl"]  # the loss falls
    run = load_run(tmp_path / mode, torch.device("cpu"))
    assert isinstance(run.model, TransformerSeq2Seq) and run.model.has_posterior == mode.startswith("vae-")
    again = score_split(run.model, trainer.valid_split, run.device, samples=3)
    assert again["ppl"] == pytest.approx(record["ppl"], rel=1e-5 if mode != "vae-dirichlet" else 0.5)
    if mode.startswith("vae-") and mode != "vae-dirichlet":
        assert record["elbo_ppl"] >= record["ppl"] - 1e-6 and record["kl"] >= 0


@pytest.mark.parametrize("mode", ["soft", "marginal", "vae-enum"])
@pytest.mark.parametrize("cross", ["all", "none"])
def test_padding_and_batching_do_not_change_a_sentence(mode, cross):
    model = model_of(mode, cross_attention=cross)
    sentences = random_sentences(5, torch.Generator().manual_seed(1))
    together = model(*make_batch(sentences))
    for row, sentence in enumerate(sentences):
        alone = model(*make_batch([sentence]))
        steps, sources = len(sentence[1]) + 1, len(sentence[0])
        torch.testing.assert_close(alone.likelihood.enumerate()[0, :steps, :sources],
                                   together.likelihood.enumerate()[row, :steps, :sources])
        for name in ("prior", "posterior") if mode == "vae-enum" else ("prior",):
            a, b = getattr(alone, name), getattr(together, name)
            torch.testing.assert_close(latent.masked_log_softmax(a, alone.mask)[0, :steps, :sources],
                                       latent.masked_log_softmax(b, together.mask)[row, :steps, :sources])
        loss_alone = latent.objective(mode, alone.likelihood, alone.prior, alone.posterior, alone.mask).loss
        loss_together = latent.objective(mode, together.likelihood, together.prior, together.posterior,
                                         together.mask).loss
        torch.testing.assert_close(loss_alone[0, :steps], loss_together[row, :steps])
        if cross == "all":
            maps_alone = model.attention_maps(*make_batch([sentence])[:2], make_batch([sentence])[2])
            src, lengths, tgt_in = make_batch(sentences)[:3]
            maps_together = model.attention_maps(src, lengths, tgt_in)
            torch.testing.assert_close(maps_alone[:, :, 0, :steps, :sources],
                                       maps_together[:, :, row, :steps, :sources])


class Recomputing:
    """The decoding protocol without a cache: every step re-runs the model's full teacher-forced decoder
    over the whole prefix and keeps the last position (the reference the cache must equal)."""

    def __init__(self, model):
        self.model = model

    def encode(self, src, src_lengths):
        return self.model.encode(src, src_lengths)

    def start(self, encoded):
        return _Prefix(torch.empty(encoded.mask.size(0), 0, dtype=torch.long))

    def step(self, encoded, state, prev_tokens, kmax=0):
        from varattn.models.protocol import DecodeStep

        prefix = torch.cat([state.tokens, prev_tokens[:, None]], dim=1)
        hidden = self.model.decode(encoded, prefix)[:, -1]
        prior = self.model.align(hidden, encoded.align_keys)
        return DecodeStep(self.model.next_log_probs(encoded, hidden, prior, kmax=kmax), prior, _Prefix(prefix))


class _Prefix:
    def __init__(self, tokens):
        self.tokens = tokens

    def index_select(self, rows):
        return _Prefix(self.tokens.index_select(0, rows))


@pytest.mark.parametrize("mode", ["soft", "marginal", "vae-enum"])
def test_cached_decoding_equals_full_recomputation(mode):
    model = model_of(mode, positions="learned")
    sentences = random_sentences(4, torch.Generator().manual_seed(2))
    src, src_lengths, tgt_in, tgt_out, _ = make_batch(sentences)
    encoded = model.encode(src, src_lengths)
    full = model.decode(encoded, tgt_in)
    full_prior = model.align(full, encoded.align_keys)
    state = model.start(encoded)
    for t in range(tgt_in.size(1)):  # step by step against the cache: the same states, scores, log-probs
        out = model.step(encoded, state, tgt_in[:, t], kmax=0)
        state = out.state
        torch.testing.assert_close(out.prior, full_prior[:, t])
        reference = model.next_log_probs(encoded, full[:, t], full_prior[:, t])
        torch.testing.assert_close(out.log_probs, reference)
        if not latent.get_mode(mode).soft_context:
            # exact marginal, independently: log Σ_s p(s) p(y | s) from the enumerated likelihood
            whole = model(src, src_lengths, tgt_in, tgt_out, torch.tensor([len(s[1]) + 1 for s in sentences]))
            enum = whole.likelihood.enumerate()[:, t]
            gold = tgt_out[:, t]
            real = gold != PAD
            marginal = torch.logsumexp(enum + latent.masked_log_softmax(whole.prior, whole.mask)[:, t], -1)
            torch.testing.assert_close(out.log_probs.gather(1, gold[:, None]).squeeze(1)[real], marginal[real].float())
    for kmax in (0, 2):  # and the same translations with the same scores through beam search
        cached = beam_search(model, src, src_lengths, beam=3, kmax=kmax, n_best=2, max_len_b=6)
        slow = beam_search(Recomputing(model), src, src_lengths, beam=3, kmax=kmax, n_best=2, max_len_b=6)
        for a, b in zip(cached, slow):
            assert [h.tokens for h in a] == [h.tokens for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-9)


def test_exported_cross_attention_maps_are_the_weights_the_decoder_uses():
    model = model_of("soft")
    src, lengths, tgt_in, _, _ = make_batch(random_sentences(3, torch.Generator().manual_seed(6)))
    encoded = model.encode(src, lengths)
    layer, (keys, values) = model.layers[0], encoded.cross[0]
    h = torch.randn(3, tgt_in.size(1), TINY["width"], dtype=torch.float64)
    mask = encoded.mask[:, None, None, :]
    weights = layer.cross.weights(h, keys, mask)  # [B, H, T, S]
    mixed = (weights.to(values.dtype) @ values).transpose(1, 2).reshape(h.shape)
    torch.testing.assert_close(layer.cross.attend(h, keys, values, mask=mask), layer.cross.out(mixed))
    maps = model.attention_maps(src, lengths, tgt_in)  # [L, H, B, T, S]: distributions, zero on padding
    torch.testing.assert_close(maps.sum(-1), torch.ones_like(maps.sum(-1)))
    assert bool((maps.masked_select(~encoded.mask[None, None, :, None, :].expand_as(maps)) == 0).all())
    model.select_heads(1, None)
    torch.testing.assert_close(model.cross_alignment(src, lengths, tgt_in), maps[1].mean(0))


def test_no_cross_attention_means_the_source_reaches_only_through_z():
    model = model_of("marginal", cross_attention="none")
    src, lengths, tgt_in, _, _ = make_batch(random_sentences(3, torch.Generator().manual_seed(3)))
    other = torch.where(src == PAD, src, (src + 1) % 26 + 4)
    a = model.decode(model.encode(src, lengths), tgt_in)
    b = model.decode(model.encode(other, lengths), tgt_in)
    torch.testing.assert_close(a, b)  # decoder states ignore the source
    assert model.cross_alignment(src, lengths, tgt_in) is None


@pytest.mark.parametrize("cross, reaches", [("all", True), ("detached", False)])
def test_detached_side_channel_never_trains_the_encoder(cross, reaches):
    model = model_of("marginal", cross_attention=cross).train()
    src, lengths, tgt_in, _, _ = make_batch(random_sentences(3, torch.Generator().manual_seed(4)))
    encoded = model.encode(src, lengths)
    model.decode(encoded, tgt_in).sum().backward()  # the decoder states alone, not the latent head
    grads = [p.grad for p in model.encoder.layers.parameters()]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads) == reaches


def test_label_smoothing_matches_its_definition_and_is_soft_only(synthetic_data):
    model = model_of("soft", label_smoothing=0.1).train()
    src, lengths, tgt_in, tgt_out, tgt_lengths = make_batch(random_sentences(3, torch.Generator().manual_seed(5)))
    out = model(src, lengths, tgt_in, tgt_out, tgt_lengths)
    weights = latent.masked_log_softmax(out.prior, out.mask).exp()[:, :, None, :]
    smoothed = out.likelihood(weights)[..., 0]
    context = torch.matmul(weights, out.likelihood.out_memory[:, None])[..., 0, :]
    log_probs = model.output.log_probs(out.likelihood.hidden_proj + context)
    gold = log_probs.gather(-1, tgt_out[..., None]).squeeze(-1)
    torch.testing.assert_close(smoothed, 0.9 * gold + 0.1 * log_probs.mean(-1))
    model.eval()  # evaluation reports the true likelihood
    out = model(src, lengths, tgt_in, tgt_out, tgt_lengths)
    torch.testing.assert_close(out.likelihood(weights)[..., 0], gold)
    with pytest.raises(UserError, match="transformer.label_smoothing"):
        tiny_transformer(synthetic_data, "vae-enum", transformer={"label_smoothing": 0.1})


@pytest.mark.parametrize("settings, needle", [
    ({"heads": 3}, "transformer.heads"), ({"cross_attention": "some"}, "transformer.cross_attention"),
    ({"positions": "rotary"}, "transformer.positions"), ({"dropout": 1.5}, "transformer.dropout")])
def test_bad_transformer_settings_are_named(synthetic_data, settings, needle):
    with pytest.raises(UserError, match=re.escape(needle)):
        tiny_transformer(synthetic_data, transformer=settings)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["soft", "vae-sample"])
def test_resume_repeats_an_uninterrupted_run(synthetic_data, tmp_path, mode):
    noisy = {"dropout": 0.2, "attention_dropout": 0.1}  # the RNG states must be restored too
    straight = tiny_transformer(synthetic_data, mode, transformer=noisy, epochs=2, validate_every=3)
    train(straight, tmp_path / "straight")
    train(tiny_transformer(synthetic_data, mode, transformer=noisy, epochs=1, validate_every=3), tmp_path / "resumed")
    train(straight, tmp_path / "resumed", resume=True)
    a = checkpoint.load_weights(tmp_path / "straight" / "checkpoint_last.json")
    b = checkpoint.load_weights(tmp_path / "resumed" / "checkpoint_last.json")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert (tmp_path / "straight" / "log.jsonl").read_text() == (tmp_path / "resumed" / "log.jsonl").read_text()


@pytest.mark.slow
def test_command_line_train_evaluate_translate_align(synthetic_data, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = [f"data.dir={synthetic_data}", "data.max_tokens=400", "train.epochs=1", "train.max_steps=4",
                 "train.progress=false", "train.device=cpu", *[f"transformer.{k}={v}" for k, v in TINY.items()]]
    assert main(["train", "configs/multi30k/transformer.yaml", "model.mode=vae-enum", "--out", str(run), *overrides]) == 0
    result = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--data", str(synthetic_data), "--split", "test", "--beam", "2",
                 "--json", str(result)]) == 0
    scores = json.loads(result.read_text())
    assert scores["elbo_ppl"] >= scores["ppl"] and "bleu" in scores and "aer" in scores
    assert set(scores["aer"]) == {"prior", "posterior", "exact-posterior", "cross"}
    source = tmp_path / "in.txt"
    source.write_text("".join((synthetic_data / "test.src.txt").read_text().splitlines(True)[:3]))
    out = tmp_path / "out.txt"
    assert main(["translate", str(run), "--input", str(source), "--output", str(out), "--beam", "5",
                 "--alignments"]) == 0
    assert len(out.read_text().splitlines()) == 3
    capsys.readouterr()
    report = tmp_path / "report.html"
    assert main(["align", str(run), "--data", str(synthetic_data), "--limit", "4", "--out", str(tmp_path / "al"),
                 "--pictures", "1", "--grid", "0", "--formats", "svg", "--html", str(report),
                 "--layer", "1", "--head", "0"]) == 0
    assert report.is_file() and "cross" in report.read_text()
    document = json.loads((tmp_path / "al" / "alignments.json").read_text())
    assert document["distributions"] == ["prior", "posterior", "exact-posterior", "cross"]
    # the exported 'cross' matrix is layer 1, head 0 of the model's cross-attention maps
    loaded = load_run(run, torch.device("cpu"))
    pair = document["pairs"][0]
    src = torch.tensor([loaded.data.src_vocab.encode(pair["src"])])
    tgt_in = torch.tensor([[BOS] + loaded.data.tgt_vocab.encode(pair["tgt"][:-1])])
    maps = loaded.model.attention_maps(src, torch.tensor([src.size(1)]), tgt_in)
    assert torch.tensor(pair["cross"]).double() == pytest.approx(maps[1, 0, 0].double().round(decimals=6), abs=2e-6)
    assert main(["align", str(run), "--data", str(synthetic_data), "--out", str(tmp_path / "bad"), "--head", "7"]) == 2
    assert "head 7" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_match_one_process(synthetic_data, tmp_path):
    config = tiny_transformer(synthetic_data, "vae-enum", max_steps=3, lr=0.5, adam_eps=1.0)
    train(config, tmp_path / "single")
    path = tmp_path / "ddp.yaml"
    config_lib.save(config, path)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "varattn", "train", str(path), "--out", str(tmp_path / "ddp")],
                          capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    one = checkpoint.load_weights(tmp_path / "single" / "checkpoint_last.json")
    two = checkpoint.load_weights(tmp_path / "ddp" / "checkpoint_last.json")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)


def test_readme_transformer_example_runs(capsys):
    heading = "## Latent alignment in a Transformer"
    text = README.read_text(encoding="utf-8")
    assert heading in text, f"{README} has no section {heading!r}"
    block = re.search(r"```python\n(.*?)```", text.split(heading, 1)[1], re.S)
    assert block, f"no ```python block after {heading!r}"
    namespace = {"__name__": "readme_transformer"}
    exec(compile(block.group(1), f"{README}:{heading}", "exec"), namespace)
    terms = namespace["terms"]
    assert bool(terms.loss.isfinite().all()) and namespace["head"].query.weight.grad is not None
    # the snippet's exact marginal equals the brute-force sum over positions
    torch.testing.assert_close(namespace["marginal"], namespace["brute_force"])
    assert "nll" in capsys.readouterr().out
