"""``model.input_feed`` (issue 24, item 4): with it false the decoder LSTM runs as one ``nn.LSTM`` call over the
teacher-forced target and the prior attention for all steps at once; decoding (start / step) runs the same
weights one step at a time. Teacher forcing equals the step-by-step path for every mode and both settings,
the setting does what it says (states independent of the source), every mode trains with it, resume is
exact, and a checkpoint keeps the setting it was trained with."""

import json

import pytest
import torch

from varattn import config as config_lib
from varattn import latent
from varattn.cli.main import main
from varattn.config import MODES, ModelConfig
from varattn.data.vocab import PAD
from varattn.errors import UserError
from varattn.models.registry import build_translation_model
from varattn.models.seq2seq import Seq2Seq
from varattn.tasks.translation_scores import score_split
from varattn.training import checkpoint
from varattn.training.runs import load_run
from varattn.training.trainer import Trainer, train

from conftest import TINY_MODEL
from test_model import make_batch, random_sentences

pytestmark = pytest.mark.usefixtures("one_thread")


def model_of(mode: str, input_feed: bool, layers: int = 1) -> Seq2Seq:
    torch.manual_seed(4)
    config = ModelConfig(mode=mode, input_feed=input_feed, **{**TINY_MODEL, "dec_layers": layers})
    return Seq2Seq(config, 30, 25).double().eval()


def config_of(data_dir, mode: str = "soft", input_feed: bool = False, **train_settings):
    settings = {"data": {"dir": str(data_dir), "max_tokens": 400, "eval_max_tokens": 2000},
                "model": {"mode": mode, "samples": 1, "input_feed": input_feed, **TINY_MODEL},
                "train": {"epochs": 1, "lr": 0.003, "progress": False, "device": "cpu", "warmup_steps": 0,
                          **train_settings}}
    return config_lib.from_dict(settings).validate()


def reference_log_probs(mode_name: str, out: latent.LatentOutput) -> torch.Tensor:
    """log p(y_t | y_<t, x) ``[B, T]`` from the teacher-forced output alone, by the latent core: the soft
    model's, the exact marginal, the chain's forward algorithm; for vae-dirichlet (whose decoding mixes
    the words under the Dirichlet's mean, softmax of the log-concentrations) the marginal under that mean."""
    mode = latent.get_mode(mode_name)
    if mode.enumerable or mode.soft_context or mode.chain:
        return -latent.token_terms(mode, out)["nll"]
    return torch.logsumexp(out.likelihood.enumerate() + latent.masked_log_softmax(out.prior, out.mask), -1)


