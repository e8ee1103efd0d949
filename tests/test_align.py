"""Alignments (issue 6): AER by hand, Pharaoh export = argmax of the JSON matrices, pictures read back
from their pixels, the HTML report in headless Chromium, `varattn align` and `varattn evaluate`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from varattn.analysis import aer
from varattn.analysis.align import END, PairAlignment
from varattn.errors import UserError

from conftest import tiny_config

# ----------------------------------------------------------------------------- AER by hand


def test_aer_matches_a_hand_computation_with_sure_and_possible_links():
    gold = aer.parse_gold("0-0 1p1 2-1 2p2")
    assert gold.sure == {(0, 0), (2, 1)}
    assert gold.possible == {(0, 0), (1, 1), (2, 1), (2, 2)}
    # A = {0-0, 1-1, 1-2}: |A| = 3, |S| = 2, |A∩S| = 1 (0-0), |A∩P| = 2 (0-0, 1-1)
    one = aer.counts({(0, 0), (1, 1), (1, 2)}, gold)
    assert (one.hypothesis, one.sure, one.hit_sure, one.hit_possible) == (3, 2, 1, 2)
    assert one.precision == pytest.approx(2 / 3)
    assert one.recall == pytest.approx(1 / 2)
    assert one.aer == pytest.approx(1 - (1 + 2) / (3 + 2))
    # the corpus sums counts before dividing: add a perfect pair with one sure link
    total = aer.score([{(0, 0), (1, 1), (1, 2)}, {(0, 1)}], [gold, aer.parse_gold("0-1")])
    assert total.aer == pytest.approx(1 - (2 + 3) / (4 + 3))
    assert total.precision == pytest.approx(3 / 4)
    assert total.recall == pytest.approx(2 / 3)
    # a hypothesis of only possible links: perfect precision, no recall
    only_possible = aer.counts({(1, 1)}, gold)
    assert (only_possible.precision, only_possible.recall) == (1.0, 0.0)
    assert only_possible.aer == pytest.approx(1 - 1 / 3)
    assert aer.counts(set(), aer.GoldLinks.of(())).aer == 0.0


def test_gold_files_zero_or_one_based(tmp_path):
    path = tmp_path / "gold.align"
    path.write_text("1-1 2p3\n\n3-1\n", encoding="utf-8")
    links = aer.read_gold(path, one_based=True)
    assert [g.sure for g in links] == [{(0, 0)}, set(), {(2, 0)}]
    assert links[0].possible == {(0, 0), (1, 2)}
    assert aer.read_gold(path)[0].sure == {(1, 1)}
    path.write_text("0-1\n", encoding="utf-8")
    with pytest.raises(UserError, match="1-based"):
        aer.read_gold(path, one_based=True)
    path.write_text("0-1 x-2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"gold.align:1: bad alignment link 'x-2'"):
        aer.read_gold(path)


def test_word_level_scoring_of_bpe_links():
    src, tgt = ["un@@", "believ@@", "able", "!"], ["in@@", "credible", "."]
    assert aer.word_index(src) == [0, 0, 0, 1]
    assert aer.word_links({(1, 0), (2, 1), (3, 2)}, src, tgt) == {(0, 0), (1, 1)}
    pair = PairAlignment(0, src, tgt + [END], {"prior": np.eye(4, 4)[[0, 2, 3, 3]]}, {"prior": 0.0})
    assert pair.links("prior") == {(0, 0), (2, 1), (3, 2)}  # the </s> row is not a link
    assert pair.word_links("prior") == {(0, 0), (1, 1)}
    assert aer.counts(pair.word_links("prior"), aer.parse_gold("0-0 0-1 1-1")).recall == pytest.approx(2 / 3)


def test_threshold_drops_uncertain_links():
    matrix = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])
    pair = PairAlignment(0, ["a", "b"], ["x", "y", END], {"prior": matrix}, {"prior": 0.0})
    assert pair.links("prior") == {(0, 0), (1, 1)}
    assert pair.links("prior", threshold=0.7) == {(0, 0)}


# ----------------------------------------------------------------------------- pictures


def _cell_brightness(image: np.ndarray, ax, rows: int, columns: int) -> np.ndarray:
    """Mean luminance of the centre of every matrix cell of ``ax`` in a PNG saved at the figure's dpi."""
    box = ax.get_window_extent()
    height = image.shape[0]
    top, left = height - box.y1, box.x0
    cell_h, cell_w = box.height / rows, box.width / columns
    luminance = image[..., :3] @ np.array([0.2126, 0.7152, 0.0722])
    out = np.zeros((rows, columns))
    for j in range(rows):
        for i in range(columns):
            y0, x0 = int(top + (j + 0.3) * cell_h), int(left + (i + 0.3) * cell_w)
            y1, x1 = int(top + (j + 0.7) * cell_h), int(left + (i + 0.7) * cell_w)
            out[j, i] = luminance[y0:y1 + 1, x0:x1 + 1].mean()
    return out


