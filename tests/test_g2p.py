"""Grapheme-to-phoneme transduction (issue 23): recipes, their one-line errors, WER/PER against an
independent computation, and train / evaluate / translate / align end to end through the command line."""

from __future__ import annotations

import json
import shutil
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, TINY_MODEL
from varattn.cli.main import main
from varattn.tasks.transduction import metrics

G2P = SHARED / "data" / "sigmorphon2021-g2p" / "medium"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "g2p"

# a tiny made-up lexicon: letters read one to one except "ch" -> ʃ, "ou" -> u, final "e" silent
LETTERS = {"a": "a", "b": "b", "d": "d", "i": "i", "l": "l", "m": "m", "n": "n", "o": "o", "p": "p", "r": "ʁ",
           "s": "s", "t": "t", "u": "y"}


def pronounce(word: str) -> str:
    out, i = [], 0
    while i < len(word):
        if word.startswith("ch", i):
            out.append("ʃ"); i += 2
        elif word.startswith("ou", i):
            out.append("u"); i += 2
        elif word[i] == "e" and i == len(word) - 1:
            i += 1
        elif word[i] == "e":
            out.append("ə"); i += 1
        else:
            out.append(LETTERS[word[i]]); i += 1
    return " ".join(out)


def lexicon(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    pieces = ["ch", "ou", "a", "b", "d", "i", "l", "m", "n", "o", "p", "r", "s", "t", "u", "e"]
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(pieces, size=int(rng.integers(2, 5)))))
    return [f"{w}\t{pronounce(w)}" for w in sorted(words)]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --- recipes ------------------------------------------------------------------------------------


def test_lexicon_recipe_tokens(tmp_path, capsys):
    nfd = unicodedata.normalize("NFD", "café")  # e + combining acute: one character after NFC
    train = write(tmp_path / "train.tsv", ["chat\tʃ a", f"{nfd}\tk a f e", "la vie\tl a v i", "b\tb"])
    valid = write(tmp_path / "valid.tsv", ["chou\tʃ u"])
    status, _, err = run_cli(capsys, "prepare", "lexicon", "--train", train, "--valid", valid,
                             "--out", tmp_path / "data")
    assert status == 0, err
    src = (tmp_path / "data" / "train.src.txt").read_text(encoding="utf-8").splitlines()
    tgt = (tmp_path / "data" / "train.tgt.txt").read_text(encoding="utf-8").splitlines()
    assert src == ["c h a t", "c a f é", "l a ▁ v i e", "b"]
    assert src[1].split()[-1] == "\u00e9"
    assert tgt == ["ʃ a", "k a f e", "l a v i", "b"]
    meta = json.loads((tmp_path / "data" / "meta.json").read_text(encoding="utf-8"))
    assert meta["task"] == "transduction" and meta["transduction"]["normalization"] == "nfc"
    assert set(meta["splits"]) == {"train", "valid"}
    # none keeps the decomposed form: two characters
    status, _, _ = run_cli(capsys, "prepare", "lexicon", "--train", train, "--valid", valid, "--normalization",
                           "none", "--out", tmp_path / "raw")
    assert status == 0
    assert (tmp_path / "raw" / "train.src.txt").read_text(encoding="utf-8").splitlines()[1] == "c a f e \u0301"


@pytest.mark.parametrize("line, problem", [
    ("chat ʃ a", "no tab"),
    ("\tʃ a", "empty word"),
    ("chat\t", "empty pronunciation"),
    ("chat\t  ", "empty pronunciation"),
    ("chat\tʃ a\textra", "more than one tab"),
])
def test_bad_lines_are_one_line_errors(tmp_path, capsys, line, problem):
    train = write(tmp_path / "train.tsv", ["la\tl a", "chou\tʃ u", line, "bas\tb a"])
    valid = write(tmp_path / "valid.tsv", ["la\tl a"])
    status, _, err = run_cli(capsys, "prepare", "lexicon", "--train", train, "--valid", valid, "--out",
                             tmp_path / "data")
    assert status == 2
    assert err.count("\n") == 1 and f"{train}:3: {problem}" in err and "—" in err
    assert not (tmp_path / "data").exists()


