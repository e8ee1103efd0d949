"""The VQA model, metric and task: the latent Likelihood, accuracy on hand-worked cases, answer sampling,
every mode training on the synthetic corpus, the prior finding the right region, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from varattn import config as config_lib
from varattn import latent
from varattn.errors import UserError
from varattn.latent import MODE_RECORDS
from varattn.models.vqa import vqa_supports

VQA_MODES = [name for name, record in MODE_RECORDS.items() if vqa_supports(record)]
from varattn.tasks.vqa import (VQATask, sample_answers, score_vqa, vqa_accuracy,
                              vqa_accuracy_leave_one_out)

SMALL = {"word_emb": 32, "question_hidden": 64, "attn_hidden": 64, "classifier_hidden": 64, "answer_emb": 32,
         "inf_hidden": 64, "dropout": 0.0, "batch_size": 32}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from varattn.data.vqa.synthetic import prepare_vqa_synthetic

    out = tmp_path_factory.mktemp("vqa") / "synthetic"
    prepare_vqa_synthetic(out, questions=4000, feature_dim=32, seed=1, min_regions=4, max_regions=8)
    return out


def small_config(data_dir: Path, mode: str, **vqa) -> config_lib.Config:
    return config_lib.from_dict({"data": {"dir": str(data_dir)}, "model": {"mode": mode},
                                 "train": {"device": "cpu", "progress": False, "lr": 0.003},
                                 "vqa": {**SMALL, **vqa}}).validate()


def test_accuracy_hand_worked():
    matches = torch.tensor([0, 1, 2, 3, 4, 10])
    assert vqa_accuracy(matches).tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 1])
    # official: averaged over the ten subsets of nine annotators
    assert vqa_accuracy_leave_one_out(matches).tolist() == pytest.approx([0, 0.3, 0.6, 0.9, 1, 1])
    # e.g. 2 of 10 gave it: 2 subsets keep 1 match (1/3), 8 keep 2 (2/3) -> (2/3 + 16/3) / 10 = 0.6
    assert float(vqa_accuracy_leave_one_out(torch.tensor(2))) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)


def test_accuracy_in_scores(corpus):
    """The accuracy of a model that always answers 'yes', counted by hand from the annotations."""
    task = VQATask()
    data = task.load(corpus)
    split = data.split("valid")
    model = task.build_model(small_config(corpus, "marginal"), data)
    yes = data.answers.index("yes")
    with torch.no_grad():
        model.answer_out.weight.zero_()
        model.answer_out.bias.zero_()
        model.answer_out.bias[yes] = 10.0
    expected = sum(min(int((row == yes).sum()) / 3, 1.0) for row in split.answers) / len(split)
    scores = score_vqa(model, split, torch.device("cpu"), batch_size=100)
    assert scores["accuracy"] == pytest.approx(expected)
    assert scores["questions"] == len(split) and scores["chance_region_accuracy"] > 0


@pytest.mark.parametrize("mode", ["marginal", "vae-enum"])
def test_likelihood_enumerate_equals_one_hot_weights(corpus, mode):
    task = VQATask()
    data = task.load(corpus)
    split = data.split("train")
    torch.manual_seed(0)
    model = task.build_model(small_config(corpus, mode, dropout=0.5), data).eval()
    batch = task.collate(split, range(6))
    enc = model.encode(batch.questions, batch.lengths, batch.features, batch.regions)
    answers = batch.answers[:, :3].clamp_min(0)                                 # [B, M=3]
    lik = model.likelihood(enc, answers)
    S = batch.features.shape[1]
    eye = torch.eye(S).expand(6, 3, S, S)                                      # K = S one-hot points
    assert isinstance(lik, latent.Likelihood)
    assert torch.allclose(lik.enumerate(), lik(eye), atol=1e-5)
    # the test-time answer distribution is the exact marginal over the valid regions
    full = model.region_log_probs(enc)
    log_prior = latent.masked_log_softmax(enc.prior, enc.mask)
    expected = torch.logsumexp(log_prior[..., None] + full, 1)
    assert torch.allclose(model.answer_log_probs(enc), expected, atol=1e-5)
    # padding regions get no prior mass and no say
    assert (log_prior.exp()[~enc.mask] == 0).all()


def test_modes_outside_vqa_are_rejected(corpus):
    task = VQATask()
    data = task.load(corpus)
    with pytest.raises(UserError, match="model.mode='vae-dirichlet' is not available for VQA"):
        task.build_model(small_config(corpus, "vae-dirichlet"), data)


def test_sample_answers_in_proportion_to_annotators():
    answers = torch.tensor([[4] * 7 + [9] * 2 + [-1], [-1] * 10])
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_answers(answers, generator)[0][:, 0] for _ in range(3000)])
    share = (draws[:, 0] == 4).float().mean()
    assert abs(share - 7 / 9) < 0.03 and set(draws[:, 0].tolist()) == {4, 9}
    assert sample_answers(answers, generator)[1].tolist() == [True, False]


@pytest.mark.parametrize("mode", VQA_MODES)
def test_every_mode_trains(corpus, mode):
    """A few Adam steps on one batch of the synthetic corpus lower the loss."""
    task = VQATask()
    data = task.load(corpus)
    split = data.split("train")
    torch.manual_seed(0)
    config = small_config(corpus, mode)
    model = task.build_model(config, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    batch = task.collate(split, range(64))
    losses = []
    for _ in range(25):
        loss, stats = task.loss(model, batch, generator, config, False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert stats["tokens"] == 64 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    scores = task.score(model, data.split("valid"), torch.device("cpu"), small_config(corpus, mode))
    assert task.validation_metric(mode) in scores
    assert scores["elbo"] is None or scores["elbo"] >= scores["nll"] - 1e-6  # an upper bound, by enumeration


@pytest.mark.slow
def test_prior_finds_the_gold_region(corpus):
    """After a short CPU training the marginal-likelihood model's prior argmax is the region the answer
    depends on far more often than chance."""
    task = VQATask()
    data = task.load(corpus)
    train, valid = data.split("train"), data.split("valid")
    config = small_config(corpus, "marginal")
    torch.manual_seed(0)
    model = task.build_model(config, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    generator = torch.Generator().manual_seed(0)
    batcher = task.batcher(train, config, shuffle=True, seed=1)
    for epoch in range(1, 8):
        for indices in batcher.batches(epoch):
            loss, _ = task.loss(model, task.collate(train, indices), generator, config, False)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    scores = score_vqa(model, valid, torch.device("cpu"))
    assert scores["region_accuracy"] > 3 * scores["chance_region_accuracy"], scores
    assert scores["accuracy"] > 0.6, scores


def test_cli_train_and_evaluate(corpus, tmp_path, capsys):
    from varattn.cli.main import main

    run = tmp_path / "run"
    overrides = [f"data.dir={corpus}", "train.epochs=1", "train.max_steps=5", "train.progress=false",
                 "train.device=cpu", *(f"vqa.{k}={v}" for k, v in SMALL.items())]
    recipe = Path(__file__).resolve().parents[1] / "configs" / "vqa" / "vqa2.yaml"
    assert main(["train", str(recipe), "--out", str(run), "model.mode=vae-enum", *overrides]) == 0
    assert (run / "data" / "answers.json").is_file() and not (run / "data" / "features.npy").exists()
    capsys.readouterr()
    out_json = tmp_path / "scores.json"
    assert main(["evaluate", str(run), "--data", str(corpus), "--split", "test", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    for key in ("nll", "accuracy", "entropy", "region_accuracy", "elbo"):
        assert key in printed
    results = json.loads(out_json.read_text())
    assert results["mode"] == "vae-enum" and results["split"] == "test"
    assert main(["evaluate", str(run), "--data", str(corpus), "--split", "nope"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err


def test_glove_initialisation(corpus, tmp_path):
    task = VQATask()
    data = task.load(corpus)
    words = data.question_vocab.itos
    glove = tmp_path / "glove.txt"
    glove.write_text(f"{words[5]} " + " ".join(["0.5"] * 32) + "\nzzz-unseen " + " ".join(["1"] * 32) + "\n")
    model = task.build_model(small_config(corpus, "soft", glove=str(glove)), data)
    assert torch.allclose(model.embedding.weight[5], torch.full((32,), 0.5))
    with pytest.raises(UserError, match=r"glove.txt:1: 32-d vectors but vqa.word_emb=16 — set vqa.word_emb=32"):
        task.build_model(small_config(corpus, "soft", glove=str(glove), word_emb=16), data)
    data.copy_essentials(tmp_path / "run-data")
    glove.unlink()  # a trained run's copy never needs the GloVe file: its weights come from the checkpoint
    task.build_model(small_config(corpus, "soft", glove=str(glove)), task.load(tmp_path / "run-data"))
    with pytest.raises(UserError, match="file not found"):
        task.build_model(small_config(corpus, "soft", glove=str(glove)), data)