def test_brightest_cell_of_a_picture_is_the_matrix_maximum(tmp_path):
    from matplotlib.image import imread

    from varattn.analysis import pictures

    rng = np.random.default_rng(0)
    rows, columns = 6, 7
    matrices = {}
    for name, peak in (("prior", (4, 2)), ("posterior", (1, 5))):
        m = rng.uniform(0.0, 0.5, (rows, columns))
        m[peak] = 0.95
        matrices[name] = m
    pair = PairAlignment(3, [f"s{i}@@" if i == 1 else f"s{i}" for i in range(columns)],
                         [f"t{j}" for j in range(rows - 1)] + [END], matrices, {"prior": 1.0, "posterior": 1.0})
    figure = pictures.pair_figure(pair, "pair 3")
    paths = pictures.save(figure, tmp_path / "pair", ("png", "svg"), dpi=100)
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)
    image = imread(paths[0])
    panels = {ax.get_title(): ax for ax in figure.axes}
    assert "prior (red) + posterior (blue)" in panels
    for name, matrix in matrices.items():
        brightness = _cell_brightness(image, panels[name], rows, columns)
        brightest = np.unravel_index(brightness.argmax(), brightness.shape)
        assert brightest == np.unravel_index(matrix.argmax(), matrix.shape)
        # brightness grows with probability (magma is monotone in luminance)
        order = np.argsort(matrix.ravel())
        assert np.corrcoef(brightness.ravel()[order], np.sort(matrix.ravel()))[0, 1] > 0.9
    assert pictures.label("bicy@@") == "bicy·" and pictures.label("&apos;s") == "'s" and pictures.label("$5") == r"\$5"
    grid = pictures.grid_figure([pair, pair, pair], columns=2)
    assert pictures.save(grid, tmp_path / "grid", ("png",))[0].stat().st_size > 1000


# ----------------------------------------------------------------------------- with trained runs


@pytest.fixture(scope="module")
def runs(synthetic_data, tmp_path_factory):
    from varattn.training.trainer import train

    root = tmp_path_factory.mktemp("align-runs")
    for mode in ("soft", "vae-enum"):
        train(tiny_config(synthetic_data, mode, max_steps=3), root / mode)
    return root


