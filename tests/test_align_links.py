"""`varattn align`'s word links mean one thing and say when they mislead (issue 26, item 6): the per-direction
scores of summary.json are the AER of the files written, the reverse run's link files are source-target,
a threshold that keeps almost nothing warns, and so does a run that looks untrained."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from varattn.analysis import aer

from conftest import tiny_config


@pytest.fixture(scope="module")
def bpe_runs(tmp_path_factory, one_thread):
    """The synthetic corpus with 40 BPE merges (most words several pieces; gold links over words) and
    vae-enum runs both ways, trained one step (as good as untrained: a diffuse posterior)."""
    from varattn.data.corpora.recipes import prepare
    from varattn.training.trainer import train

    root = tmp_path_factory.mktemp("bpe-runs")
    prepare("synthetic", str(root / "data"), pairs=400, seed=5, bpe_merges=40, progress=False)
    for name, reverse in (("fw", False), ("rv", True)):
        config = tiny_config(root / "data", "vae-enum", max_steps=1)
        config.data.reverse = reverse
        train(config, root / name)
    return root


def _load(path):
    from varattn.training.runs import load_run

    return load_run(path, torch.device("cpu"))


def _lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _owners(pieces: list[str]) -> list[int]:
    """The word of every BPE piece, counted here by hand."""
    out, word = [], 0
    for piece in pieces:
        out.append(word)
        word += not piece.endswith("@@")
    return out


def _word_argmax(record: dict, name: str) -> set[tuple[int, int]]:
    """Forward word links from a JSON record by loops: W[i, j] = mean over j's pieces of the summed
    probability of i's pieces; each target word j links to its largest W[i, j]."""
    src, tgt = _owners(record["src"]), _owners(record["tgt"][:-1])
    matrix = np.array(record[name])
    W = np.zeros((max(src) + 1, max(tgt) + 1))
    for t, j in enumerate(tgt):
        for s, i in enumerate(src):
            W[i, j] += matrix[t, s] / tgt.count(j)
    return {(int(W[:, j].argmax()), j) for j in range(W.shape[1])}


def _any_piece(record: dict, name: str) -> set[tuple[int, int]]:
    """The old definition: a word pair linked when any of its pieces is (piece argmax per target piece)."""
    src, tgt = _owners(record["src"]), _owners(record["tgt"][:-1])
    matrix = np.array(record[name])[:-1]
    return {(src[int(row.argmax())], tgt[t]) for t, row in enumerate(matrix)}


def test_per_direction_scores_are_the_aer_of_the_files_written(bpe_runs, tmp_path):
    """summary.json's per-distribution scores (both directions) are the AER of {name}.words.align read
    back, whose links are each target word's argmax of the word matrix — as links.align's."""
    from varattn.analysis.report import AlignInput, LinkOptions, ReportOptions, run_align
    from varattn.data.text.prepared import load_prepared

    data = load_prepared(bpe_runs / "data")
    golds = [aer.GoldLinks.of(links) for links in data.split("test").gold_alignments()[:12]]
    out = tmp_path / "both"
    summary = run_align(_load(bpe_runs / "fw"), out, AlignInput(data=data, limit=12),
                        LinkOptions(reverse_run=_load(bpe_runs / "rv")), report=ReportOptions(pictures=0, grid=0))
    records = json.loads((out / "alignments.json").read_text(encoding="utf-8"))["pairs"]
    changed = 0
    for name in ("prior", "posterior", "exact-posterior"):
        written = [aer.parse_gold(line).sure for line in _lines(out / f"{name}.words.align")]
        assert written == [_word_argmax(record, name) for record in records]
        assert summary["scores"][name] == aer.score(written, golds).as_dict()
        reverse = [aer.parse_gold(line).sure for line in _lines(out / "reverse" / f"{name}.words.align")]
        assert summary["reverse"]["scores"][name] == aer.score(reverse, golds).as_dict()  # source-target already
        changed += sum(_any_piece(record, name) != links for record, links in zip(records, written))
    assert changed > 0  # the old "any piece" links differ here, so the test tells the definitions apart
    # one direction: links.align is the chosen distribution's words.align, and its score the summary's
    out = tmp_path / "one"
    summary = run_align(_load(bpe_runs / "fw"), out, AlignInput(data=data, limit=12), report=ReportOptions(0, grid=0))
    assert _lines(out / "links.align") == _lines(out / "posterior.words.align")
    assert summary["links"]["score"] == summary["scores"]["posterior"]


def test_reverse_link_files_are_written_source_target(bpe_runs, tmp_path):
    from varattn.analysis.report import AlignInput, LinkOptions, ReportOptions, run_align
    from varattn.data.text.prepared import load_prepared

    out = tmp_path / "o"
    run_align(_load(bpe_runs / "fw"), out, AlignInput(data=load_prepared(bpe_runs / "data"), limit=10),
              LinkOptions(reverse_run=_load(bpe_runs / "rv")), report=ReportOptions(pictures=0, grid=0))
    forward = json.loads((out / "alignments.json").read_text(encoding="utf-8"))["pairs"]
    reverse = json.loads((out / "reverse" / "alignments.json").read_text(encoding="utf-8"))["pairs"]
    tokens = _lines(out / "tokens.txt")
    for name in ("prior", "posterior"):
        words = _lines(out / "reverse" / f"{name}.words.align")
        pieces = _lines(out / "reverse" / f"{name}.align")
        for f, r, line, piece_line, pair in zip(forward, reverse, words, pieces, tokens):
            assert r["src"] == f["tgt"][:-1] and r["tgt"][:-1] == f["src"]  # the reverse run reads it backwards
            src, tgt = (side.split() for side in pair.split(" ||| "))
            found = aer.parse_gold(line).sure
            assert found == {(j, i) for i, j in _word_argmax(r, name)}  # its links, transposed
            assert all(i < len(src) and j < len(tgt) for i, j in found)  # i a source word, j a target word
            matrix = np.array(r[name])[:-1]                              # [forward source pieces, target pieces]
            assert aer.parse_gold(piece_line).sure == {(t, int(row.argmax())) for t, row in enumerate(matrix)}


