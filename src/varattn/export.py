"""A self-contained export of a trained run, in the layout of a Hugging Face model repository.

``export_run(RUN, DIR)`` (``varattn export RUN DIR``) writes one flat folder that is all a user needs to
use the model elsewhere, and that can be uploaded to the Hugging Face Hub as it is:

- ``model.safetensors``: the weights of the run's best checkpoint (checked against its SHA-256 first);
- ``config.json``: the export format, the task, the whole run config, the checkpoint's training progress
  (validation history), the evaluation results found in the run (``eval_*.json``), and the SHA-256 of the
  weights;
- ``meta.json``, ``vocab.src.json``, ``vocab.tgt.json``, ``bpe.codes``: the preprocessing pipeline
  (Moses settings, lowercasing, BPE codes) and the vocabularies — the run's own ``data/`` copy;
- ``README.md``: a model card (YAML front matter for the Hub; the data, the mode, the settings, the
  evaluation figures with their BLEU signatures, the licence).

``varattn.load(DIR)`` (:func:`varattn.training.runs.load_run`, the one loader) reads it back. Nothing is
pickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from varattn import __version__
from varattn.errors import UserError
from varattn.training.runs import EXPORT_CONFIG as CONFIG
from varattn.training.runs import EXPORT_FORMAT as FORMAT
from varattn.training.runs import EXPORT_WEIGHTS as WEIGHTS
from varattn.training.runs import LoadedRun, is_export, load_run, sha256

__all__ = ["CONFIG", "FORMAT", "WEIGHTS", "export_run", "is_export", "model_card"]


def _evaluations(run_dir: Path) -> dict:
    """``eval_{split}.json`` files of a run (the quick start writes ``eval_test.json``), by split."""
    found = {}
    for path in sorted(run_dir.glob("eval_*.json")):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(results, dict):
            found[results.get("split", path.stem[len("eval_"):])] = results
    return found


def export_run(run: LoadedRun | str | os.PathLike, out: str | os.PathLike, *, license: str = "other",
               name: str | None = None) -> dict:
    """Write the export of a run into the new or empty folder ``out``; returns what ``config.json`` holds.
    ``run``: a loaded run (``varattn.load(...).export`` passes its own) or the path of a run directory or
    checkpoint ``.json`` (the best checkpoint by default), opened by the one loader. ``license``: the Hub's
    licence identifier for the weights (they follow the training data's terms; "other" by default)."""
    from safetensors.torch import save_file

    from varattn.training import checkpoint

    if not isinstance(run, LoadedRun):
        run = load_run(run, torch.device("cpu"))
    if run.exported:
        raise UserError(f"{run.checkpoint.parent}: an exported folder already — copy it as it is, or export the "
                        "run directory it came from")
    json_path = run.checkpoint
    record = checkpoint.read_meta(json_path)
    config = run.config
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder — give a new folder to export into")
    data_dir = json_path.parent / "data"
    task_name = run.task.name
    data = run.data
    tensors = checkpoint.load_weights(json_path)  # the checkpoint's own tensors, bit for bit
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(staging / WEIGHTS),
              metadata={"format": "pt", "varattn": __version__})
    data.copy_essentials(staging)
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    progress = record.get("progress", {})
    document = {
        "format": FORMAT,
        "varattn_version": __version__,
        "task": task_name,
        "name": name or json_path.parent.name,
        "mode": config.model.mode,
        "languages": {"source": meta.get("pipeline", {}).get("src_lang"),
                      "target": meta.get("pipeline", {}).get("tgt_lang")},
        "license": license,
        "config": config.to_dict(),
        "checkpoint": {"name": json_path.stem, "epoch": progress.get("best_epoch"), "step": progress.get("step"),
                       "validation": progress.get("history", [])},
        "evaluation": _evaluations(json_path.parent),
        "weights_sha256": sha256(staging / WEIGHTS),
    }
    (staging / CONFIG).write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
    (staging / "README.md").write_text(model_card(document, meta), encoding="utf-8")
    if out.exists():
        out.rmdir()
    os.replace(staging, out)
    return document


