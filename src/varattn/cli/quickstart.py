"""The main job on the embedded default: synthetic corpus -> prepare -> train -> evaluate -> translate.

Runs with no network and no data beside the project, in a few minutes on two CPU cores. The recipe is
``QUICKSTART`` below (``configs/quickstart.yaml`` is the same recipe as a file; a test keeps them equal).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from varattn import config as config_lib

QUICKSTART = {
    "data": {"max_tokens": 1200, "eval_max_tokens": 4000},
    "model": {"mode": "soft", "emb_size": 64, "enc_hidden": 64, "enc_layers": 1, "dec_hidden": 128,
              "dec_layers": 1, "attn_size": 64, "dropout": 0.1, "inf_hidden": 64, "inf_layers": 1},
    "train": {"epochs": 6, "lr": 0.003, "decay_from_epoch": 3, "seed": 1, "device": "auto"},
    "decode": {"beam": 1, "max_len_a": 2.0, "max_len_b": 5},
}
QUICKSTART_PAIRS = 6000
MODES = ("soft", "vae-enum")


def quickstart_config(mode: str = "soft", data_dir: str = "") -> config_lib.Config:
    config = config_lib.from_dict(QUICKSTART, "quickstart recipe")
    config.model.mode = mode
    config.data.dir = data_dir
    return config.validate("quickstart recipe")


def comparison(runs: dict) -> str:
    """The modes side by side on the synthetic test set."""
    keys = [("ppl", "exact PPL"), ("elbo_ppl", "ELBO PPL"), ("kl", "KL"), ("entropy", "prior entropy"),
            ("bleu", "BLEU")]
    lines = ["mode      " + "".join(f"{label:>15}" for _, label in keys)]
    for mode, run in runs.items():
        cells = "".join(f"{run['test'][key]:>15.3f}" if isinstance(run["test"].get(key), float) else f"{'-':>15}"
                        for key, _ in keys)
        lines.append(f"{mode:<10}{cells}")
    return "\n".join(lines + [""] + [f"  {label:<14} {meaning}" for label, meaning in LEGEND])


# One line per column of the closing table: what it measures and which way is better.
LEGEND = (
    ("exact PPL", "perplexity of the test references, exp(mean -log p(y_t)) with the exact marginal over the "
                  "alignment under the prior (soft: with the expected context); lower is better"),
    ("ELBO PPL", "the same from the variational bound with the inference network q (vae-* only); an upper "
                 "bound on exact PPL, lower is better"),
    ("KL", "KL(q || p) per token: how much reading the reference moves q from the prior (vae-* only); "
           "near 0 means q collapsed onto the prior"),
    ("prior entropy", "entropy of the prior over source positions, nats per token; lower = sharper, more "
                      "word-like alignments"),
    ("BLEU", "test translations against the references, 0-100 (sacrebleu, tokenised); higher is better"),
)


def run_quickstart(out: str | Path, *, pairs: int | None = None, seed: int = 1,
                   echo: Callable[[str], None] = lambda _: None) -> dict:
    """Run every step into ``out``; returns (and writes to ``out/summary.json``) the results."""
    from varattn.data.text.prepared import load_prepared
    from varattn.data.corpora.recipes import prepare
    from varattn.analysis.evaluation import evaluate_run
    from varattn.training.runs import load_run
    from varattn.device import resolve_device
    from varattn.training.trainer import train
    from varattn.decoding.translate import translate_lines

    out = Path(out)
    started = time.perf_counter()
    data_dir = out / "data"
    echo(f"[1/4] generating and preparing the synthetic corpus in {data_dir}")
    report = prepare("synthetic", str(data_dir), pairs=pairs or QUICKSTART_PAIRS, seed=seed)
    summary: dict = {"data": str(data_dir), "prepare": report, "runs": {}}
    data = load_prepared(data_dir)
    test = data.split("test")
    for mode in MODES:
        run_dir = out / "runs" / mode
        echo(f"[2/4] training mode={mode} into {run_dir}")
        config = quickstart_config(mode, str(data_dir))
        config.train.seed = seed
        if (run_dir / "checkpoint_last.json").is_file():
            train(config, run_dir, resume=True)
        else:
            train(config, run_dir)
        echo(f"[3/4] evaluating {mode} on the synthetic test set")
        run = load_run(run_dir, resolve_device(config.train.device))
        results = evaluate_run(run, data, "test")
        (run_dir / "eval_test.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        shown = [f"{label} {results[key]:.3f}" for key, label in (("ppl", "exact PPL"), ("elbo_ppl", "ELBO PPL"),
                                                                  ("kl", "KL"), ("entropy", "prior entropy"),
                                                                  ("bleu", "BLEU"))
                 if isinstance(results.get(key), float)]
        echo(f"  {mode}: {', '.join(shown)} (every score and the decoding settings: {run_dir / 'eval_test.json'})")
        summary["runs"][mode] = {"dir": str(run_dir), "test": results}
        echo(f"[4/4] translating a few test sentences with {mode}")
        sources = [" ".join(data.src_vocab.decode(test.src(i).tolist())) for i in range(5)]
        references = test.references()[:5]
        for source, translation, reference in zip(sources, translate_lines(run, sources, run.config.decode),
                                                  references):
            echo(f"  src: {source}\n  out: {translation.text}\n  ref: {reference}")
    echo(comparison(summary["runs"]))
    summary["seconds"] = time.perf_counter() - started
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    echo(f"done in {summary['seconds']:.0f} s. Results: {out / 'summary.json'}; runs: {out / 'runs'}; "
         f"data: {data_dir}")
    return summary