def test_a_threshold_that_keeps_almost_no_links_warns(bpe_runs, tmp_path, capsys):
    from varattn.analysis.report import AlignInput, LinkOptions, ReportOptions, run_align
    from varattn.cli.main import main
    from varattn.data.text.prepared import load_prepared

    data = load_prepared(bpe_runs / "data")
    forward, reverse = _load(bpe_runs / "fw"), _load(bpe_runs / "rv")
    echoed = []
    summary = run_align(forward, tmp_path / "strict", AlignInput(data=data, limit=10),
                        LinkOptions(reverse_run=reverse, symmetrize="soft-product", soft_threshold=0.9),
                        report=ReportOptions(pictures=0, grid=0), echo=echoed.append)
    kept = sum(len(line.split()) for line in _lines(tmp_path / "strict" / "links.align"))
    target_words = sum(len(line.split(" ||| ")[1].split()) for line in _lines(tmp_path / "strict" / "tokens.txt"))
    assert kept < 0.1 * target_words  # a diffuse posterior: almost nothing reaches 0.9
    sparse = [w for w in summary["warnings"] if "soft_threshold=0.9" in w]
    assert len(sparse) == 1 and f"kept {kept} links" in sparse[0] and f"gives {target_words}" in sparse[0]
    assert f"warning: {sparse[0]}" in echoed
    lenient = run_align(forward, tmp_path / "lenient", AlignInput(data=data, limit=10),
                        LinkOptions(reverse_run=reverse, symmetrize="soft-product", soft_threshold=0.0),
                        report=ReportOptions(pictures=0, grid=0))
    assert not [w for w in lenient["warnings"] if "soft_threshold" in w]
    # one direction thresholded the same way names --threshold; on the command line, in its terms, on stderr
    code = main(["align", str(bpe_runs / "fw"), "--data", str(bpe_runs / "data"), "--limit", "10", "--links",
                 "threshold", "--threshold", "0.95", "--out", str(tmp_path / "cli"), "--pictures", "0", "--grid", "0"])
    err = capsys.readouterr().err
    assert code == 0 and "the probabilities are too diffuse for --threshold 0.95" in err
    written = json.loads((tmp_path / "cli" / "summary.json").read_text(encoding="utf-8"))
    assert any("threshold=0.95" in w for w in written["warnings"])


def test_a_run_that_looks_untrained_warns_from_its_own_record(bpe_runs, tmp_path):
    """The one-step run's validation record (in its checkpoint) has a perplexity near the vocabulary size
    and a KL near 0: both are said. The same weights with a trained-looking record say nothing."""
    from varattn.analysis.report import AlignInput, ReportOptions, run_align, training_warnings
    from varattn.data.text.prepared import load_prepared

    run = _load(bpe_runs / "fw")
    record = json.loads(run.checkpoint.read_text(encoding="utf-8"))
    last, vocab = record["progress"]["history"][-1], len(run.data.tgt_vocab)
    assert record["progress"]["step"] == 1 and last["ppl"] > 0.5 * vocab and last["kl"] < 0.01
    echoed = []
    summary = run_align(run, tmp_path / "o", AlignInput(data=load_prepared(bpe_runs / "data"), limit=4),
                        report=ReportOptions(pictures=0, grid=0), echo=echoed.append)
    said = summary["warnings"]
    assert len(said) == 2 and f"perplexity {last['ppl']:.1f}" in said[0] and f"{vocab} words" in said[0]
    assert "KL(q || prior)" in said[1] and "the posterior is still the prior" in said[1]
    assert [f"warning: {w}" for w in said] == [line for line in echoed if line.startswith("warning:")]
    # a copy of the run whose record says it learnt (same weights): no warning
    trained = tmp_path / "trained"
    shutil.copytree(bpe_runs / "fw", trained)
    for name in ("checkpoint_best.json", "checkpoint_last.json"):
        meta = json.loads((trained / name).read_text(encoding="utf-8"))
        meta["progress"]["history"][-1].update(ppl=0.2 * vocab, kl=0.5)
        (trained / name).write_text(json.dumps(meta), encoding="utf-8")
    assert training_warnings(_load(trained)) == []
    # and a record without any validation says so
    for name in ("checkpoint_best.json", "checkpoint_last.json"):
        meta = json.loads((trained / name).read_text(encoding="utf-8"))
        meta["progress"]["history"] = []
        (trained / name).write_text(json.dumps(meta), encoding="utf-8")
    assert ["no validation was done (1 training step)" in w for w in training_warnings(_load(trained))] == [True]
