"""`varattn align-corpus`: one command from a parallel corpus to symmetrised links, resumable after a kill.

A tiny synthetic corpus (the package's generator) and tiny model sizes keep every run to seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from varattn.analysis.align_corpus import HMM_ALIGNER, AlignCorpusRequest, align_corpus
from varattn.cli.main import main
from varattn.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PAIRS = 60
TINY = ["model.emb_size=16", "model.output_size=16", "model.enc_hidden=8", "model.dec_hidden=8",
        "model.attn_size=8", "data.max_tokens=200", "data.eval_max_tokens=2000", "train.epochs=100",
        "train.max_steps=120", "train.validate_every=10", "train.device=cpu"]
OPTIONS = ["--bpe-merges", "40", "--valid-pairs", "12", "--symmetrize", "intersect"]
OUTPUTS = ["links.align", "forward.align", "reverse.align", "scores.tsv", "tokens.txt", "summary.json",
           "posterior.align", "posterior.words.align", "viterbi.words.align", "reverse/posterior.words.align"]


def write_corpus(folder: Path) -> tuple[Path, list[tuple[list[str], list[str]]]]:
    from varattn.data.text.synthetic import generate

    _, pairs = generate(PAIRS, seed=5, max_len=12)
    words = [(p.src, p.tgt) for p in pairs]
    path = folder / "corpus.src-tgt"
    path.write_text("".join(f"{' '.join(s)} ||| {' '.join(t)}\n" for s, t in words), encoding="utf-8")
    return path, words


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """One uninterrupted job, in this process, with its progress reports."""
    out = tmp_path_factory.mktemp("job") / "aligned"
    reports = []
    request = AlignCorpusRequest(out=out, pairs=corpus[0], overrides=TINY, bpe_merges=40, valid_pairs=12,
                                 symmetrize="intersect")
    summary = align_corpus(request, on_progress=reports.append)
    return out, summary, reports


def links(line: str) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in link.split("-")) for link in line.split()]


def test_the_embedded_recipe_is_configs_align_hmm():
    assert yaml.safe_load((ROOT / "configs" / "align" / "hmm.yaml").read_text(encoding="utf-8")) == HMM_ALIGNER


def test_a_job_writes_every_output_one_line_per_pair_links_in_range(corpus, finished):
    out, summary, _ = finished
    _, words = corpus
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert summary["pairs"] == PAIRS
    for name in ("links.align", "forward.align", "reverse.align", "posterior.words.align"):
        lines = (out / name).read_text(encoding="utf-8").splitlines()
        assert len(lines) == PAIRS, name
        for (src, tgt), line in zip(words, lines):
            assert all(0 <= i < len(src) and 0 <= j < len(tgt) for i, j in links(line)), (name, line)
    # intersect: exactly the links both directions chose
    for both, forward, reverse in zip(*((out / n).read_text().splitlines()
                                        for n in ("links.align", "forward.align", "reverse.align"))):
        assert set(links(both)) == set(links(forward)) & set(links(reverse))
    tokens = (out / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert tokens == [f"{' '.join(s)} ||| {' '.join(t)}" for s, t in words]
    assert summary["training"]["forward"]["steps"] == 120 and summary["training"]["reverse"]["steps"] == 120


def test_one_progress_bar_over_the_stages_in_order_ending_at_one(finished):
    _, _, reports = finished
    stages = []
    for report in reports:
        if not stages or stages[-1] != report.stage:
            stages.append(report.stage)
    assert stages == ["prepare", "train forward", "train reverse", "align", "symmetrise"]
    assert reports[-1].fraction == 1.0 and reports[-1].remaining == 0.0
    assert any(r.remaining is not None and r.remaining > 0 for r in reports if r.stage == "train reverse")


def test_a_finished_job_run_again_does_nothing_and_other_settings_are_refused(corpus, finished):
    out, summary, _ = finished
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "lock"}
    again = align_corpus(AlignCorpusRequest(out=out, pairs=corpus[0], overrides=TINY, bpe_merges=40, valid_pairs=12,
                                            symmetrize="intersect"))
    assert again["seconds"] == summary["seconds"]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    with pytest.raises(UserError, match="other input or settings.*bpe_merges 40 -> 30"):
        align_corpus(AlignCorpusRequest(out=out, pairs=corpus[0], overrides=TINY, bpe_merges=30, valid_pairs=12,
                                        symmetrize="intersect"))


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "varattn", "align-corpus", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


@pytest.mark.slow
def test_killed_mid_training_the_same_command_continues_to_the_same_links(corpus, finished, tmp_path):
    out = tmp_path / "killed"
    args = command(str(corpus[0]), "--out", str(out), *OPTIONS, *TINY)
    process = subprocess.Popen(args, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "work" / "runs" / "forward" / "checkpoint_last.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:  # a checkpoint, not the last one
            if last.is_file() and 10 <= json.loads(last.read_text())["progress"]["step"] < 100:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the job ended before it could be killed mid-training"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    stages = out / "work" / "stages"
    assert (stages / "prepare.json").is_file() and not (stages / "train-forward.json").exists()
    prepared = (out / "work" / "data" / "meta.json").stat().st_mtime_ns
    step = json.loads(last.read_text())["progress"]["step"]
    done = subprocess.run(args, env=environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "work" / "data" / "meta.json").stat().st_mtime_ns == prepared  # prepare was not redone
    reference = finished[0]
    logs = [[json.loads(line)["step"] for line in (job / "work" / "runs" / "forward" / "log.jsonl").open()]
            for job in (out, reference)]
    assert logs[0] == logs[1] and step >= 10  # each validation once: resumed, not restarted
    for name in OUTPUTS[:5] + ["posterior.align", "reverse/posterior.words.align"]:
        assert (out / name).read_text(encoding="utf-8") == (reference / name).read_text(encoding="utf-8"), name


@pytest.mark.slow
def test_two_threads_train_the_directions_at_once_to_the_same_links(corpus, finished, tmp_path):
    out = tmp_path / "two"
    assert main(["align-corpus", str(corpus[0]), "--out", str(out), "--threads", "2", *OPTIONS, *TINY]) == 0
    for name in ("links.align", "forward.align", "reverse.align"):
        assert (out / name).read_text(encoding="utf-8") == (finished[0] / name).read_text(encoding="utf-8"), name


def test_files_of_different_lengths_exit_2_naming_the_file_and_line(tmp_path, capsys):
    src, tgt = tmp_path / "c.en", tmp_path / "c.fr"
    src.write_text("a b\nc d\ne f\n", encoding="utf-8")
    tgt.write_text("x y\nz w\n", encoding="utf-8")
    assert main(["align-corpus", "--src", str(src), "--tgt", str(tgt), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{src}:3: has no partner line" in err and f"{tgt} ends at line 2" in err and "fix or realign" in err
    assert not (tmp_path / "out").exists()


def test_a_bad_pairs_line_exits_2_naming_the_file_and_line(tmp_path, capsys):
    pairs = tmp_path / "c.en-fr"
    pairs.write_text("a b ||| x y\nc d x z\n", encoding="utf-8")
    assert main(["align-corpus", str(pairs), "--out", str(tmp_path / "out"), "train.max_steps=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{pairs}:2: no ' ||| '" in err
