"""`varattn evaluate` and `varattn translate`: perplexities against brute force, BLEU against sacrebleu,
every reported key, the output formats."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sacrebleu
import torch

from varattn.config import Config, DecodeConfig, ModelConfig
from varattn.data.text.tokenize import remove_bpe
from varattn.data.vocab import BOS, EOS
from varattn.tasks.translation_scores import score_split
from varattn.tasks.translation import TranslationTask
from varattn.analysis.evaluation import evaluate_run, format_table
from varattn.decoding.search import Hypothesis
from varattn.models.seq2seq import Seq2Seq
from varattn.decoding.translate import Translation, decode_ids, output_lines


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(emb_size=8, enc_hidden=6, enc_layers=1, dec_hidden=8, dec_layers=1, attn_size=8, dropout=0.0,
            init_range=0.8, inf_hidden=4, inf_layers=1)


def tiny_model(mode: str, src_vocab: int = 12, tgt_vocab: int = 10, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(ModelConfig(mode=mode, **TINY), src_vocab, tgt_vocab).double().eval()


class ListSplit:
    """A split held in lists: what score_split and collate need."""

    def __init__(self, pairs: list[tuple[list[int], list[int]]]):
        self.pairs = pairs
        self.src_lengths = np.array([len(s) for s, _ in pairs])
        self.tgt_lengths = np.array([len(t) for _, t in pairs])

    def __len__(self) -> int:
        return len(self.pairs)

    def src(self, i: int) -> np.ndarray:
        return np.array(self.pairs[i][0])

    def tgt(self, i: int) -> np.ndarray:
        return np.array(self.pairs[i][1])


def random_pairs(count: int = 7, seed: int = 2) -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(4, 12, rng.integers(1, 7)).tolist(), rng.integers(4, 10, rng.integers(0, 6)).tolist())
            for _ in range(count)]


def brute_force(model: Seq2Seq, pairs, k: int = 2) -> dict:
    """Perplexity, K-max perplexity and prior entropy with explicit loops over sentences, target tokens
    and source positions, straight from the output layer's weights (docs/design.md §3)."""
    W_h, b_h = model.output.from_hidden.weight, model.output.from_hidden.bias
    W_x = model.output.from_memory.weight
    W_g, b_g = model.output.generator.weight, model.output.generator.bias

    def p_word(h, context, y):
        return torch.softmax(W_g @ torch.tanh(W_h @ h + b_h + W_x @ context) + b_g, -1)[y]

    nll = nll_k = entropy = 0.0
    tokens = 0
    with torch.no_grad():
        for src, tgt in pairs:
            encoded = model.encode(torch.tensor([src]), torch.tensor([len(src)]))
            memory = encoded.memory[0]
            state, prev = model.decoder.start(encoded), BOS
            for y in tgt + [EOS]:
                h, scores, state = model.decoder.step(encoded, state, torch.tensor([prev]))
                prior = torch.softmax(scores[0].double(), -1)
                if model.config.mode == "soft":
                    p = p_word(h[0], sum(prior[s] * memory[s] for s in range(len(src))), y)
                    p_k = p
                else:
                    p = sum(prior[s] * p_word(h[0], memory[s], y) for s in range(len(src)))
                    top = sorted(range(len(src)), key=lambda s: -float(prior[s]))[:k]
                    p_k = sum(prior[s] * p_word(h[0], memory[s], y) for s in top) / sum(prior[s] for s in top)
                nll -= math.log(float(p))
                nll_k -= math.log(float(p_k))
                entropy -= sum(float(prior[s] * prior[s].log()) for s in range(len(src)))
                tokens += 1
                prev = y
    return {"ppl": math.exp(nll / tokens), "kmax": math.exp(nll_k / tokens), "entropy": entropy / tokens,
            "tokens": tokens}


@pytest.mark.parametrize("mode", ["soft", "marginal", "vae-enum"])
def test_ppl_equals_brute_force_marginal(mode):
    model = tiny_model(mode)
    pairs = random_pairs()
    result = score_split(model, ListSplit(pairs), torch.device("cpu"), max_tokens=30, kmax=(2, 6, 50), bf16=False)
    expected = brute_force(model, pairs)
    assert result["tokens"] == expected["tokens"] == sum(len(t) + 1 for _, t in pairs)
    assert result["ppl"] == pytest.approx(expected["ppl"], rel=1e-5)
    assert result["entropy"] == pytest.approx(expected["entropy"], rel=1e-5)
    if mode != "soft":
        assert result["kmax_ppl"]["2"] == pytest.approx(expected["kmax"], rel=1e-5)
        # K at least the longest source (6) keeps every position: K-max is the exact marginal
        assert result["kmax_ppl"]["6"] == pytest.approx(result["ppl"], rel=1e-9)
        assert result["kmax_ppl"]["50"] == pytest.approx(result["ppl"], rel=1e-9)
        assert result["kmax_ppl"]["2"] != pytest.approx(result["ppl"])  # truncation changes it (either way)


