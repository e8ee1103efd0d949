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

:func:`open_export` reads it back into a loaded run (``varattn.load(DIR)`` does so). Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from varattn import __version__
from varattn import config as config_lib
from varattn.errors import UserError

FORMAT = "varattn-export/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def is_export(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by :func:`export_run` (it has ``config.json`` and the weights)."""
    path = Path(path)
    return (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def export_run(run_path: str | os.PathLike, out: str | os.PathLike, *, license: str = "other",
               name: str | None = None) -> dict:
    """Write the export of a run (directory or checkpoint ``.json``; the best checkpoint by default)
    into the new or empty folder ``out``; returns what ``config.json`` holds. ``license``: the Hub's
    licence identifier for the weights (they follow the training data's terms; "other" by default)."""
    from safetensors.torch import save_file

    from varattn.tasks.base import get_task
    from varattn.training import checkpoint

    json_path = checkpoint.resolve(run_path)
    record = checkpoint.read_meta(json_path)
    config = config_lib.from_saved(record.get("config"), str(json_path)).validate(str(json_path))
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder — give a new folder to export into")
    data_dir = json_path.parent / "data"
    if not (data_dir / "meta.json").is_file():
        raise UserError(f"{data_dir}: the run's copy of the vocabularies is missing — copy the whole run "
                        "directory, including data/")
    task_name = record.get("task", "translation")
    task = get_task(task_name)
    data = task.load(data_dir)
    tensors = checkpoint.load_weights(json_path)
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
        "weights_sha256": _sha256(staging / WEIGHTS),
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


def open_export(path: str | os.PathLike, device: torch.device):
    """An export folder -> a loaded run (model in eval mode on ``device``, config, vocabularies, pipeline)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from varattn.tasks.base import get_task
    from varattn.training import checkpoint
    from varattn.training.runs import LoadedRun

    root = Path(path)
    config_path = root / CONFIG
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{config_path}: unreadable ({error}) — export the run again (varattn export)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UserError(f"{config_path}: not a varattn export ({FORMAT}) — export the run again (varattn export)")
    config = config_lib.from_saved(document.get("config"), str(config_path)).validate(str(config_path))
    weights = root / WEIGHTS
    if document.get("weights_sha256") and _sha256(weights) != document["weights_sha256"]:
        raise UserError(f"{weights}: contents do not match the checksum in {CONFIG} (truncated or replaced) — "
                        "download or export it again")
    task = get_task(document.get("task", "translation"))
    data = task.load(root)
    model = task.build_model(config, data).to(device)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise UserError(f"{weights}: unreadable tensors ({error}) — download or export it again") from None
    try:
        checkpoint.copy_into(model, tensors)
    except UserError as error:
        raise UserError(f"{weights}: {error}") from None
    model.eval()
    return LoadedRun(model, config, data, weights, device, task)
