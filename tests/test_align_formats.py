"""`varattn align` as a word aligner (issue 13): the `source ||| target` format raw and pre-tokenised (links
index the input's own words, `'s` and `&` included), Moses escaping, one prepared folder read both ways
(data.reverse), both directions + symmetrisation end to end, and every bad input as one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from varattn.analysis import aer
from varattn.analysis import symmetrize as sym
from varattn.data.text.pairs import read_pairs
from varattn.data.text.tokenize import Pipeline, moses_tokenize
from varattn.errors import UserError

from conftest import tiny_config

# ----------------------------------------------------------------------------- the pairs format


def test_read_pairs_and_its_errors(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("das  haus ||| the house\nja |||   yes  \n", encoding="utf-8")
    assert read_pairs(path) == (["das haus", "ja"], ["the house", "yes"])
    for text, line, message in (("a ||| b\nno separator here\n", 2, "no ' \\|\\|\\| ' between source and target"),
                                ("a |||  \n", 1, "the target side is empty"),
                                (" ||| b\n", 1, "the source side is empty"),
                                ("a|||b\n", 1, "'\\|\\|\\|' needs a space on each side"),
                                ("a ||| b\n\nc ||| d\n", 2, "empty line"),
                                ("a ||| b ||| c\n", 1, "more than one")):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match=rf"pairs\.txt:{line}: {message}") as error:
            read_pairs(path)
        assert "\n" not in str(error.value)


# ----------------------------------------------------------------------------- escaping


def test_moses_escaping_is_off_by_default_and_never_doubled():
    assert moses_tokenize("John's car & me", "en") == "John 's car & me"
    assert moses_tokenize("John's car & me", "en", escape=True) == "John &apos;s car &amp; me"
    # already escaped input is recognised: neither escaped again nor split into "& apos ;"
    assert moses_tokenize("John&apos;s car &amp; me", "en", escape=True) == "John &apos;s car &amp; me"
    assert moses_tokenize("John&apos;s car &amp; me", "en") == "John 's car & me"
    plain, escaped = Pipeline(lowercase=True), Pipeline(lowercase=True, escape=True)
    words = ["John", "'s", "&", "&apos;s", "&amp;"]
    assert plain.encode_words(words) == [["john"], ["'s"], ["&"], ["'s"], ["&"]]
    assert escaped.encode_words(words) == [["john"], ["&apos;s"], ["&amp;"], ["&apos;s"], ["&amp;"]]


def test_old_prepared_folders_without_the_escape_key_still_load(synthetic_data, tmp_path):
    import shutil

    from varattn.data.text.prepared import load_prepared

    old = tmp_path / "old"
    shutil.copytree(synthetic_data, old)
    meta = json.loads((old / "meta.json").read_text(encoding="utf-8"))
    del meta["pipeline"]["escape"]
    (old / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    data = load_prepared(old)
    assert data.pipeline.escape is False and len(data.split("test")) == len(load_prepared(synthetic_data).split("test"))


# ----------------------------------------------------------------------------- one folder, both directions


def test_a_prepared_folder_read_in_reverse(synthetic_data, tmp_path):
    from varattn.data.text.prepared import load_prepared

    forward, backward = load_prepared(synthetic_data), load_prepared(synthetic_data, reverse=True)
    assert backward.src_vocab == forward.tgt_vocab and backward.tgt_vocab == forward.src_vocab
    assert (backward.pipeline.src_lang, backward.pipeline.tgt_lang) == (forward.pipeline.tgt_lang,
                                                                        forward.pipeline.src_lang)
    f, b = forward.split("test"), backward.split("test")
    for i in (0, 5, len(f) - 1):
        np.testing.assert_array_equal(b.src(i), f.tgt(i))
        np.testing.assert_array_equal(b.tgt(i), f.src(i))
    np.testing.assert_array_equal(b.src_lengths, f.tgt_lengths)
    assert b.source_lines() == f.target_lines() and b.target_lines() == f.source_lines()
    assert b.references() == f.source_lines()  # no BPE in the synthetic corpus
    assert b.gold_alignments() == [{(j, i) for i, j in links} for links in f.gold_alignments()]
    # the copy a reversed run keeps is a forward folder of the reversed direction
    backward.copy_essentials(tmp_path / "copy")
    copy = load_prepared(tmp_path / "copy")
    assert copy.src_vocab == backward.src_vocab and copy.tgt_vocab == backward.tgt_vocab
    assert copy.pipeline.src_lang == backward.pipeline.src_lang


# ----------------------------------------------------------------------------- trained runs

EXTRA = [("la casa's & bu .", "ze haus's & ky ."), ("bu & la casa .", "ky & ze haus .")]


@pytest.fixture(scope="module")
def word_runs(synthetic_data, tmp_path_factory, one_thread):
    """Runs both ways on a corpus prepared with Moses tokenisation (escaping off), and one of a different
    vocabulary (trained on the synthetic folder itself)."""
    from varattn.data.corpora.recipes import prepare
    from varattn.data.text.prepared import load_prepared
    from varattn.training.trainer import train

    root = tmp_path_factory.mktemp("word-runs")
    data = load_prepared(synthetic_data)
    files = {}
    for split in ("train", "valid", "test"):
        src, tgt = data.split(split).source_lines(), data.split(split).target_lines()
        if split == "train":
            src, tgt = src + [s for s, _ in EXTRA] * 10, tgt + [t for _, t in EXTRA] * 10
        for side, lines in (("src", src), ("tgt", tgt)):
            files[f"{split}_{side}"] = str(root / f"{split}.{side}")
            (root / f"{split}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepared = root / "prepared"
    prepare("files", str(prepared), src_lang="de", tgt_lang="en", tokenize=True, lowercase=False, **files)
    for name, folder, reverse in (("fw", prepared, False), ("rv", prepared, True), ("other", synthetic_data, False)):
        config = tiny_config(folder, "vae-enum", max_steps=3)
        config.data.reverse = reverse
        train(config, root / name)
    return root


def _align(args, capsys) -> tuple[int, str]:
    from varattn.cli.main import main

    code = main(["align", *[str(a) for a in args], "--pictures", "0", "--grid", "0"])
    return code, capsys.readouterr().err


def _lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_raw_pairs_are_tokenised_and_links_index_the_tokens(word_runs, tmp_path, capsys):
    pairs = tmp_path / "raw.txt"
    pairs.write_text("".join(f"{s.replace(' .', '.')} ||| {t}\n" for s, t in EXTRA), encoding="utf-8")
    gold = tmp_path / "gold.align"
    gold.write_text("1-1 6-6\n1-1\n", encoding="utf-8")  # the last words: 6 Moses tokens each (1-based)
    code, err = _align([word_runs / "fw", "--pairs", pairs, "--gold", gold, "--one-based", "--out", tmp_path / "o"],
                       capsys)
    assert code == 0, err
    tokens = _lines(tmp_path / "o" / "tokens.txt")
    # the acceptance command on the same raw file: both ways, symmetrised, with probabilities
    code, err = _align([word_runs / "fw", "--pairs", pairs, "--reverse-run", word_runs / "rv", "--symmetrize",
                        "grow-diag-final-and", "--output-probs", tmp_path / "probs.txt", "--out", tmp_path / "b"],
                       capsys)
    assert code == 0, err
    assert _lines(tmp_path / "b" / "tokens.txt") == tokens
    reverse = json.loads((tmp_path / "b" / "reverse" / "alignments.json").read_text(encoding="utf-8"))["pairs"]
    assert [" ".join(r["tgt_words"]) + " ||| " + " ".join(r["src_words"]) for r in reverse] == tokens
    for line, probs in zip(_lines(tmp_path / "b" / "links.align"), _lines(tmp_path / "probs.txt")):
        assert len(line.split()) == len(probs.split()) > 0
    # German rules split "casa's" as "casa ' s", English ones "haus's" as "haus 's"; nothing is escaped
    assert tokens[0] == "la casa ' s & bu . ||| ze haus 's & ky ."
    source, target = EXTRA[0]
    assert tokens[0] == moses_tokenize(source.replace(" .", "."), "de") + " ||| " + moses_tokenize(target, "en")
    for line, links in zip(tokens, _lines(tmp_path / "o" / "links.align")):
        src, tgt = (side.split() for side in line.split(" ||| "))
        assert all(i < len(src) and j < len(tgt) for i, j in aer.parse_gold(links).sure)
        assert len(aer.parse_gold(links).sure) == len(tgt)  # argmax, no threshold: one link per target word


def test_pretokenized_pairs_keep_every_word(word_runs, tmp_path, capsys):
    lines = ["la casa 's & bu . ||| ze haus 's & ky .", "la casa &apos;s &amp; bu . ||| ze haus &apos;s &amp; ky ."]
    pairs = tmp_path / "tok.txt"
    pairs.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "o"
    code, err = _align([word_runs / "fw", "--pairs", pairs, "--pretokenized", "--out", out, "--links", "threshold",
                        "--threshold", "0.05", "--output-words", tmp_path / "words.txt"], capsys)
    assert code == 0, err
    assert _lines(out / "tokens.txt") == lines  # nothing re-tokenised, nothing escaped
    document = json.loads((out / "alignments.json").read_text(encoding="utf-8"))
    for line, record in zip(lines, document["pairs"]):
        src, tgt = (side.split() for side in line.split(" ||| "))
        assert record["src_words"] == src and record["tgt_words"] == tgt
        assert len(set(aer.word_index(record["src"]))) == len(src)  # pieces map back onto exactly these words
    # the second line is the first, escaped: its own words are kept, the model (not escaping) sees the same pieces
    assert document["pairs"][0]["src"] == document["pairs"][1]["src"] == ["la", "casa", "'s", "&", "bu", "."]
    assert document["pairs"][0]["tgt"] == document["pairs"][1]["tgt"]
    for line, links, words in zip(lines, _lines(out / "links.align"), _lines(tmp_path / "words.txt")):
        src, tgt = (side.split() for side in line.split(" ||| "))
        expected = [f"{src[i]}<sep>{tgt[j]}" for i, j in sorted(aer.parse_gold(links).sure)]
        assert words.split() == expected


def _word_matrix(record: dict, name: str) -> np.ndarray:
    """[S_words, T_words] from a JSON record, computed here with loops (a second path to the library's)."""
    def owner(pieces):
        out, word = [], 0
        for piece in pieces:
            out.append(word)
            word += not piece.endswith("@@")
        return out

    src, tgt = owner(record["src"]), owner(record["tgt"][:-1])
    matrix = np.array(record[name])
    W = np.zeros((max(src) + 1, max(tgt) + 1))
    counts = np.bincount(tgt)
    for t, j in enumerate(tgt):
        for s, i in enumerate(src):
            W[i, j] += matrix[t, s] / counts[j]
    return W


def test_both_directions_symmetrised_end_to_end(word_runs, tmp_path, capsys):
    from varattn.data.text.prepared import load_prepared

    from varattn.data.text.tokenize import remove_bpe

    test = load_prepared(word_runs / "prepared").split("test")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{remove_bpe(s)} ||| {t}\n" for s, t in zip(test.source_lines()[:8],
                                                                           test.references()[:8])), encoding="utf-8")
    out = tmp_path / "o"
    code, err = _align([word_runs / "fw", "--pairs", pairs, "--pretokenized", "--reverse-run", word_runs / "rv",
                        "--symmetrize", "grow-diag-final-and", "--output-probs", tmp_path / "probs.txt",
                        "--out", out], capsys)
    assert code == 0, err
    forward = json.loads((out / "alignments.json").read_text(encoding="utf-8"))["pairs"]
    reverse = json.loads((out / "reverse" / "alignments.json").read_text(encoding="utf-8"))["pairs"]
    links, probs = _lines(out / "links.align"), _lines(tmp_path / "probs.txt")
    assert len(links) == len(probs) == len(forward) == len(reverse) == 8
    for f, r, line, prob_line in zip(forward, reverse, links, probs):
        assert r["src_words"] == f["tgt_words"] and r["tgt_words"] == f["src_words"]
        W, R = _word_matrix(f, "posterior"), _word_matrix(r, "posterior").T  # both [S, T]
        S, T = W.shape
        fw_links = {(int(W[:, j].argmax()), j) for j in range(T)}
        rv_links = {(i, int(R[i].argmax())) for i in range(S)}
        expected = sorted(sym.symmetrize(fw_links, rv_links, "grow-diag-final-and", S, T))
        assert sorted(aer.parse_gold(line).sure) == expected
        assert [float(p) for p in prob_line.split()] == pytest.approx([(W[i, j] + R[i, j]) / 2 for i, j in expected],
                                                                      abs=2e-4)
    scores = _lines(out / "scores.tsv")
    assert scores[0].split("\t") == ["pair", "links", "mean_log_prob", "prior_entropy_forward",
                                     "prior_entropy_reverse"] and len(scores) == 9
    # the same through a prepared folder: the reverse run reads it reversed
    code, err = _align([word_runs / "fw", "--data", word_runs / "prepared", "--limit", "8", "--reverse-run",
                        word_runs / "rv", "--symmetrize", "grow-diag-final-and", "--out", tmp_path / "d"], capsys)
    assert code == 0, err
    assert _lines(tmp_path / "d" / "links.align") == links