def test_unknown_normalisation_and_missing_files(tmp_path, capsys):
    train = write(tmp_path / "train.tsv", ["la\tl a"])
    status, _, err = run_cli(capsys, "prepare", "lexicon", "--train", train, "--valid", train,
                             "--normalization", "nfx", "--out", tmp_path / "d")
    assert status == 2 and err.count("\n") == 1 and "--normalization 'nfx'" in err and "nfc" in err
    status, _, err = run_cli(capsys, "prepare", "lexicon", "--train", train, "--out", tmp_path / "d")
    assert status == 2 and err.count("\n") == 1 and "--valid is missing" in err
    status, _, err = run_cli(capsys, "prepare", "lexicon", "--train", tmp_path / "nope.tsv", "--valid", train,
                             "--out", tmp_path / "d")
    assert status == 2 and err.count("\n") == 1 and "nope.tsv" in err


@pytest.mark.skipif(not G2P.is_dir(), reason="needs ../shared/data/sigmorphon2021-g2p")
def test_sigmorphon_recipe_reads_the_shared_files(tmp_path, capsys):
    folder = tmp_path / "task1" / "medium"
    folder.mkdir(parents=True)
    for split, count in (("train", 40), ("dev", 10), ("test", 10)):
        lines = (G2P / f"vie_hanoi_{split}.tsv").read_text(encoding="utf-8").splitlines()[:count]
        write(folder / f"vie_hanoi_{split}.tsv", lines)
    status, _, err = run_cli(capsys, "prepare", "sigmorphon-g2p", "--from", tmp_path / "task1", "--lang", "vie_hanoi",
                             "--out", tmp_path / "data")
    assert status == 0, err
    first = (folder / "vie_hanoi_train.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    src = (tmp_path / "data" / "train.src.txt").read_text(encoding="utf-8").splitlines()[0].split()
    assert src == [("▁" if c == " " else c) for c in unicodedata.normalize("NFC", first[0])]
    assert (tmp_path / "data" / "train.tgt.txt").read_text(encoding="utf-8").splitlines()[0] == first[1]
    meta = json.loads((tmp_path / "data" / "meta.json").read_text(encoding="utf-8"))
    assert {k: v["pairs"] for k, v in meta["splits"].items()} == {"train": 40, "valid": 10, "test": 10}
    status, _, err = run_cli(capsys, "prepare", "sigmorphon-g2p", "--from", tmp_path / "task1", "--lang", "xyz",
                             "--out", tmp_path / "other")
    assert status == 2 and err.count("\n") == 1 and "xyz_train.tsv" in err and "vie_hanoi" in err


# --- metrics ------------------------------------------------------------------------------------


def levenshtein(a: tuple, b: tuple) -> int:
    """Edit distance by its recursive definition (memoised), independent of the library's table."""
    @lru_cache(maxsize=None)
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_metrics_against_an_independent_computation():
    rng = np.random.default_rng(0)
    symbols = ["a", "b", "ʃ", "ɑ̃", "t͡ɕ"]
    refs = [list(rng.choice(symbols, size=int(rng.integers(1, 7)))) for _ in range(60)]
    hyps = []
    for ref in refs:
        hyp = list(ref)
        for _ in range(int(rng.integers(0, 3))):
            if hyp and rng.random() < 0.5:
                del hyp[int(rng.integers(len(hyp)))]
            else:
                hyp.insert(int(rng.integers(len(hyp) + 1)), str(rng.choice(symbols)))
        hyps.append(hyp)
    wrong = sum(1 for h, r in zip(hyps, refs) if " ".join(h) != " ".join(r))
    assert metrics.wer(hyps, refs) == pytest.approx(100 * wrong / 60)
    distance = sum(levenshtein(tuple(h), tuple(r)) for h, r in zip(hyps, refs))
    assert metrics.per(hyps, refs) == pytest.approx(100 * distance / sum(map(len, refs)))
    # by hand: one substitution in 3 symbols, one deletion and one insertion in 2
    assert metrics.per([["a", "b", "c"], ["x", "y"]], [["a", "d", "c"], ["y", "z"]]) == pytest.approx(100 * 3 / 5)
    assert metrics.wer([["a"], ["b"]], [["a"], ["c"]]) == 50.0
    assert metrics.macro({"fre": 8.0, "kor": 16.0, "geo": 0.0}) == pytest.approx(8.0)
    with pytest.raises(ValueError):
        metrics.wer([["a"]], [])


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lexicon(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lexicon")
    lines = lexicon(260, seed=4)
    write(root / "train.tsv", lines[:200])
    write(root / "valid.tsv", lines[200:230])
    write(root / "test.tsv", lines[230:])
    assert main(["prepare", "lexicon", "--train", str(root / "train.tsv"), "--valid", str(root / "valid.tsv"),
                 "--test", str(root / "test.tsv"), "--out", str(root / "data")]) == 0
    return root


def train_tiny(root: Path, mode: str, *extra: str) -> Path:
    out = root / f"run-{mode}-{len(extra)}"
    if (out / "checkpoint_best.json").is_file():  # trained by an earlier test of this module
        return out
    model = [f"model.{k}={v}" for k, v in TINY_MODEL.items()]
    status = main(["train", str(CONFIGS / "rnn.yaml"), "model.mode=soft", "--out", str(out), f"data.dir={root / 'data'}",
                   f"model.mode={mode}", *model, "train.epochs=3", "train.lr=0.01", "train.device=cpu",
                   "train.max_seconds=0", "data.max_tokens=300", *extra])
    assert status == 0
    return out


@pytest.mark.parametrize("mode", ["soft", "marginal"])
def test_train_evaluate_translate_align(tiny_lexicon, tmp_path, capsys, one_thread, mode):
    root = tiny_lexicon
    run = train_tiny(root, mode)
    history = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(history) == 3 and all(0 <= h["wer"] <= 100 and h["per"] >= 0 for h in history)
    assert history[-1]["ppl"] < history[0]["ppl"]

    status, _, err = run_cli(capsys, "evaluate", run, "--data", root / "data", "--split", "test", "--beam", "3",
                             "--json", tmp_path / "scores.json")
    assert status == 0, err
    scores = json.loads((tmp_path / "scores.json").read_text(encoding="utf-8"))
    assert scores["words"] == 30 and scores["ppl"] > 1 and scores["entropy"] >= 0
    # the same beam through `varattn translate` on the raw words, scored here
    words = [line.split("\t") for line in (root / "test.tsv").read_text(encoding="utf-8").splitlines()]
    write(tmp_path / "words.txt", [w for w, _ in words])
    status, _, err = run_cli(capsys, "translate", run, "--input", tmp_path / "words.txt", "--output",
                             tmp_path / "out.txt", "--beam", "3")
    assert status == 0, err
    hyps = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    refs = [p for _, p in words]
    assert scores["wer"] == pytest.approx(100 * sum(h != r for h, r in zip(hyps, refs)) / len(refs))
    edits = sum(levenshtein(tuple(h.split()), tuple(r.split())) for h, r in zip(hyps, refs))
    assert scores["per"] == pytest.approx(100 * edits / sum(len(r.split()) for r in refs))

    status, _, err = run_cli(capsys, "align", run, "--data", root / "data", "--split", "test", "--out",
                             tmp_path / "align", "--pictures", "1", "--grid", "0", "--formats", "png")
    assert status == 0, err
    name = "attention" if mode == "soft" else "prior"
    links = (tmp_path / "align" / f"{name}.align").read_text(encoding="utf-8").splitlines()
    assert len(links) == 30
    for line, (word, phones) in zip(links, words):
        pairs = [tuple(map(int, link.split("-"))) for link in line.split()]
        assert sorted(j for _, j in pairs) == list(range(len(phones.split())))  # one letter per phone
        assert all(0 <= i < len(word) for i, _ in pairs)
    # raw words and pronunciations, a pair a line: the links index the letters, a space inside a word is one
    write(tmp_path / "pairs.txt", ["chat ||| ʃ a", "la bas ||| l a b a"])
    status, _, err = run_cli(capsys, "align", run, "--pairs", tmp_path / "pairs.txt", "--out", tmp_path / "raw",
                             "--pictures", "0", "--grid", "0")
    assert status == 0, err
    document = json.loads((tmp_path / "raw" / "alignments.json").read_text(encoding="utf-8"))
    assert [p["src"] for p in document["pairs"]] == [list("chat"), ["l", "a", "▁", "b", "a", "s"]]
    assert [p["tgt"] for p in document["pairs"]] == [["ʃ", "a", "</s>"], ["l", "a", "b", "a", "</s>"]]


def test_api_and_exact_posterior(tiny_lexicon, one_thread):
    import varattn
    from varattn.tasks.transduction.align import exact_posteriors, monotonicity
    from varattn.training.runs import load_run

    run_dir = train_tiny(tiny_lexicon, "marginal")
    model = varattn.load(run_dir, device="cpu")
    pair = model.align("chaton", "ʃ a t o n")
    assert pair.source_tokens == list("chaton") and pair.target_tokens == ["ʃ", "a", "t", "o", "n", "</s>"]
    assert pair.matrices["prior"].shape == (6, 6)
    best = model.translate("chaton", beam=2)
    assert best.source_tokens == list("chaton") and best.text == " ".join(best.tokens)

    run = load_run(run_dir, __import__("torch").device("cpu"))
    src = [run.data.src_vocab.encode(list("chaton")), run.data.src_vocab.encode(list("bas"))]
    tgt = [run.data.tgt_vocab.encode("ʃ a t o n".split()), run.data.tgt_vocab.encode("b a".split())]
    posteriors = exact_posteriors(run, src, tgt)
    assert posteriors[0].shape == (6, 6) and posteriors[1].shape == (3, 3)
    for matrix in posteriors:
        assert np.allclose(matrix.sum(-1), 1.0, atol=1e-5) and (matrix >= 0).all()
    # Bayes by hand from the prior and p(y_t | z_t = s) computed one source position at a time
    import torch
    from varattn.data.text.batching import IdPairs, collate
    from varattn.latent import masked_log_softmax

    batch = collate(IdPairs(src[:1], tgt[:1]), np.array([0]))
    with torch.no_grad():
        fwd = run.model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        prior = masked_log_softmax(fwd.prior.float(), fwd.mask).exp()[0].double()
        S = prior.shape[-1]
        one_hot = torch.eye(S)[None, :, None, :].expand(1, S, prior.shape[0], S).permute(0, 2, 1, 3)  # [1, T, S, S]
        lik = fwd.likelihood(one_hot.to(fwd.prior.dtype)).exp()[0].double()           # p(y_t | z_t = s) [T, S]
    by_hand = (prior * lik) / (prior * lik).sum(-1, keepdim=True)
    assert np.allclose(posteriors[0], by_hand.numpy(), atol=1e-5)
    # the normaliser is the exact marginal likelihood the API scores
    assert float((prior * lik).sum(-1).log().sum()) == pytest.approx(model.score("chaton", "ʃ a t o n").log_prob,
                                                                     abs=1e-4)
    stats = monotonicity(posteriors)
    assert 0 <= stats["monotone_steps"] <= 1 and stats["words"] == 2


def test_transformer_trains_on_a_lexicon(tiny_lexicon, one_thread):
    run = train_tiny(tiny_lexicon, "hard-enum", "model.arch=transformer", "transformer.encoder_layers=1",
                     "transformer.decoder_layers=1", "transformer.width=32", "transformer.heads=2",
                     "transformer.ffn=64", "transformer.inf_layers=1", "train.epochs=1")
    history = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert history and "wer" in history[-1] and np.isfinite(history[-1]["ppl"])


def test_evaluate_and_translate_with_an_ensemble(tiny_lexicon, tmp_path, capsys, one_thread):
    """`--ensemble`: the WER `evaluate` reports is the WER of what `translate --ensemble` writes, scored
    here; runs whose vocabularies differ are refused in one line."""
    root = tiny_lexicon
    soft, marginal = train_tiny(root, "soft"), train_tiny(root, "marginal")
    status, _, err = run_cli(capsys, "evaluate", soft, "--ensemble", marginal, "--data", root / "data", "--split",
                             "test", "--beam", "3", "--json", tmp_path / "scores.json")
    assert status == 0, err
    scores = json.loads((tmp_path / "scores.json").read_text(encoding="utf-8"))
    assert scores["ensemble"] == [str(soft), str(marginal)] and scores["mode"] == "soft"
    words = [line.split("\t") for line in (root / "test.tsv").read_text(encoding="utf-8").splitlines()]
    write(tmp_path / "words.txt", [w for w, _ in words])
    status, _, err = run_cli(capsys, "translate", soft, "--ensemble", marginal, "--input", tmp_path / "words.txt",
                             "--output", tmp_path / "out.txt", "--beam", "3")
    assert status == 0, err
    hyps = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    refs = [p for _, p in words]
    assert scores["wer"] == pytest.approx(100 * sum(h != r for h, r in zip(hyps, refs)) / len(refs))

    stranger = tmp_path / "stranger"
    shutil.copytree(marginal, stranger)
    vocab_file = stranger / "data" / "vocab.tgt.json"
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    vocab["tokens"][-1], vocab["tokens"][-2] = vocab["tokens"][-2], vocab["tokens"][-1]
    vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
    status, _, err = run_cli(capsys, "translate", soft, "--ensemble", stranger, "--input", tmp_path / "words.txt")
    assert status == 2 and f"{stranger}: its vocabularies differ" in err and len(err.strip().splitlines()) == 1


def test_api_translates_with_an_ensemble_as_the_search_does(tiny_lexicon, one_thread):
    """`Model.translate(..., ensemble=[...])` gives what beam search over the two models' Ensemble gives."""
    import torch

    import varattn
    from varattn.data.vocab import PAD
    from varattn.decoding.ensemble import Ensemble
    from varattn.decoding.search import beam_search

    soft = varattn.load(train_tiny(tiny_lexicon, "soft"), device="cpu")
    marginal = varattn.load(train_tiny(tiny_lexicon, "marginal"), device="cpu")
    words = ["chaton", "bas", "mouli"]
    found = soft.translate(words, beam=3, ensemble=[marginal])
    run = soft._run
    src = [run.data.src_vocab.encode(list(w)) for w in words]
    batch = torch.full((len(src), max(map(len, src))), PAD, dtype=torch.long)
    for row, ids in enumerate(src):
        batch[row, : len(ids)] = torch.tensor(ids)
    direct = beam_search(Ensemble([soft._run.model, marginal._run.model]), batch, torch.tensor(list(map(len, src))),
                         beam=3, alpha=run.config.decode.alpha, eos_norm=run.config.decode.eos_norm,
                         max_len_a=run.config.decode.max_len_a, max_len_b=run.config.decode.max_len_b)
    for translation, (best, *_) in zip(found, direct):
        assert translation.tokens == run.data.tgt_vocab.decode(best.tokens)
        assert translation.log_prob == pytest.approx(best.log_prob, rel=1e-6)
        assert translation.links == [(i, j) for j, i in enumerate(best.alignment)]
    from varattn.errors import UserError

    with pytest.raises(UserError, match="ensemble\\[0\\]"):
        soft.translate(words, ensemble=["not a model"])