def test_pharaoh_export_is_the_argmax_of_the_json_matrices(runs, synthetic_data, tmp_path):
    from varattn.analysis.report import AlignInput, LinkOptions, ReportOptions, run_align
    from varattn.data.text.prepared import load_prepared
    from varattn.training.runs import load_run

    run = load_run(runs / "vae-enum", torch.device("cpu"))
    data = load_prepared(synthetic_data)
    summary = run_align(run, tmp_path, AlignInput(data=data, split="test", limit=7), LinkOptions(threshold=0.2),
                        report=ReportOptions(pictures=2, grid=3, formats=("png",)))
    document = json.loads((tmp_path / "alignments.json").read_text(encoding="utf-8"))
    assert document["distributions"] == ["prior", "posterior", "exact-posterior"] and len(document["pairs"]) == 7
    test = data.split("test")
    for name in ("prior", "posterior"):
        lines = (tmp_path / f"{name}.align").read_text(encoding="utf-8").split("\n")[:-1]
        assert len(lines) == 7
        for record, line in zip(document["pairs"], lines):
            matrix = np.array(record[name])
            assert matrix.shape == (len(record["tgt"]), len(record["src"]))
            assert record["tgt"][-1] == END and len(record["tgt"]) == len(test.tgt(record["index"])) + 1
            np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-4)
            expected = {(int(matrix[j].argmax()), j) for j in range(len(record["tgt"]) - 1)
                        if matrix[j].max() >= 0.2}
            assert aer.parse_gold(line).sure == expected
    assert set(summary["scores"]) == {"prior", "posterior", "exact-posterior"}
    assert 0.0 <= summary["scores"]["prior"]["aer"] <= 1.0
    assert (tmp_path / "pictures" / "pair-00000.png").is_file() and (tmp_path / "grid.png").is_file()


