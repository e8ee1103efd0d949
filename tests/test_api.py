"""The Python API (issue 14): varattn.load(...).translate / align / score against the command line's own
outputs for the same run, the export round trip, and the README's "Use it from Python" section."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from varattn.cli.main import main
from varattn.errors import UserError

from conftest import tiny_config

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def runs(synthetic_data, tmp_path_factory, one_thread):
    """A soft and a vae-enum run, trained long enough that their outputs differ from sentence to sentence."""
    from varattn.training.trainer import train

    root = tmp_path_factory.mktemp("api-runs")
    for mode in ("soft", "vae-enum"):
        train(tiny_config(synthetic_data, mode, epochs=5), root / mode)
    return root


@pytest.fixture(scope="module")
def sources(synthetic_data) -> list[str]:
    return (synthetic_data / "test.src.txt").read_text(encoding="utf-8").splitlines()[:8]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", ["soft", "vae-enum"])
def test_translate_gives_the_cli_translations_scores_and_links(runs, sources, tmp_path, mode, capsys):
    import varattn

    model = varattn.load(runs / mode, device="cpu")
    found = model.translate(sources, beam=3)
    out = tmp_path / "out.txt"
    assert main(["translate", str(runs / mode), "--input", str(_write(tmp_path / "in.txt", sources)), "--output",
                 str(out), "--beam", "3", "--scores", "--alignments", "--device", "cpu"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(found) == len(sources)
    for line, translation in zip(lines, found):
        text, score, links = line.split(" ||| ")
        assert translation.text == text
        assert f"{translation.score:.6f}" == score
        assert " ".join(f"{i}-{j}" for i, j in translation.links) == links
        assert translation.tokens == text.split()  # no BPE, no tokeniser in the synthetic pipeline
    assert len({t.text for t in found}) > 1, "the outputs should differ between sentences"

    # n-best: the same alternatives, in the same order, as Moses' n-best lines
    nbest = model.translate(sources, beam=3, n_best=3)  # the same batches as the CLI: the same float sums
    assert main(["translate", str(runs / mode), "--input", str(tmp_path / "in.txt"), "--output", str(out),
                 "--beam", "3", "--n-best", "3", "--device", "cpu"]) == 0
    rows = [line.split(" ||| ") for line in out.read_text(encoding="utf-8").splitlines()]
    for n, translation in enumerate(nbest):
        theirs = [(text, score) for index, text, score in rows if index == str(n)]
        assert [(t.text, f"{t.score:.6f}") for t in translation.nbest] == theirs
        assert translation.text == translation.nbest[0].text
    capsys.readouterr()


def test_prior_matrix_is_the_prior_the_search_used_and_score_is_its_log_prob(runs, sources):
    import varattn

    model = varattn.load(runs / "vae-enum", device="cpu")
    found = model.translate(sources, beam=2, kmax=0)
    for translation in found:
        T, S = len(translation.tokens), len(translation.source_tokens)
        assert translation.prior.shape == (T + 1, S)
        np.testing.assert_allclose(translation.prior.sum(-1), 1.0, atol=1e-5)
        # teacher forcing on the output reproduces the decoder's prior step by step: same argmax links
        assert [(int(i), j) for j, i in enumerate(translation.prior[:T].argmax(-1))] == translation.links
    # the exact marginal of the output, scored teacher-forced, is the search's own log p(y | x)
    scores = model.score(sources, [t.text for t in found])
    for score, translation in zip(scores, found):
        assert score.log_prob == pytest.approx(translation.log_prob, rel=1e-4, abs=1e-4)
        assert score.tokens == len(translation.tokens) + 1
        assert score.ppl == pytest.approx(math.exp(-score.log_prob / score.tokens))
    single = model.translate(sources[0], beam=2, kmax=0)
    assert single.text == found[0].text and single.nbest == []


def test_score_sums_to_the_perplexity_of_varattn_evaluate(runs, synthetic_data, tmp_path, capsys):
    import varattn

    test_src = (synthetic_data / "test.src.txt").read_text(encoding="utf-8").splitlines()
    test_tgt = (synthetic_data / "test.tgt.txt").read_text(encoding="utf-8").splitlines()
    for mode in ("soft", "vae-enum"):
        result = tmp_path / f"{mode}.json"
        assert main(["evaluate", str(runs / mode), "--data", str(synthetic_data), "--split", "test", "--no-bleu",
                     "--json", str(result), "--device", "cpu"]) == 0
        expected = json.loads(result.read_text(encoding="utf-8"))
        scores = varattn.load(runs / mode, device="cpu").score(test_src, test_tgt, pretokenized=True)
        tokens = sum(s.tokens for s in scores)
        assert tokens == expected["tokens"]
        assert math.exp(-sum(s.log_prob for s in scores) / tokens) == pytest.approx(expected["ppl"], rel=1e-5)
    capsys.readouterr()


def test_align_gives_the_matrices_and_word_links_of_varattn_align(runs, sources, synthetic_data, tmp_path, capsys):
    import varattn

    targets = (synthetic_data / "test.ref.tgt").read_text(encoding="utf-8").splitlines()[: len(sources)]
    out = tmp_path / "align"
    assert main(["align", str(runs / "vae-enum"), "--src", str(_write(tmp_path / "s.txt", sources)), "--tgt",
                 str(_write(tmp_path / "t.txt", targets)), "--out", str(out), "--pictures", "0", "--grid", "0",
                 "--device", "cpu"]) == 0
    document = json.loads((out / "alignments.json").read_text(encoding="utf-8"))
    found = varattn.load(runs / "vae-enum", device="cpu").align(sources, targets)
    for name in ("prior", "posterior"):
        words = (out / f"{name}.words.align").read_text(encoding="utf-8").splitlines()
        pieces = (out / f"{name}.align").read_text(encoding="utf-8").splitlines()
        for pair, record, word_line, piece_line in zip(found, document["pairs"], words, pieces):
            assert pair.source_tokens == record["src"] and pair.target_tokens == record["tgt"]
            np.testing.assert_array_equal(pair.matrices[name], np.array(record[name]))
            assert {f"{i}-{j}" for i, j, _ in pair.word_links[name]} == set(word_line.split())
            assert {f"{i}-{j}" for i, j, _ in pair.links[name]} == set(piece_line.split())
            for i, j, p in pair.links[name]:
                assert p == pair.matrices[name][j, i] == pair.matrices[name][j].max()
    assert set(found[0].entropy) == {"prior", "posterior", "exact-posterior"}
    soft = varattn.load(runs / "soft", device="cpu").align(sources[0], targets[0])
    assert list(soft.matrices) == ["attention"]
    capsys.readouterr()


def test_pretokenized_input_skips_the_tokeniser_and_escaped_input_warns(caplog):
    from varattn.data.text.tokenize import Pipeline
    from varattn.decoding.translate import encode_sources

    pipeline = Pipeline(src_lang="en", tgt_lang="de", tokenize=True, lowercase=True, escape=True)
    line = "It &apos;s a dog &amp; a cat ."
    assert encode_sources(pipeline, [line], pretokenized=True) == [line.lower().split()]
    with caplog.at_level("WARNING"):
        retokenised = encode_sources(pipeline, [line, "A dog ."])
    assert retokenised[0] != line.lower().split()  # re-tokenising escaped text changes its tokens
    assert "1 of 2 input lines look already tokenised" in caplog.text and "pretokenized=True" in caplog.text
    assert encode_sources(pipeline, ["", "  "]) == [[], []]


def test_export_round_trip_translates_identically(runs, sources, tmp_path, capsys):
    import varattn
    from safetensors.torch import load_file

    from varattn.training import checkpoint

    run = runs / "vae-enum"
    (run / "eval_test.json").write_text(json.dumps({"split": "test", "ppl": 12.5, "bleu": 3.25,
                                                    "bleu_signature": "nrefs:1|tok:none"}), encoding="utf-8")
    out = tmp_path / "exported"
    assert main(["export", str(run), str(out), "--license", "mit"]) == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "README.md", "meta.json",
                                               "vocab.src.json", "vocab.tgt.json"}  # no BPE in this corpus
    weights = load_file(str(out / "model.safetensors"))
    original = checkpoint.load_weights(checkpoint.resolve(run))
    assert weights.keys() == original.keys() and all(torch.equal(weights[k], original[k]) for k in weights)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlibrary_name: varattn\nlicense: mit\n") and "vae-enum" in card
    assert "| test | 12.500 |" in card and "nrefs:1|tok:none" in card
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["mode"] == "vae-enum" and config["config"]["model"]["mode"] == "vae-enum"

    exported, trained = varattn.load(out, device="cpu"), varattn.load(run, device="cpu")
    for a, b in zip(exported.translate(sources, beam=3, n_best=2), trained.translate(sources, beam=3, n_best=2)):
        assert (a.text, a.score, a.links) == (b.text, b.score, b.links)
        np.testing.assert_array_equal(a.prior, b.prior)
    assert [s.log_prob for s in exported.score(sources, sources)] == [s.log_prob for s in trained.score(sources, sources)]
    # the exported folder also serves `varattn translate`
    result = tmp_path / "out.txt"
    assert main(["translate", str(out), "--input", str(_write(tmp_path / "in.txt", sources)), "--output",
                 str(result), "--beam", "3"]) == 0
    assert result.read_text(encoding="utf-8").splitlines() == [t.text for t in trained.translate(sources, beam=3)]

    # a second export into a non-empty folder, and a damaged one, are refused in one line
    capsys.readouterr()
    assert main(["export", str(run), str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    blob = bytearray((out / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(UserError, match="model.safetensors: contents do not match the checksum"):
        varattn.load(out, device="cpu")


def test_load_refuses_what_it_cannot_open(tmp_path, monkeypatch):
    import sys

    import varattn

    with pytest.raises(UserError, match="checkpoint not found"):
        varattn.load(tmp_path / "nothing-here", device="cpu")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if it were not installed
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="pip install huggingface_hub"):
        varattn.load("someone/some-model", device="cpu")


@pytest.mark.slow
def test_import_varattn_stays_light():
    import subprocess
    import sys

    code = "import sys, varattn; assert callable(varattn.load); print('torch' in sys.modules)"
    light = subprocess.run([sys.executable, "-c", "import sys, varattn; print('torch' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "False"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def python_section() -> str:
    heading = "## Use it from Python"
    text = README.read_text(encoding="utf-8")
    assert heading in text, f"{README} has no section {heading!r}"
    block = re.search(r"```python\n(.*?)```", text.split(heading, 1)[1], re.S)
    assert block, f"no ```python block after {heading!r} in {README}"
    return block.group(1)


def test_readme_python_section_runs_as_written(runs, tmp_path, monkeypatch, capsys):
    """The section uses the quick start's vae-enum run: here a tiny one stands in at the same path."""
    place = tmp_path / "runs" / "quickstart" / "runs"
    place.mkdir(parents=True)
    (place / "vae-enum").symlink_to(runs / "vae-enum", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_example"}
    exec(compile(python_section(), f"{README}:Use it from Python", "exec"), namespace)
    printed = capsys.readouterr().out
    best = namespace["best"]
    assert best.text in printed and best.prior.shape == (len(best.tokens) + 1, len(best.source_tokens))
    assert (tmp_path / "exported" / "model.safetensors").is_file()


def test_a_transformer_run_goes_through_the_same_api(synthetic_data, sources, tmp_path, one_thread):
    import varattn
    from varattn import config as config_lib
    from varattn.training.trainer import train

    config = config_lib.from_dict({
        "data": {"dir": str(synthetic_data), "max_tokens": 400, "eval_max_tokens": 2000},
        "model": {"mode": "vae-enum", "arch": "transformer"},
        "transformer": {"encoder_layers": 1, "decoder_layers": 1, "width": 32, "heads": 2, "ffn": 64, "dropout": 0.0},
        "train": {"epochs": 1, "max_steps": 5, "lr": 0.003, "progress": False, "device": "cpu"}}).validate()
    train(config, tmp_path / "transformer")
    model = varattn.load(tmp_path / "transformer", device="cpu")
    found = model.translate(sources[:4], beam=2, kmax=0)
    for translation, score in zip(found, model.score(sources[:4], [t.text for t in found])):
        T = len(translation.tokens)
        assert [(int(i), j) for j, i in enumerate(translation.prior[:T].argmax(-1))] == translation.links
        assert score.log_prob == pytest.approx(translation.log_prob, rel=1e-4, abs=1e-4)
    assert {"prior", "posterior"} <= set(model.align(sources[0], "zy zy").matrices)
