"""Split marks (``--split-marks``, issue 23): trailing tone, length and nasality marks of phone symbols as tokens
of their own. By hand and on every shared lexicon, joining undoes splitting; a symbol of marks alone is a
one-line error; scores compare the joined symbols (the id grouping equals the text join, and evaluate's
WER/PER equal those of translate's joined output, computed here)."""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest

from conftest import SHARED
from test_g2p import CONFIGS, levenshtein, run_cli, write
from conftest import TINY_MODEL
from varattn.cli.main import main
from varattn.data.marks import join_marks, mark_token, split_marks
from varattn.tasks.transduction.decoding import symbols

G2P = SHARED / "data" / "sigmorphon2021-g2p"
CARON, CIRCUMFLEX, TILDE, LONG = "\u030c", "\u0302", "\u0303", "\u02d0"


def test_split_and_join_by_hand():
    assert split_marks(["ǎː", "t͡s", "ɔ̃", "r̂ː", "b"]) == ["a", CARON, LONG, "t͡s", "ɔ", TILDE, "r", CIRCUMFLEX, LONG, "b"]
    assert join_marks(["a", CARON, LONG, "t͡s", "ɔ", TILDE]) == ["ǎː", "t͡s", "ɔ̃"]
    assert join_marks([LONG, "a", LONG]) == [LONG, "aː"]  # a mark at the start stands alone
    assert join_marks(["a" + CARON]) == ["ǎ"]  # recomposed
    assert [mark_token(t) for t in ("ː", CARON, "a", "aː", "t͡s")] == [True, True, False, False, False]


@pytest.mark.skipif(not G2P.is_dir(), reason="needs ../shared/data/sigmorphon2021-g2p")
def test_join_undoes_split_on_every_shared_lexicon():
    lines = 0
    for path in sorted(G2P.glob("*/*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            given = line.split("\t")[1].split()
            assert join_marks(split_marks(given)) == [unicodedata.normalize("NFC", s) for s in given], (path, line)
            lines += 1
    assert lines > 100_000


def test_a_symbol_of_marks_alone_is_a_one_line_error(tmp_path, capsys):
    train = write(tmp_path / "train.tsv", ["aba\ta b a", "abba\ta b ː a"])
    valid = write(tmp_path / "valid.tsv", ["ab\ta b"])
    status, _, err = run_cli(capsys, "prepare", "lexicon", "--train", train, "--valid", valid, "--split-marks",
                             "--out", tmp_path / "data")
    assert status == 2 and f"{train}:2:" in err and "U+02D0" in err and "--split-marks" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "data").exists()
    status, _, err = run_cli(capsys, "prepare", "lexicon", "--train", train, "--valid", valid, "--out", tmp_path / "d2")
    assert status == 0, err  # whole symbols: a lone mark is a symbol like any other


def test_grouping_ids_equals_joining_their_text():
    rng = np.random.default_rng(3)
    vocabulary = ["a", "o", "r", "t͡s", CARON, CIRCUMFLEX, LONG]
    marks = frozenset(i for i, t in enumerate(vocabulary) if mark_token(t))
    for _ in range(300):
        ids = [int(i) for i in rng.integers(0, len(vocabulary), size=int(rng.integers(0, 9)))]
        grouped = ["".join(vocabulary[i] for i in group) for group in symbols(ids, marks)]
        assert [unicodedata.normalize("NFC", g) for g in grouped] == join_marks([vocabulary[i] for i in ids])


# a made-up tonal lexicon: a vowel before "h" is long, "q" after a vowel gives it a rising tone
def pronounce(word: str) -> str:
    out = []
    for letter in word:
        if letter == "h" and out and out[-1][0] in "aeiou":
            out[-1] += LONG
        elif letter == "q" and out and out[-1][0] in "aeiou":
            out[-1] = unicodedata.normalize("NFC", out[-1][0] + CARON + out[-1][1:])
        elif letter not in "hq":
            out.append(letter)
    return " ".join(out) or "a"


def test_train_evaluate_translate_with_split_marks(tmp_path, capsys, one_thread):
    rng = np.random.default_rng(5)
    words = sorted({"".join(rng.choice(list("abdtaeiouhq"), size=int(rng.integers(2, 6)))) for _ in range(400)})
    words = [w for w in words if w[0] not in "hq"][:230]
    lines = [f"{w}\t{pronounce(w)}" for w in words]
    assert any(LONG in line for line in lines) and any("ǎ" in line or "ǒ" in line for line in lines)
    write(tmp_path / "train.tsv", lines[:180])
    write(tmp_path / "valid.tsv", lines[180:200])
    write(tmp_path / "test.tsv", lines[200:])
    data = tmp_path / "data"
    status, _, err = run_cli(capsys, "prepare", "lexicon", "--train", tmp_path / "train.tsv", "--valid",
                             tmp_path / "valid.tsv", "--test", tmp_path / "test.tsv", "--split-marks", "--out", data)
    assert status == 0, err
    meta = json.loads((data / "meta.json").read_text(encoding="utf-8"))
    assert meta["transduction"]["marks"] == "split"
    tokens = json.loads((data / "vocab.tgt.json").read_text(encoding="utf-8"))["tokens"]
    assert LONG in tokens and CARON in tokens and not any(len(t) > 1 and LONG in t for t in tokens)

    run = tmp_path / "run"
    model = [f"model.{k}={v}" for k, v in TINY_MODEL.items()]
    assert main(["train", str(CONFIGS / "rnn.yaml"), "model.mode=marginal", "--out", str(run), f"data.dir={data}",
                 *model, "train.epochs=4", "train.lr=0.01", "train.device=cpu", "data.max_tokens=300"]) == 0
    status, _, err = run_cli(capsys, "evaluate", run, "--data", data, "--split", "test", "--beam", "3",
                             "--json", tmp_path / "scores.json")
    assert status == 0, err
    scores = json.loads((tmp_path / "scores.json").read_text(encoding="utf-8"))
    test = [line.split("\t") for line in lines[200:]]
    write(tmp_path / "words.txt", [w for w, _ in test])
    status, _, err = run_cli(capsys, "translate", run, "--input", tmp_path / "words.txt", "--output",
                             tmp_path / "out.txt", "--beam", "3")
    assert status == 0, err
    hyps = [h.split() for h in (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()]
    refs = [p.split() for _, p in test]
    assert all(not mark_token(s) for h in hyps for s in h[1:])  # output marks sit on their symbols
    assert scores["wer"] == pytest.approx(100 * sum(h != r for h, r in zip(hyps, refs)) / len(refs))
    edits = sum(levenshtein(tuple(h), tuple(r)) for h, r in zip(hyps, refs))
    assert scores["per"] == pytest.approx(100 * edits / sum(map(len, refs)))