def test_soft_ppl_is_exp_of_mean_token_nll():
    """Teacher-forced decoding with the search's next-word distribution gives the same number."""
    model = tiny_model("soft")
    pairs = random_pairs(seed=5)
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for src, tgt in pairs:
            encoded = model.encode(torch.tensor([src]), torch.tensor([len(src)]))
            state, prev = model.decoder.start(encoded), BOS
            for y in tgt + [EOS]:
                h, scores, state = model.decoder.step(encoded, state, torch.tensor([prev]))
                nll -= float(model.next_log_probs(encoded, h, scores)[0, y])
                tokens += 1
                prev = y
    result = score_split(model, ListSplit(pairs), torch.device("cpu"), max_tokens=25, bf16=False)
    assert result["ppl"] == pytest.approx(math.exp(nll / tokens), rel=1e-6)


# --- evaluate_run on a small prepared folder ----------------------------------------------------------

WORDS_DE = "ein mann eine frau zwei hunde spielen im park auf der straße mit einem ball rot blau".split()
WORDS_EN = "a man a woman two dogs play in the park on the street with a ball red blue".split()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from varattn.data.corpora.recipes import prepare

    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    files = {}
    for split, count in (("train", 40), ("valid", 6), ("test", 12)):
        rows = [rng.integers(0, len(WORDS_DE), rng.integers(2, 7)) for _ in range(count)]
        for side, words, lang in (("src", WORDS_DE, "de"), ("tgt", WORDS_EN, "en")):
            path = root / f"{split}.{lang}"
            # Capitals and a comma: the tokenised, lowercased reference and the raw one differ
            path.write_text("".join(" ".join(words[i] for i in row).capitalize() + ", ok.\n" for row in rows),
                            encoding="utf-8")
            files[f"{split}_{side}"] = str(path)
    out = root / "prepared"
    prepare("files", str(out), src_lang="de", tgt_lang="en", tokenize=True, lowercase=True, bpe_merges=25,
            progress=False, **files)
    return out


def fake_run(data_dir: Path, mode: str = "soft", beam: int = 3):
    from varattn.data.text.prepared import load_prepared

    data = load_prepared(data_dir)
    config = Config(model=ModelConfig(mode=mode, **TINY), decode=DecodeConfig(beam=beam, alpha=1.0, eos_norm=1.0))
    torch.manual_seed(0)
    model = Seq2Seq(config.model, len(data.src_vocab), len(data.tgt_vocab)).eval()
    return SimpleNamespace(model=model, config=config, data=data, checkpoint=data_dir / "none.json",
                           device=torch.device("cpu"), task=TranslationTask()), data


@pytest.mark.parametrize("mode", ["soft", "vae-enum"])
def test_evaluate_reports_every_key(prepared, mode):
    run, data = fake_run(prepared, mode)
    override = dataclasses.replace(run.config.decode, beam=2, kmax=1)
    results = evaluate_run(run, data, "test", decode=override)
    for key in ("ppl", "kmax_ppl", "elbo_ppl", "kl", "entropy", "bleu", "bleu_signature", "sacrebleu",
                "sacrebleu_signature", "tokens", "sentences", "decoding"):
        assert key in results
    assert results["decoding"]["beam"] == 2 and results["decoding"]["kmax"] == 1
    assert "tok:none" in results["bleu_signature"] and "tok:13a" in results["sacrebleu_signature"]
    assert "case:lc" in results["sacrebleu_signature"]  # the pipeline lowercases
    assert (results["kmax_ppl"] is None) == (mode == "soft") and (results["kl"] is None) == (mode == "soft")
    # the BLEU of the decoded split is sacrebleu's on the same strings
    found = decode_ids(run, [data.split("test").src(i).tolist() for i in range(12)], override)
    strings = [remove_bpe(" ".join(data.tgt_vocab.decode(h.tokens))) for h in found]
    refs = data.split("test").references()
    assert results["bleu"] == sacrebleu.corpus_bleu(strings, [refs], tokenize="none").score
    table = format_table(results)
    assert "kmax_ppl" in table and "sacrebleu_signature" in table and "decoding[beam]" in table
    json.dumps(results)
    without = evaluate_run(run, data, "test", bleu=False)
    assert "bleu" not in without and without["ppl"] == results["ppl"]