@pytest.mark.parametrize("input_feed", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_teacher_forcing_equals_step_by_step_decoding(mode, input_feed):
    model = model_of(mode, input_feed, layers=2)
    sentences = random_sentences(5, torch.Generator().manual_seed(7))
    src, src_lengths, tgt_in, tgt_out, tgt_lengths = make_batch(sentences)
    out = model(src, src_lengths, tgt_in, tgt_out, tgt_lengths)
    want = reference_log_probs(mode, out)
    encoded = model.encode(src, src_lengths)
    state, got = model.start(encoded), []
    for t in range(tgt_in.size(1)):
        step = model.step(encoded, state, tgt_in[:, t])
        state = step.state
        got.append(step.log_probs.gather(1, tgt_out[:, t, None]).squeeze(1))
    real = tgt_out != PAD
    got = torch.stack(got, 1)
    # the decoding protocol gives float32 log-probabilities: a few float32 ulps of |log p| ~ 3
    torch.testing.assert_close(got[real].double(), want[real], rtol=0, atol=2e-6)


@pytest.mark.parametrize("input_feed", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_decoder_states_and_gradients_equal_the_step_loop(input_feed, layers):
    model = model_of("soft", input_feed, layers)
    src, src_lengths, tgt_in, _, _ = make_batch(random_sentences(4, torch.Generator().manual_seed(3)))
    encoded = model.encode(src, src_lengths)
    hidden, scores = model.decoder(encoded, tgt_in)
    state, rows, row_scores = model.decoder.start(encoded), [], []
    for t in range(tgt_in.size(1)):
        top, score, state = model.decoder.step(encoded, state, tgt_in[:, t])
        rows.append(top)
        row_scores.append(score)
    rows, row_scores = torch.stack(rows, 1), torch.stack(row_scores, 1)
    torch.testing.assert_close(hidden, rows, rtol=0, atol=1e-12)
    torch.testing.assert_close(scores, row_scores, rtol=0, atol=1e-12)
    parameters = list(model.decoder.parameters())
    weight = torch.randn_like(hidden)
    fast = torch.autograd.grad((hidden * weight).sum() + scores.sum(), parameters, allow_unused=True,
                               retain_graph=True)  # the encoder graph is shared
    slow = torch.autograd.grad((rows * weight).sum() + row_scores.sum(), parameters, allow_unused=True)
    for got, want in zip(fast, slow):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_without_input_feeding_the_decoder_states_ignore_the_source():
    """What the setting means: h_t depends on y_<t alone, so two different sources give the same states
    (and input feeding makes them differ)."""
    sentences = random_sentences(3, torch.Generator().manual_seed(5))
    other = [([s + 1 for s in src], tgt) for src, tgt in sentences]
    for input_feed in (False, True):
        model = model_of("marginal", input_feed)
        src, lengths, tgt_in, _, _ = make_batch(sentences)
        src2, lengths2, _, _, _ = make_batch(other)
        a, _ = model.decoder(model.encode(src, lengths), tgt_in)
        b, _ = model.decoder(model.encode(src2, lengths2), tgt_in)
        assert torch.equal(a, b) != input_feed


def test_input_feeding_keeps_its_parameters_and_the_fused_decoder_its_own():
    fed = {name for name, _ in model_of("soft", True, 2).named_parameters() if name.startswith("decoder.")}
    fused = {name for name, _ in model_of("soft", False, 2).named_parameters() if name.startswith("decoder.")}
    assert {"decoder.cells.0.weight_ih", "decoder.cells.1.weight_hh"} <= fed and not any("rnn" in n for n in fed)
    assert {"decoder.rnn.weight_ih_l0", "decoder.rnn.weight_hh_l1"} <= fused and not any("cells" in n for n in fused)
    # the fused LSTM reads the word embedding alone: no context columns
    assert model_of("soft", False).decoder.rnn.weight_ih_l0.shape[1] == TINY_MODEL["emb_size"]


def test_the_transformer_ignores_the_setting():
    """input_feed is an rnn setting; a Transformer is built the same with either value."""
    built = {}
    for input_feed in (False, True):
        torch.manual_seed(0)
        config = config_lib.from_dict({"model": {"mode": "soft", "arch": "transformer", "input_feed": input_feed},
                                       "transformer": {"encoder_layers": 1, "decoder_layers": 1, "width": 8,
                                                       "heads": 2, "ffn": 16}}).validate()
        built[input_feed] = build_translation_model(config, 20, 20).state_dict()
    assert built[False].keys() == built[True].keys()
    assert all(torch.equal(built[False][name], built[True][name]) for name in built[True])


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_trains_without_input_feeding(synthetic_data, tmp_path, mode):
    extra = {"warmup_steps": 2} if mode == "vae-dirichlet" else {}
    config = config_of(synthetic_data, mode, max_steps=6, eval_samples=3, lr=0.01, **extra)
    if mode == "vae-rws":
        config.model.samples = 3
    trainer = Trainer(config, tmp_path / mode)
    assert not trainer.model.decoder.input_feed
    before = score_split(trainer.model, trainer.valid_split, trainer.device, samples=3)
    summary = trainer.run()
    record = json.loads((tmp_path / mode / "log.jsonl").read_text().splitlines()[-1])
    assert summary["steps"] == 6
    assert record["ppl"] < before["ppl"]
    run = load_run(tmp_path / mode, torch.device("cpu"))  # the setting travels with the run
    assert run.config.model.input_feed is False and not run.model.decoder.input_feed
    again = score_split(run.model, trainer.valid_split, run.device, samples=3)
    assert again["ppl"] == pytest.approx(record["ppl"], rel=1e-5 if mode != "vae-dirichlet" else 0.5)


@pytest.mark.slow
def test_the_command_line_trains_translates_and_evaluates_without_input_feeding(synthetic_data, tmp_path):
    run = tmp_path / "run"
    overrides = [f"data.dir={synthetic_data}", "data.max_tokens=400", "train.max_steps=4", "train.progress=false",
                 "train.device=cpu", "model.input_feed=false", "model.mode=vae-enum",
                 *(f"model.{key}={value}" for key, value in TINY_MODEL.items())]
    assert main(["train", "configs/quickstart.yaml", "--out", str(run), *overrides]) == 0
    assert config_lib.load(run / "config.yaml").model.input_feed is False
    source = tmp_path / "in.txt"
    source.write_text("".join((synthetic_data / "test.src.txt").read_text(encoding="utf-8").splitlines(True)[:2]),
                      encoding="utf-8")
    assert main(["translate", str(run), "--input", str(source), "--output", str(tmp_path / "out.txt")]) == 0
    assert len((tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()) == 2


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["soft", "vae-enum"])
def test_resume_without_input_feeding_repeats_an_uninterrupted_run(synthetic_data, tmp_path, mode):
    straight = config_of(synthetic_data, mode, epochs=2, validate_every=3)
    train(straight, tmp_path / "straight")
    train(config_of(synthetic_data, mode, epochs=1, validate_every=3), tmp_path / "resumed")
    train(straight, tmp_path / "resumed", resume=True)
    a = checkpoint.load_weights(tmp_path / "straight" / "checkpoint_last.json")
    b = checkpoint.load_weights(tmp_path / "resumed" / "checkpoint_last.json")
    assert a.keys() == b.keys() and any(name.startswith("decoder.rnn.") for name in a)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert ((tmp_path / "straight" / "log.jsonl").read_text().splitlines()
            == (tmp_path / "resumed" / "log.jsonl").read_text().splitlines())


def test_a_checkpoint_refuses_the_other_setting(synthetic_data, tmp_path):
    run = tmp_path / "run"
    train(config_of(synthetic_data, input_feed=False, max_steps=2), run)
    with pytest.raises(UserError, match=r"cannot resume with model\.input_feed=True"):
        train(config_of(synthetic_data, input_feed=True, max_steps=4), run, resume=True)
    weights = checkpoint.load_weights(run / "checkpoint_last.json")
    other = build_translation_model(config_of(synthetic_data, input_feed=True), *_vocab_sizes(run))
    with pytest.raises(UserError, match="does not fit the model"):
        checkpoint.copy_into(other, weights)


def _vocab_sizes(run) -> tuple[int, int]:
    loaded = load_run(run, torch.device("cpu"))
    return len(loaded.data.src_vocab), len(loaded.data.tgt_vocab)