@pytest.mark.slow
def test_align_raw_files_with_gold_and_evaluate_reports_aer(runs, synthetic_data, tmp_path, capsys):
    from varattn.cli.main import main
    from varattn.data.text.prepared import load_prepared
    from varattn.analysis.evaluation import evaluate_run
    from varattn.training.runs import load_run

    data = load_prepared(synthetic_data)
    test = data.split("test")
    src, tgt = tmp_path / "in.src", tmp_path / "in.tgt"
    src.write_text("\n".join(test.source_lines()[:3]) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(test.target_lines()[:3]) + "\n", encoding="utf-8")
    gold = tmp_path / "gold.align"
    gold.write_text("".join(" ".join(f"{i + 1}-{j + 1}" for i, j in sorted(links)) + "\n"
                            for links in test.gold_alignments()[:3]), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["align", str(runs / "soft"), "--src", str(src), "--tgt", str(tgt), "--gold", str(gold),
                 "--one-based", "--out", str(out), "--pictures", "1", "--grid", "0", "--formats", "svg"]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert list(summary["scores"]) == ["attention"] and summary["pairs"] == 3
    assert (out / "pictures" / "pair-00000.svg").is_file() and (out / "attention.words.align").is_file()
    assert main(["align", str(runs / "soft"), "--src", str(src), "--out", str(out)]) == 2
    assert "--src FILE" in capsys.readouterr().err

    for mode, names in (("soft", {"attention"}), ("vae-enum", {"prior", "posterior", "exact-posterior"})):
        results = evaluate_run(load_run(runs / mode, torch.device("cpu")), data, "test", bleu=False)
        assert set(results["aer"]) == names
        assert all(0.0 <= value <= 1.0 for value in results["aer"].values())
        assert set(results["align_precision"]) == set(results["align_recall"]) == names


# ----------------------------------------------------------------------------- HTML in Chromium


def _chromium() -> str:
    """The Chromium binary, installed with apt-get where missing and possible; otherwise skip."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        for command in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"],
                        ["apt-get", "install", "-y", "chromium"]):
            try:
                subprocess.run(command, check=False, capture_output=True, timeout=600,
                               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            except (OSError, subprocess.TimeoutExpired):
                break
            if shutil.which("chromium"):
                return shutil.which("chromium")
    pytest.skip("headless Chromium is not installed and `apt-get install -y chromium` was not possible here")


@pytest.mark.slow
def test_html_report_opens_in_headless_chromium_and_shows_every_sentence(runs, synthetic_data, tmp_path):
    from varattn.analysis.report import AlignInput, ReportOptions, run_align, text
    from varattn.data.text.prepared import load_prepared
    from varattn.training.runs import load_run

    browser = _chromium()
    run = load_run(runs / "vae-enum", torch.device("cpu"))
    report = tmp_path / "report.html"
    run_align(run, tmp_path / "out", AlignInput(data=load_prepared(synthetic_data), split="test", limit=6),
              report=ReportOptions(pictures=0, grid=0, html=str(report)))
    pairs = json.loads((tmp_path / "out" / "alignments.json").read_text(encoding="utf-8"))["pairs"]
    assert all("translation" in p for p in pairs)
    page = report.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert "<h1>" in dom and 'id="filter"' in dom
    for p in pairs:
        start = dom.index(f'id="pair-{p["index"]}"')
        section = dom[start: dom.index("</section>", start)]
        for sentence in (text(p["src"]), text(p["tgt"][:-1])):
            assert sentence.replace("&", "&amp;") in section
        assert "data:image/png;base64," in section and "entropy" in section and "AER" in section
    assert dom.count('class="pair"') == len(pairs) == 6


def test_exact_posterior_is_bayes_rule_over_the_enumeration(synthetic_data, tmp_path):
    """For a model without q, the exact posterior of the current word is p(z_t | x, y<t) p(y_t | z_t)
    normalised over positions: checked against a brute-force computation from the model's prior and its
    output distribution at every single position (one-hot context), written here independently."""
    import torch

    from varattn.analysis import align
    from varattn.cli.main import ALIGN_DISTRIBUTIONS
    from varattn.data.text.prepared import load_prepared
    from varattn.data.vocab import BOS, EOS
    from varattn.latent import masked_log_softmax
    from varattn.training.runs import LoadedRun

    from conftest import tiny_config
    from varattn.training.trainer import Trainer

    assert ALIGN_DISTRIBUTIONS == align.DISTRIBUTIONS
    assert align.distributions("marginal", False) == ("prior", "exact-posterior")
    assert align.distributions("vae-enum", True) == ("prior", "posterior", "exact-posterior")
    assert "exact-posterior" not in align.distributions("vae-dirichlet", True)
    config = tiny_config(synthetic_data, "marginal", max_steps=15)
    config.train.device = "cpu"
    trainer = Trainer(config, tmp_path / "run")
    trainer.run()
    model = trainer.model.double().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # 15 steps leave it near flat: spread the weights so that Bayes' rule moves mass
        for weight in model.parameters():
            weight.add_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype))
    data = load_prepared(synthetic_data)
    split = data.split("test")
    src_ids, tgt_ids = [split.src(i).tolist() for i in range(3)], [split.tgt(i).tolist() for i in range(3)]
    run = LoadedRun(model=model, config=config, device=torch.device("cpu"), data=data, checkpoint=None, task=None)
    pairs = align.extract(run, src_ids, tgt_ids, [[str(t) for t in s] for s in src_ids],
                          [[str(t) for t in t_] for t_ in tgt_ids])
    for n, pair in enumerate(pairs):
        src = torch.tensor([src_ids[n]])
        tgt_in = torch.tensor([[BOS] + tgt_ids[n]])  # BOS, then the reference
        tgt_out = torch.tensor([tgt_ids[n] + [EOS]])  # the reference, then EOS
        lengths = torch.tensor([len(tgt_ids[n]) + 1])
        with torch.no_grad():
            fwd = model(src, torch.tensor([len(src_ids[n])]), tgt_in, tgt_out, lengths)
            prior = masked_log_softmax(fwd.prior, fwd.mask).exp()[0]                       # [T, S]
            S = src.size(1)
            word_given_position = torch.stack([fwd.likelihood(torch.eye(S, dtype=torch.float64)[s]
                                                              .expand(1, prior.size(0), 1, S))[0, :, 0]
                                               for s in range(S)], -1).exp()              # [T, S]
        bayes = prior * word_given_position
        bayes = bayes / bayes.sum(-1, keepdim=True)
        assert np.allclose(pair.matrices["exact-posterior"], bayes.numpy(), atol=2e-6)
        assert np.allclose(pair.matrices["exact-posterior"].sum(-1), 1.0, atol=1e-5)
        assert np.abs(pair.matrices["exact-posterior"] - pair.matrices["prior"]).max() > 0.1  # not the prior