def test_bleu_equals_sacrebleu_on_the_same_strings(prepared, monkeypatch):
    """Outputs close to the references (so BLEU is far from 0): ``bleu`` is sacrebleu with
    ``tokenize="none"`` on the BPE-removed output and the tokenised reference; ``sacrebleu`` is 13a,
    lowercased, on the detokenised output and the raw reference."""
    run, data = fake_run(prepared)
    test = data.split("test")
    outputs = [test.tgt(i).tolist()[: max(1, len(test.tgt(i)) - i % 3)] for i in range(len(test))]
    monkeypatch.setattr("varattn.tasks.translation.decode_ids",
                        lambda run, ids, decode, progress=False: [Hypothesis(o, 0.0, [0] * len(o)) for o in outputs])
    strings = [remove_bpe(" ".join(data.tgt_vocab.decode(o))) for o in outputs]
    refs = test.references()
    assert any("@@" in " ".join(data.tgt_vocab.decode(o)) for o in outputs)  # BPE really is removed
    results = evaluate_run(run, data, "test")
    expected = sacrebleu.corpus_bleu(strings, [refs], tokenize="none").score
    assert 20 < expected < 100 and results["bleu"] == expected
    detok = [data.pipeline.decode_target(s.split(), detokenize=True) for s in strings]
    raw = [data.pipeline.decode_target(r.split(), detokenize=True) for r in refs]
    assert results["sacrebleu"] == sacrebleu.corpus_bleu(detok, [raw], tokenize="13a", lowercase=True).score
    (prepared / "test.raw.tgt").write_text("".join(line.upper() + "\n" for line in raw), encoding="utf-8")
    try:  # a raw reference, when the corpus has one, is what sacrebleu scores against
        again = evaluate_run(run, data, "test")
    finally:
        (prepared / "test.raw.tgt").unlink()
    assert again["sacrebleu"] == pytest.approx(results["sacrebleu"])  # lowercased: case does not matter


def test_output_formats():
    first, second = Hypothesis([5, 6], -0.5, [1, 0], -1.0), Hypothesis([5], -0.75, [2], -1.2)
    items = [Translation(["x"], first, "a b", [(first, "a b"), (second, "a")]),
             Translation([], Hypothesis([], 0.0, []), "", [(Hypothesis([], 0.0, []), "")])]
    assert list(output_lines(items)) == ["a b", ""]
    assert list(output_lines(items, scores=True, alignments=True)) == ["a b ||| -0.500000 ||| 1-0 0-1",
                                                                      " ||| 0.000000 ||| "]
    assert list(output_lines(items, n_best=2)) == ["0 ||| a b ||| -0.500000", "0 ||| a ||| -0.750000",
                                                   "1 |||  ||| 0.000000"]


def test_cli_translate_and_evaluate_agree(prepared, tmp_path, capsys):
    """`varattn translate` of the raw test source, scored like sacrebleu's command line, gives the BLEU
    `varattn evaluate` reports; the n-best, score and alignment options write their formats."""
    from varattn.cli.main import main

    run = tmp_path / "run"
    model = [f"model.{k}={v}" for k, v in TINY.items()]
    assert main(["train", "configs/quickstart.yaml", "--out", str(run), f"data.dir={prepared}", "data.max_tokens=200",
                 "train.max_steps=2", "train.epochs=1", "train.progress=false", "train.device=cpu", *model]) == 0
    decoding = ["--beam", "3", "--alpha", "1", "--eos-norm", "0.5", "--max-len-b", "4"]
    result = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--data", str(prepared), "--split", "test", "--json", str(result),
                 *decoding, "--decode-kmax", "2"]) == 0
    scores = json.loads(result.read_text())
    assert scores["decoding"] == {**scores["decoding"], "beam": 3, "alpha": 1.0, "eos_norm": 0.5, "kmax": 2,
                                  "max_len_b": 4}
    hyp = tmp_path / "hyp.txt"
    source = prepared.parent / "test.de"
    assert main(["translate", str(run), "--input", str(source), "--output", str(hyp), *decoding,
                 "--decode-kmax", "2"]) == 0
    lines = hyp.read_text(encoding="utf-8").splitlines()
    old_spelling = tmp_path / "old.txt"
    capsys.readouterr()
    assert main(["translate", str(run), "--input", str(source), "--output", str(old_spelling), *decoding,
                 "--kmax", "2"]) == 0
    assert "--kmax is now --decode-kmax" in capsys.readouterr().err
    assert old_spelling.read_text(encoding="utf-8").splitlines() == lines
    refs = (prepared / "test.ref.tgt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(refs) == 12
    assert sacrebleu.corpus_bleu(lines, [refs], tokenize="none").score == pytest.approx(scores["bleu"])
    nbest = tmp_path / "nbest.txt"
    assert main(["translate", str(run), "--input", str(source), "--output", str(nbest), *decoding,
                 "--n-best", "3", "--alignments"]) == 0
    rows = [line.split(" ||| ") for line in nbest.read_text(encoding="utf-8").splitlines()]
    assert [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows) and {int(r[0]) for r in rows} == set(range(12))
    assert all(len(r) == 4 and float(r[2]) <= 0 for r in rows)
    assert [r[1] for r in rows if r[0] == "0"][0] == lines[0]
    capsys.readouterr()
    assert main(["translate", str(run), "--input", str(source), "--n-best", "4", "--beam", "3"]) == 2
    assert "--n-best 4" in capsys.readouterr().err