def _figure(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "–" if value is None else str(value)


def model_card(document: dict, meta: dict) -> str:
    """The ``README.md`` of an export: Hub front matter, then what the model is and how well it does."""
    languages = [lang for lang in document["languages"].values() if lang and lang not in ("src", "tgt")]
    front = ["---", "library_name: varattn", f"license: {document['license']}"]
    if languages:
        front += ["language:"] + [f"- {lang}" for lang in languages]
    front += ["tags:", "- translation", "- latent-alignment", "- variational-attention",
              f"- {document['mode']}", "---", ""]
    config = document["config"]
    model, decode = config["model"], config["decode"]
    src, tgt = document["languages"]["source"], document["languages"]["target"]
    pipeline = meta.get("pipeline", {})
    lines = [
        f"# {document['name']}: {src} → {tgt}, mode `{document['mode']}`",
        "",
        "A sequence-to-sequence model with latent alignment / variational attention (Deng et al., 2018, "
        f"*Latent Alignment and Variational Attention*), trained with varattn {document['varattn_version']}.",
        "",
        "```python",
        "import varattn",
        "model = varattn.load(\"PATH_OR_HUB_ID\")  # this folder, or its Hub id with huggingface_hub installed",
        "print(model.translate([\"...\"])[0].text)",
        "```",
        "",
        "## Data",
        "",
        f"- corpus: {meta.get('source', meta.get('corpus', 'see meta.json'))}; splits: "
        + ", ".join(f"{name} ({info.get('pairs', '?')} pairs)" for name, info in meta.get("splits", {}).items()),
        f"- preprocessing: Moses tokenisation {'on' if pipeline.get('tokenize') else 'off'}, lowercasing "
        f"{'on' if pipeline.get('lowercase') else 'off'}, BPE codes {pipeline.get('bpe_codes') or 'none'} "
        "(applied by `varattn.load(...).translate` to raw text)",
        "",
        "## Model and training",
        "",
        f"- mode: `{document['mode']}`; " + ", ".join(f"{k} {v}" for k, v in model.items() if k != "mode"),
        "- training: " + ", ".join(f"{k} {config['train'][k]}" for k in ("epochs", "lr", "seed")
                                   if k in config["train"]),
        f"- checkpoint: {document['checkpoint']['name']} (best epoch {document['checkpoint']['epoch']}, "
        f"step {document['checkpoint']['step']})",
        "- decoding defaults: " + ", ".join(f"{k} {v}" for k, v in decode.items()),
        "",
        "## Evaluation",
        "",
    ]
    evaluations = document["evaluation"]
    if evaluations:
        keys = ("ppl", "elbo_ppl", "kl", "entropy", "bleu", "sacrebleu")
        lines += ["| split | " + " | ".join(keys) + " |", "| --- |" + " ---: |" * len(keys)]
        for split, results in evaluations.items():
            lines.append(f"| {split} | " + " | ".join(_figure(results.get(k)) for k in keys) + " |")
        lines += ["", "ppl: perplexity with the exact marginal over alignments under the prior (lower is better); "
                      "elbo_ppl: the perplexity the variational bound gives with the inference network (an upper "
                      "bound of ppl); kl: KL(q‖p) per token; entropy: the prior's entropy in nats per token; "
                      "bleu: tokenised BLEU, sacrebleu: detokenised (signatures below).", ""]
        for split, results in evaluations.items():
            for key in ("bleu_signature", "sacrebleu_signature"):
                if results.get(key):
                    lines.append(f"- {split} {key.replace('_', ' ')}: `{results[key]}`")
        lines.append("")
    else:
        history = document["checkpoint"]["validation"]
        if history:
            last = history[-1]
            lines.append("Last validation: " + ", ".join(f"{k} {_figure(v)}" for k, v in last.items()) + ".")
        else:
            lines.append("No evaluation was recorded with this run (run `varattn evaluate`).")
        lines.append("")
    lines += ["## Licence", "",
              f"`{document['license']}`. The code of varattn is MIT-licensed; the weights follow the terms of "
              "the data they were trained on.", ""]
    return "\n".join(front + lines)
