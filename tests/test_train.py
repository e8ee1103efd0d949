"""Training end to end on real data, exact resume, checkpoint integrity."""

import json

import pytest
import torch

from varattn.training import checkpoint
from varattn.data.text.prepared import load_prepared
from varattn.errors import UserError
from varattn.tasks.translation_scores import score_split
from varattn.training.runs import load_run
from varattn.training.trainer import Trainer, train

from conftest import tiny_config


@pytest.mark.slow
def test_validation_loss_falls_on_multi30k_sample(multi30k_sample, tmp_path):
    config = tiny_config(multi30k_sample, epochs=3)
    trainer = Trainer(config, tmp_path / "run")
    before = score_split(trainer.model, trainer.valid_split, trainer.device)["ppl"]
    summary = trainer.run()
    after = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])["ppl"]
    assert summary["epochs_done"] == 3
    assert after < 0.7 * before, (before, after)
    for name in ("checkpoint_best", "checkpoint_last"):
        assert (tmp_path / "run" / f"{name}.json").is_file()
        files = checkpoint.read_meta(tmp_path / "run" / f"{name}.json")["files"]
        assert all((tmp_path / "run" / entry["name"]).is_file() for entry in files.values())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["soft", "vae-sample"])
def test_resume_repeats_an_uninterrupted_run(synthetic_data, tmp_path, mode):
    straight = tiny_config(synthetic_data, mode, epochs=2, validate_every=3)
    train(straight, tmp_path / "straight")
    first = tiny_config(synthetic_data, mode, epochs=1, validate_every=3)
    train(first, tmp_path / "resumed")
    train(straight, tmp_path / "resumed", resume=True)
    a = checkpoint.load_weights(tmp_path / "straight" / "checkpoint_last.json")
    b = checkpoint.load_weights(tmp_path / "resumed" / "checkpoint_last.json")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    log_a = (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
    log_b = (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
    assert log_a == log_b


@pytest.mark.slow
def test_resume_from_the_middle_of_an_epoch(synthetic_data, tmp_path):
    straight = tiny_config(synthetic_data, epochs=1)
    train(straight, tmp_path / "straight")
    train(tiny_config(synthetic_data, epochs=1, max_steps=4), tmp_path / "cut")
    train(straight, tmp_path / "cut", resume=True)
    a = checkpoint.load_weights(tmp_path / "straight" / "checkpoint_last.json")
    b = checkpoint.load_weights(tmp_path / "cut" / "checkpoint_last.json")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_broken_checkpoints_give_clear_errors(synthetic_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(synthetic_data, max_steps=2), run)
    weights = run / checkpoint.read_meta(run / "checkpoint_last.json")["files"]["weights"]["name"]
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(UserError, match="do not match the checksum"):
        load_run(run / "checkpoint_last.json", torch.device("cpu"))
    (run / "checkpoint_best.json").write_text("{not json")
    with pytest.raises(UserError, match="broken checkpoint metadata"):
        load_run(run / "checkpoint_best.json", torch.device("cpu"))
    with pytest.raises(UserError, match="already holds a run"):
        train(tiny_config(synthetic_data, max_steps=2), run)
    with pytest.raises(UserError, match="nothing to resume"):
        train(tiny_config(synthetic_data, max_steps=2), tmp_path / "empty", resume=True)


@pytest.mark.slow
def test_init_from_lists_what_did_not_match(synthetic_data, tmp_path, caplog):
    train(tiny_config(synthetic_data, max_steps=2), tmp_path / "soft")
    config = tiny_config(synthetic_data, "vae-enum", max_steps=1, init_from=str(tmp_path / "soft"))
    trainer = Trainer(config, tmp_path / "vae")
    report = trainer.init_report
    assert report["unexpected"] == []
    assert report["missing"] and all(name.startswith("inference.") for name in report["missing"])
    soft = checkpoint.load_weights(tmp_path / "soft" / "checkpoint_best.json")
    torch.testing.assert_close(trainer.model.output.generator.weight.detach(), soft["output.generator.weight"])
    assert any("inference." in record.message for record in caplog.records)


@pytest.mark.slow
def test_run_directory_translates_on_its_own(synthetic_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(synthetic_data, max_steps=2), run)
    loaded = load_run(run, torch.device("cpu"))
    assert loaded.data.src_vocab == load_prepared(synthetic_data).src_vocab
