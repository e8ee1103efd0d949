"""Every bad input is one line with exit status 2; settings checked at load; non-finite steps skipped;
validation overflow never becomes best; the learning-rate floor; resume with changed settings;
prepare --force, over-long pairs and empty lines with their line numbers.

Set ``FAULTS_REPORT=path.json`` to have the bad inputs and their messages written there.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from varattn import config as config_lib
from varattn.cli.main import main
from varattn.errors import UserError
from varattn.tasks.translation import TranslationTask
from varattn.tasks.translation_scores import perplexity
from varattn.training import checkpoint
from varattn.training.trainer import Trainer, train

from conftest import TINY_MODEL, tiny_config
from test_faults import _report, message_lines


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from varattn.data.corpora.recipes import prepare

    out = tmp_path_factory.mktemp("reliability") / "prepared"
    prepare("synthetic", str(out), pairs=200, seed=3, progress=False)
    return out


def yaml_config(folder: Path, data: Path | None, **train) -> Path:
    config = {"data": {"max_tokens": 400, "eval_max_tokens": 2000, **({"dir": str(data)} if data else {})},
              "model": {"mode": "soft", **TINY_MODEL},
              "train": {"epochs": 1, "lr": 0.003, "progress": False, "device": "cpu", **train}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def run(data, tmp_path_factory, one_thread) -> Path:
    folder = tmp_path_factory.mktemp("run")
    assert main(["train", str(yaml_config(folder, data, max_steps=3)), "--out", str(folder / "run")]) == 0
    return folder / "run"


def copy_run(run: Path, tmp: Path) -> Path:
    target = tmp / "copy"
    shutil.copytree(run, target)
    return target


def _write(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def _corrupt_weights(run: Path) -> None:
    weights = run / checkpoint.read_meta(run / "checkpoint_best.json")["files"]["weights"]["name"]
    weights.write_bytes(weights.read_bytes()[:-10])


# name -> (argv builder (tmp, data, run) -> argv [, stdin bytes], words the message must hold
#          [, "every loss NaN": the training loss is patched to NaN])
CASES = {
    "config file missing": (lambda t, d, r: ["train", str(t / "missing.yaml"), "--out", str(t / "o")],
                            "config file not found"),
    "config not YAML": (lambda t, d, r: ["train", _write(t / "c.yaml", "train: [\n"), "--out", str(t / "o")],
                        "not valid YAML"),
    "unknown section": (lambda t, d, r: ["train", _write(t / "c.yaml", "trian:\n  lr: 1\n"), "--out", str(t / "o")],
                        "unknown section 'trian'"),
    "unknown key": (lambda t, d, r: ["train", _write(t / "c.yaml", "train:\n  learning_rate: 1\n"),
                                     "--out", str(t / "o")], "unknown key train.learning_rate"),
    "override not section.field": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"), "lr=3"],
                                   "write it as section.field=value"),
    "override of the wrong type": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"),
                                                    "train.epochs=two"], "override 'train.epochs=two'"),
    "learning rate NaN": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"), "train.lr=.nan"],
                          "override 'train.lr=.nan': train.lr=nan is not a finite number"),
    "negative max_sentences": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"),
                                                "data.max_sentences=-1"], "must not be negative"),
    "zero eval_max_tokens": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"),
                                              "data.eval_max_tokens=0"], "data.eval_max_tokens=0 must be positive"),
    "dropout 1.5 in the file": (lambda t, d, r: ["train", _write(t / "c.yaml", "model:\n  dropout: 1.5\n"),
                                                 "--out", str(t / "o")], "c.yaml: model.dropout=1.5 must lie in [0, 1)"),
    "learning rate below its floor": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"),
                                                       "train.lr=1e-7"], "is not above train.min_lr"),
    "VQA batch size 0": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"),
                                          "vqa.batch_size=0"], "vqa.batch_size=0 must be positive"),
    "no output length": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"),
                                          "decode.max_len_a=0", "decode.max_len_b=0"], "allows no output word"),
    "data.dir not set": (lambda t, d, r: ["train", str(yaml_config(t, None)), "--out", str(t / "o")],
                         "data.dir is not set"),
    "data.dir not prepared": (lambda t, d, r: ["train", str(yaml_config(t, t)), "--out", str(t / "o")],
                              "not a prepared data folder"),
    "unknown mode": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"), "model.mode=vae"],
                     "model.mode='vae'"),
    "resume without a run": (lambda t, d, r: ["train", "--resume", "--out", str(t / "none")], "no run to resume"),
    "train over a run": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(copy_run(r, t))],
                         "already holds a run"),
    "resume with another model size": (lambda t, d, r: ["train", "--resume", "--out", str(copy_run(r, t)),
                                                         "model.emb_size=32"], "cannot resume with model.emb_size=32"),
    "non-finite losses in a row": (lambda t, d, r: ["train", str(yaml_config(t, d)), "--out", str(t / "o"),
                                                    "train.max_nonfinite_steps=2"],
                                   "2 steps in a row with a non-finite", "every loss NaN"),
    "corrupt weights": (lambda t, d, r: (_corrupt_weights(c := copy_run(r, t)), ["translate", str(c)])[1],
                        "do not match the checksum"),
    "broken manifest": (lambda t, d, r: ["translate", _write(copy_run(r, t) / "checkpoint_best.json", "{not json")],
                        "broken checkpoint metadata"),
    "run's vocabulary missing": (lambda t, d, r: ((c := copy_run(r, t)) / "data" / "vocab.src.json").unlink()
                                 or ["translate", str(c)], "this is the run's own copy"),
    "run folder missing": (lambda t, d, r: ["translate", str(t / "nothing")], "checkpoint not found"),
    "bad UTF-8 on standard input": (lambda t, d, r: (["translate", str(r)], b"a b\n\xff c\n"),
                                    "<stdin>:2: invalid UTF-8"),
    "input file missing": (lambda t, d, r: ["translate", str(r), "--input", str(t / "in.txt")], "file not found"),
    "input file bad UTF-8": (lambda t, d, r: ["translate", str(r), "--input", _write(t / "in.txt", b"a\n\xfe\n")],
                             "in.txt:2: invalid UTF-8"),
    "n-best above the beam": (lambda t, d, r: ["translate", str(r), "--n-best", "3"], "--n-best 3"),
    "unequal parallel files": (lambda t, d, r: ["prepare", "files", "--out", str(t / "p"),
                                                "--train-src", _write(t / "a", "x\ny\nz\n"),
                                                "--train-tgt", _write(t / "b", "x\ny\n"),
                                                "--valid-src", str(t / "a"), "--valid-tgt", str(t / "a")],
                               "has 3 lines but"),
    "empty training file": (lambda t, d, r: ["prepare", "files", "--out", str(t / "p"),
                                             "--train-src", _write(t / "a", ""), "--train-tgt", _write(t / "b", ""),
                                             "--valid-src", _write(t / "v", "x\n"), "--valid-tgt", str(t / "v")],
                            "file is empty"),
    "prepare over a prepared corpus": (lambda t, d, r: ["prepare", "synthetic", "--out", str(d)], "add --force"),
    "prepare into a foreign folder": (lambda t, d, r: (_write(t / "p" / "notes.txt", "mine"),
                                                       ["prepare", "synthetic", "--force", "--out", str(t / "p")])[1],
                                      "not a prepared data folder"),
    "max-len 0": (lambda t, d, r: ["prepare", "synthetic", "--out", str(t / "p"), "--max-len", "0"],
                  "must be at least 1"),
    "unknown split": (lambda t, d, r: ["evaluate", str(r), "--data", str(d), "--split", "dev"], "no split 'dev'"),
    "results into a missing folder": (lambda t, d, r: ["evaluate", str(r), "--data", str(d), "--no-bleu",
                                                       "--json", str(t / "no" / "such" / "r.json")],
                                      "does not exist"),
    "align without input": (lambda t, d, r: ["align", str(r), "--out", str(t / "a")], "give one input"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_with_status_2(name, data, run, tmp_path, capsys, monkeypatch):
    build, needle, *fault = CASES[name]
    argv = build(tmp_path, data, run)
    if fault:
        _patch_loss(monkeypatch, None)
    if isinstance(argv, tuple):
        argv, stdin = argv
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    lines = message_lines(err)
    _report(f"bad input: {name}", {"status": status, "message": lines[-1] if lines else err})
    assert status == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


def test_floats_in_every_spelling(tmp_path):
    spellings = {"3e-4": 3e-4, "1E-3": 1e-3, ".5": 0.5, "5.": 5.0, "+2.5e+1": 25.0, "7": 7.0}
    for text, value in spellings.items():
        path = _write(tmp_path / "c.yaml", f"train:\n  clip_norm: {text}\n")
        assert config_lib.load(path).train.clip_norm == value
        assert config_lib.load(path, [f"train.clip_norm={text}"]).train.clip_norm == value
    with pytest.raises(UserError, match="c.yaml: train.clip_norm=-1.0 must be positive"):
        config_lib.load(_write(tmp_path / "c.yaml", "train:\n  clip_norm: -1\n"))
    with pytest.raises(UserError, match="override 'train.clip_norm=0'"):
        config_lib.load(_write(tmp_path / "c.yaml", "train:\n  clip_norm: 1\n"), ["train.clip_norm=0"])


def _patch_loss(monkeypatch, bad_calls):
    """Make TranslationTask.loss return NaN on the calls (1-based) in ``bad_calls`` (all when None)."""
    original, calls = TranslationTask.loss, [0]

    def loss(self, *args, **kwargs):
        calls[0] += 1
        value, stats = original(self, *args, **kwargs)
        if bad_calls is None or calls[0] in bad_calls:
            value = value * float("nan")
        return value, stats

    monkeypatch.setattr(TranslationTask, "loss", loss)


def test_non_finite_steps_are_skipped_and_counted(data, tmp_path, monkeypatch, one_thread):
    """A skipped step leaves weights and optimizer as they were: 3 steps with the third skipped end
    where 2 clean steps end."""
    train(tiny_config(data, max_steps=2), tmp_path / "clean")
    _patch_loss(monkeypatch, {3})
    summary = train(tiny_config(data, max_steps=3), tmp_path / "skipped")
    assert summary["skipped_steps"] == 1 and summary["steps"] == 3
    a = checkpoint.load_weights(tmp_path / "clean" / "checkpoint_last.json")
    b = checkpoint.load_weights(tmp_path / "skipped" / "checkpoint_last.json")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_too_many_non_finite_steps_stop_with_the_weights_before_them(data, tmp_path, monkeypatch, one_thread):
    fresh = Trainer(tiny_config(data, max_steps=1), tmp_path / "fresh").model.state_dict()
    _patch_loss(monkeypatch, None)
    with pytest.raises(UserError, match="3 steps in a row with a non-finite loss"):
        train(tiny_config(data, max_nonfinite_steps=3), tmp_path / "bad")
    record = checkpoint.read_meta(tmp_path / "bad" / "checkpoint_last.json")
    assert record["progress"]["step"] == 3 and record["progress"]["skipped"] == 3
    saved = checkpoint.load_weights(tmp_path / "bad" / "checkpoint_last.json")
    assert all(torch.equal(saved[k], fresh[k]) for k in saved)


def test_perplexity_never_overflows():
    assert perplexity(1e4) == math.inf and math.isnan(perplexity(float("nan")))
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)


def _patch_scores(monkeypatch, values):
    """Validation returns ``values`` in turn as its perplexity."""
    queue = list(values)

    def score(self, model, split, device, config):
        value = queue.pop(0) if len(queue) > 1 else queue[0]
        return {"ppl": value, "tokens": 1, "sentences": 1}

    monkeypatch.setattr(TranslationTask, "score", score)


def test_non_finite_or_absurd_validation_never_becomes_best(data, tmp_path, monkeypatch, one_thread):
    _patch_scores(monkeypatch, [math.inf, math.nan, 1.5e267, 40.0])
    summary = train(tiny_config(data, max_steps=4, validate_every=1), tmp_path / "run")
    assert summary["best"]["ppl"] == 40.0
    best = checkpoint.read_meta(tmp_path / "run" / "checkpoint_best.json")["progress"]
    assert best["step"] == 4 and best["best"] == 40.0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3, 4]  # one line per validation, none twice
    assert math.isinf(log[0]["ppl"]) and math.isnan(log[1]["ppl"])


def test_learning_rate_floor_ends_training(data, tmp_path, monkeypatch, one_thread):
    """Validation never improves after the first epoch: the rate halves from 0.004 to the floor 0.001
    (two epochs), and the next epoch without improvement at the floor ends the run: 1 + 2 + 1 epochs."""
    _patch_scores(monkeypatch, [10.0])
    config = tiny_config(data, epochs=20, lr=0.004, min_lr=0.001, lr_decay=0.5, decay_from_epoch=1)
    config.data.max_tokens = 3000
    summary = train(config, tmp_path / "run")
    expected = 1 + math.ceil(math.log2(0.004 / 0.001)) + 1
    assert summary["epochs_done"] == expected and "floor" in summary["stopped"]
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert lrs == [0.004, 0.004, 0.002, 0.001]  # the rate at each epoch's validation (before its decay)


def test_resume_applies_changeable_settings_and_records_them(data, tmp_path, one_thread, capsys):
    folder = tmp_path / "cfg"
    out = tmp_path / "run"
    assert main(["train", str(yaml_config(folder, data, decay_from_epoch=9)), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "train.epochs=2", "train.lr=0.001"]) == 0
    summary = json.loads(capsys.readouterr().out.split("\nrun written")[0])
    assert summary["changed"] == {"train.epochs": [1, 2], "train.lr": [0.003, 0.001]}
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 2 and saved["train"]["lr"] == 0.001
    record = checkpoint.read_meta(out / "checkpoint_last.json")
    assert [g["lr"] for g in record["optimizer"]["param_groups"]] == [0.001]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2] and log[1]["lr"] == 0.001


def test_prepare_force_long_pairs_and_empty_lines(tmp_path, capsys):
    src = ["a b", "c d", "", "e f", " ".join(["w"] * 300), "g h"]
    tgt = ["x y", "z y", "x", "", "y", "z z"]
    files = ["--train-src", _write(tmp_path / "s", "\n".join(src) + "\n"),
             "--train-tgt", _write(tmp_path / "t", "\n".join(tgt) + "\n"),
             "--valid-src", str(tmp_path / "s"), "--valid-tgt", str(tmp_path / "t")]
    out = tmp_path / "p"
    assert main(["prepare", "files", "--out", str(out), *files]) == 0
    meta = json.loads((out / "meta.json").read_text())
    train_stats = meta["splits"]["train"]
    assert train_stats["empty_lines"] == [3, 4] and train_stats["dropped_empty"] == 2
    assert train_stats["long_lines"] == [5] and train_stats["dropped_long"] == 1 and train_stats["pairs"] == 3
    assert meta["splits"]["valid"]["pairs"] == 4  # evaluation splits are kept whole
    before = (out / "meta.json").read_bytes()
    assert main(["prepare", "files", "--out", str(out), *files]) == 2
    assert (out / "meta.json").read_bytes() == before
    assert main(["prepare", "files", "--out", str(out), "--force", "--max-len", "400", *files]) == 0
    assert json.loads((out / "meta.json").read_text())["splits"]["train"]["pairs"] == 4


def test_a_batch_exceeds_max_tokens_only_as_one_over_long_pair():
    """Brute force over the batches of a corpus with a few pairs far beyond the budget."""
    import numpy as np

    from varattn.data.text.batching import TokenBatcher

    rng = np.random.default_rng(0)
    src = rng.integers(1, 30, 300)
    tgt = rng.integers(1, 30, 300)
    src[[7, 100, 222]] = [900, 5000, 450]
    budget = 400
    batches = TokenBatcher(src, tgt, budget, shuffle=True, seed=1).batches(1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(300))
    for batch in batches:
        padded = len(batch) * (int(src[batch].max()) + int(tgt[batch].max()) + 2)
        assert padded <= budget or len(batch) == 1, (batch, padded)


def test_prepare_lists_every_dropped_line(tmp_path, capsys):
    # 241 long pairs among 361 (a user's corpus had 241 dropped where meta.json listed 100)
    src = ["a b" if n % 5 == 0 or n > 301 else " ".join(["w"] * 30) for n in range(1, 302 + 60)]
    tgt = ["x y"] * len(src)
    long_expected = [n for n, line in enumerate(src, 1) if len(line.split()) > 10]
    files = ["--train-src", _write(tmp_path / "s", "\n".join(src) + "\n"),
             "--train-tgt", _write(tmp_path / "t", "\n".join(tgt) + "\n"),
             "--valid-src", str(tmp_path / "s"), "--valid-tgt", str(tmp_path / "t")]
    out = tmp_path / "p"
    assert main(["prepare", "files", "--out", str(out), "--max-len", "10", *files]) == 0
    train_stats = json.loads((out / "meta.json").read_text())["splits"]["train"]
    assert len(long_expected) == 241
    assert train_stats["dropped_long"] == len(long_expected) and train_stats["long_lines"] == long_expected