def test_reversed_run_evaluates_on_the_forward_folder(word_runs):
    from varattn.analysis.evaluation import evaluate_run
    from varattn.data.text.prepared import load_prepared
    from varattn.training.runs import load_run

    run = load_run(word_runs / "rv", torch.device("cpu"))
    assert run.config.data.reverse and run.data.pipeline.src_lang == "en"
    results = evaluate_run(run, load_prepared(word_runs / "prepared", reverse=True), "test", bleu=False)
    assert results["ppl"] > 1.0


def test_every_bad_input_is_one_line_and_exit_2(word_runs, tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text("la casa . ||| ze haus .\n", encoding="utf-8")
    cases = [("no-separator.txt", "la casa .\n", [], r"no-separator\.txt:1: no ' \|\|\| '"),
             ("empty-side.txt", "la casa . ||| \n", [], r"empty-side\.txt:1: the target side is empty"),
             ("good.txt", None, ["--gold", "gold.align"], r"gold\.align:1: gold link 3-0 \(0-based\) is outside"),
             ("good.txt", None, ["--reverse-run", word_runs / "fw"], "same direction"),
             ("good.txt", None, ["--reverse-run", word_runs / "other"], "vocabularies are not those|translates"),
             ("good.txt", None, ["--symmetrize", "union"], "--reverse-run")]
    (tmp_path / "gold.align").write_text("0-0 3-0\n", encoding="utf-8")
    for name, text, extra, message in cases:
        if text is not None:
            (tmp_path / name).write_text(text, encoding="utf-8")
        extra = [str(tmp_path / e) if e == "gold.align" else e for e in extra]
        code, err = _align([word_runs / "fw", "--pairs", tmp_path / name, "--out", tmp_path / "o", *extra], capsys)
        assert code == 2, (name, extra, err)
        error_lines = [line for line in err.split("\n") if "error" in line]
        assert len(error_lines) == 1 and error_lines[0].startswith("varattn align: error:"), err
        assert __import__("re").search(message, error_lines[0]), error_lines[0]
