"""The ``varattn`` command: parse arguments, call the library, print results. Nothing else lives here."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from pathlib import Path

from varattn import stopping
from varattn.errors import UserError

# analysis.align.DISTRIBUTIONS, written out so that --help needs no torch (tests/test_align.py keeps them equal)
ALIGN_DISTRIBUTIONS = ("prior", "posterior", "exact-posterior", "viterbi", "attention", "cross")

DESCRIPTION = """Latent alignment and variational attention for sequence models (Deng et al., 2018).
Prepare a corpus, train a model in any of the nine modes, evaluate it, translate, align, export and serve it.
Start with `varattn quickstart` (a few minutes on a CPU, no downloads); `varattn COMMAND --help` explains one command."""

EPILOG = """examples:
  varattn quickstart --out runs/quickstart
  varattn translate runs/quickstart/runs/vae-enum            (type sentences, one per line; Ctrl-D ends)
  varattn serve runs/quickstart/runs/vae-enum                (a page at http://127.0.0.1:8080/)
  varattn export runs/quickstart/runs/vae-enum exported/     (then varattn.load("exported/") in Python)"""


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="make a prepared data folder (vocabularies, token ids, meta.json)")
    from varattn.data.corpora.recipes import RECIPES, recipe_options

    p.add_argument("source", choices=list(RECIPES), help="the corpus recipe")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--force", action="store_true", help="replace a prepared corpus already in --out")
    kinds = {"int": {"type": int}, "str": {}, "path": {}, "bool": {"action": argparse.BooleanOptionalAction},
             "switch": {"action": "store_true"}}
    for option, readers in recipe_options():  # flags not given stay out of args: the recipe's default holds
        where = f"{', '.join(readers)}: " if readers else ""
        p.add_argument(option.cli_flag(), dest=option.name, default=argparse.SUPPRESS,
                       help=where + in_cli_terms(option.help or ""), **kinds[option.kind])


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config (optional with --resume: the run's own)")
    p.add_argument("overrides", nargs="*", help="section.field=value, e.g. train.max_steps=20")
    p.add_argument("--out", help="run directory (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.epilog = ("Every setting, its default and its meaning (and the latent modes): varattn config show "
                "[RECIPE] [section.field=value ...]")


def _add_config(sub) -> None:
    p = sub.add_parser("config", help="list every setting with its value and meaning (defaults, or a recipe's)")
    p.add_argument("action", choices=["show"], help="show: one line per setting")
    p.add_argument("recipe", nargs="?", help="a YAML recipe to show instead of the defaults")
    p.add_argument("overrides", nargs="*", help="section.field=value, applied after the recipe")


def cmd_config(args) -> None:
    from varattn import config as config_lib

    if args.recipe and "=" not in args.recipe:
        config = config_lib.load(args.recipe, args.overrides)
    else:
        overrides = ([args.recipe] if args.recipe else []) + args.overrides
        config = config_lib.apply_overrides(config_lib.Config(), overrides).validate("overrides")
    rows = config_lib.describe(config)
    width = max(len(key) for key, _, _ in rows)
    shown = [(key, "''" if value == "" else str(value), meaning) for key, value, meaning in rows]
    value_width = max(len(value) for _, value, _ in shown)
    for key, value, meaning in shown:
        print(f"{key.ljust(width)}  {value.ljust(value_width)}  {meaning}".rstrip())


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="perplexities (and more) of a trained model on a prepared split")
    p.add_argument("run", help="run directory or checkpoint .json")
    p.add_argument("--data", required=True, help="prepared data folder")
    p.add_argument("--split", default="test", help="split of the prepared folder to score (default: test)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--kmax", type=int, nargs="*", default=[1, 2, 3, 5], help="K values for K-max PPL")
    p.add_argument("--no-bleu", action="store_true", help="skip decoding and BLEU")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N pairs of the split (a quick look)")
    p.add_argument("--device", default="auto")
    p.epilog = ("SIGINT or SIGTERM finishes the batch in progress, then prints and writes (--json) what is "
                "complete, marked partial")
    _add_decoding(p, "--decode-kmax")


def _add_decoding(p, kmax_flag: str) -> None:
    g = p.add_argument_group("decoding (defaults: the run's decode settings)")
    g.add_argument("--beam", type=int, help="beam size (1 = greedy search)")
    g.add_argument("--alpha", type=float, help="length normalisation: final scores / ((5 + |y|) / 6)^alpha")
    g.add_argument("--eos-norm", type=float,
                   help="subtract eos_norm * |x| / (t + 1) from log p(</s>) as output token t (1-based)")
    g.add_argument(kmax_flag, dest="decode_kmax", type=int, metavar="K",
                   help="latent modes: next-word distribution over the K most probable positions (0 = exact)")
    g.add_argument("--max-len-a", type=float, help="maximum output length a * |x| + b: a")
    g.add_argument("--max-len-b", type=int, help="maximum output length a * |x| + b: b")
    g.add_argument("--batch-tokens", type=int, help="padded source tokens per decoding batch")
    g.add_argument("--ensemble", nargs="+", metavar="RUN", default=[],
                   help="decode with these runs too (trained on the same prepared data): the mean of every "
                        "model's next-word probabilities; the run's own decode settings apply")


def _override_decode(decode, args) -> None:
    """Apply the decoding options given on the command line to ``decode`` (a DecodeConfig) in place."""
    for name in ("beam", "alpha", "eos_norm", "max_len_a", "max_len_b", "batch_tokens"):
        if getattr(args, name) is not None:
            setattr(decode, name, getattr(args, name))
    if args.decode_kmax is not None:
        decode.kmax = args.decode_kmax
    for name, least in (("beam", 1), ("batch_tokens", 1), ("kmax", 0), ("max_len_b", 0)):
        if getattr(decode, name) < least:
            raise UserError(f"--{name.replace('_', '-')} {getattr(decode, name)}: must be at least {least}")


def _add_translate(sub) -> None:
    p = sub.add_parser("translate", help="translate text, one line out per line in")
    p.add_argument("run", help="run directory, checkpoint .json or exported folder")
    p.add_argument("--input", help="input file (default: standard input)")
    p.add_argument("--output", help="output file (default: standard output)")
    p.add_argument("--detokenize", action="store_true", help="Moses-detokenise the output")
    p.add_argument("--pretokenized", action="store_true",
                   help="the input is already tokenised (and escaped) like the training data: apply only "
                        "lowercasing and BPE")
    p.add_argument("--buffer", type=int, default=1000, metavar="N",
                   help="standard input: translate at most N lines at a time; the lines already read are "
                        "translated and written at once, so it works interactively (default 1000)")
    p.add_argument("--n-best", type=int, default=1, metavar="N",
                   help="N > 1: up to N lines 'i ||| text ||| score' per input (i from 0), best first")
    p.add_argument("--scores", action="store_true", help="append ' ||| ' and the search score")
    p.add_argument("--alignments", action="store_true",
                   help="append ' ||| ' and Pharaoh i-j links (prior argmax source i of target token j)")
    p.add_argument("--device", default="auto")
    _add_decoding(p, "--decode-kmax")
    # the old spelling: in evaluate --kmax means the K of K-max perplexity, so translate's is --decode-kmax
    p.add_argument("--kmax", dest="old_kmax", type=int, metavar="K", help=argparse.SUPPRESS)


def _add_quickstart(sub) -> None:
    p = sub.add_parser("quickstart", help="the main job on the embedded synthetic corpus (no downloads)")
    p.add_argument("--out", default="runs/quickstart", help="folder for data, runs and results")
    p.add_argument("--pairs", type=int, default=None, help="synthetic pairs (default: the recipe's)")
    p.add_argument("--seed", type=int, default=1)


def _add_align(sub) -> None:
    p = sub.add_parser("align", help="alignment matrices (prior, posterior, attention), Pharaoh links, AER, "
                                     "pictures and an HTML report, teacher-forced on reference translations")
    p.add_argument("run", help="run directory or checkpoint .json")
    p.add_argument("--data", help="prepared data folder (with --split)")
    p.add_argument("--split", default="test", help="with --data: the split to align (default: test)")
    p.add_argument("--src", help="raw source sentences, one per line (instead of --data)")
    p.add_argument("--tgt", help="raw target sentences parallel to --src")
    p.add_argument("--pairs", help="'source ||| target' pairs, one a line (the fast_align/eflomal/awesome-align "
                                   "format; instead of --data)")
    p.add_argument("--pretokenized", action="store_true",
                   help="--pairs/--src/--tgt are tokenised already: split on spaces only, no Moses tokenising or "
                        "escaping, so links index the given words")
    p.add_argument("--reverse-run", help="a run trained the other way (target -> source); align both ways and "
                                         "symmetrise")
    p.add_argument("--symmetrize", choices=["intersect", "union", "grow-diag", "grow-diag-final",
                                            "grow-diag-final-and", "soft-product", "soft-mean"],
                   help="how to combine the two directions (default with --reverse-run: grow-diag-final-and)")
    p.add_argument("--soft-threshold", type=float, default=0.25,
                   help="soft-product/soft-mean: keep links whose combined probability is at least this")
    p.add_argument("--layer", type=int, help="a Transformer's soft cross-attention (matrix 'cross'): this decoder "
                                             "layer, 0-based (default: the average over layers)")
    p.add_argument("--head", type=int, help="... and this head, 0-based (default: the average over heads)")
    p.add_argument("--distribution", choices=list(ALIGN_DISTRIBUTIONS),
                   help="the matrix links.align is drawn from (default: the posterior where the model has one)")
    p.add_argument("--links", choices=["argmax", "threshold"], default="argmax",
                   help="argmax: each target word's best source word, none (NULL) when below --threshold; "
                        "threshold: every word pair with probability >= --threshold")
    p.add_argument("--output-probs", help="write one probability per link of links.align to this file")
    p.add_argument("--output-words", help="write the linked words, src<sep>tgt, one line per pair, to this file")
    p.add_argument("--separator", default="<sep>", help="between the two words in --output-words")
    p.add_argument("--out", required=True, help="folder for alignments.json, *.align, pictures, summary.json")
    p.add_argument("--limit", type=int, default=None, help="align only the first N pairs")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="drop links whose probability is below this, leaving the target word unlinked "
                        "(default 0: every argmax)")
    p.add_argument("--gold", help="gold Pharaoh links (i-j sure, ipj possible) over words, one line per pair "
                                  "(default with --data: the split's own, when it has them)")
    p.add_argument("--one-based", action="store_true", help="the --gold file counts from 1")
    p.add_argument("--pictures", type=int, default=10, help="draw the first N pairs, one file each (0: none)")
    p.add_argument("--grid", type=int, default=6, help="pairs on the grid page (0: no grid)")
    p.add_argument("--formats", nargs="+", default=["png", "svg"], choices=["png", "svg"])
    p.add_argument("--html", help="also write a self-contained HTML report of the aligned pairs to this file")
    p.add_argument("--html-limit", type=int, default=100, metavar="N",
                   help="pairs drawn in the HTML report, 1-2 s each (default 100; 0: all)")
    p.add_argument("--no-translate", action="store_true", help="leave the translation row (greedy decoding) out of the HTML report")
    p.add_argument("--device", default="auto")


def _add_align_corpus(sub) -> None:
    p = sub.add_parser("align-corpus", help="word-align a parallel corpus in one resumable command: prepare it, "
                                            "train the HMM aligner both ways, align and symmetrise")
    p.add_argument("pairs", nargs="?", help="'source ||| target' lines, tokenised (the fast_align/eflomal input)")
    p.add_argument("overrides", nargs="*", help="section.field=value for both directions' training, e.g. "
                                                "train.max_seconds=600")
    p.add_argument("--src", help="source sentences, one a line (instead of PAIRS)")
    p.add_argument("--tgt", help="target sentences parallel to --src")
    p.add_argument("--out", required=True, help="folder for the links and the job (rerun to continue a stopped job)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1); 2 or more train the two directions at once, in two processes")
    p.add_argument("--symmetrize", default="soft-product",
                   choices=["intersect", "union", "grow-diag", "grow-diag-final", "grow-diag-final-and",
                            "soft-product", "soft-mean"],
                   help="how links.align combines the two directions (default soft-product: a link where the "
                        "product of the two word posteriors is at least 0.25)")
    p.add_argument("--distribution", choices=["prior", "posterior", "viterbi"],
                   help="the matrix the links come from (default: posterior)")
    p.add_argument("--recipe", help="a YAML training recipe instead of the HMM aligner (configs/align/hmm.yaml)")
    p.add_argument("--tokenize", action="store_true",
                   help="Moses-tokenise raw text first (default: the text is tokenised, words split on spaces)")
    p.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True,
                   help="lowercase for the models (links still index the given words; default on)")
    p.add_argument("--src-lang", default="src", help="source language code (for --tokenize)")
    p.add_argument("--tgt-lang", default="tgt", help="target language code (for --tokenize)")
    p.add_argument("--bpe-merges", type=int, default=4000, help="joint BPE merges (default 4000; 0 = none)")
    p.add_argument("--max-len", type=int, default=80,
                   help="train on pairs of at most this many pieces a side (default 80; every pair is aligned)")
    p.add_argument("--valid-pairs", type=int, default=500,
                   help="pairs of the corpus, evenly spaced, that validation scores (default 500)")
    p.add_argument("--matrices", action="store_true", help="also write alignments.json (every matrix; large)")
    p.epilog = ("Writes links.align (symmetrised), forward.align, reverse.align (Pharaoh i-j, 0-based, over the "
                "input's words), scores.tsv, tokens.txt, varattn align's per-distribution files and summary.json; "
                "work/ keeps the job, so the same command again continues where it stopped. See docs/align-corpus.md.")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a self-contained folder (safetensors weights, config, vocabularies, "
                                      "BPE codes, model card) in the layout of a Hugging Face model repository")
    p.add_argument("run", help="run directory (its best checkpoint) or checkpoint .json")
    p.add_argument("out", help="new or empty folder to write")
    p.add_argument("--license", default="other",
                   help="licence identifier of the weights for the model card (default: other)")


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="a local web page and JSON API: translate, see alignments")
    p.epilog = ("Every request runs on its own thread (werkzeug's threaded server), any number at once: the page, "
                "/api/info, refused requests and picture drawing never wait; translations and alignments take "
                "turns on the model, one at a time.")
    p.add_argument("run", help="run directory, checkpoint .json or exported folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--max-chars", type=int, default=1000, help="longest sentence accepted, in characters")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (default: CUDA when present)")


def build_parser() -> argparse.ArgumentParser:
    from varattn import __version__

    parser = argparse.ArgumentParser(prog="varattn", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"varattn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_prepare, _add_train, _add_config, _add_evaluate, _add_translate, _add_align, _add_align_corpus,
                _add_quickstart, _add_export, _add_serve):
        add(sub)
    return parser


def cmd_prepare(args) -> None:
    if (Path(args.out) / "meta.json").is_file() and not args.force:
        raise UserError(f"{args.out}: already holds a prepared corpus — add --force to replace it, or choose "
                        "another --out")
    from varattn.data.corpora.recipes import prepare

    from varattn.data.corpora.recipes import options_of

    options = {k: v for k, v in vars(args).items() if k not in ("command", "source", "out", "verbose", "force")}
    flags = {option.name: option.cli_flag() for option in options_of(args.source) if option.help}
    unread = [name for name in options if name not in flags]
    if unread:
        raise UserError(f"prepare {args.source}: does not read {', '.join(_prepare_flags()[k] for k in unread)} "
                        f"— its options: {' '.join(flags.values())}")
    report = prepare(args.source, args.out, **options)
    for line in prepare_summary(report):
        print(line)
    print(f"prepared data written to {args.out} (details: {Path(args.out) / 'meta.json'})")


def prepare_summary(report: dict) -> list[str]:
    """A few lines about a prepared folder: pairs per split with what was dropped, vocabulary sizes."""
    lines = []
    for name, stats in report.get("splits", {}).items():
        if not isinstance(stats, dict):
            continue
        count = stats.get("pairs", stats.get("questions"))
        dropped = [f"{stats[key]} {label}" for key, label in (("dropped_empty", "empty"), ("dropped_long", "too long"))
                   if stats.get(key)]
        removed = stats.get("format_chars_removed")
        notes = (["dropped " + ", ".join(dropped)] if dropped else []) + (
            [f"{removed} invisible format characters removed"] if removed else [])
        unit = "pairs" if "pairs" in stats else "questions"
        lines.append(f"{name}: {count} {unit}" + (f" ({'; '.join(notes)})" if notes else ""))
    vocab = report.get("vocab")
    if isinstance(vocab, dict):
        lines.append("vocabulary: " + ", ".join(f"{side} {size}" for side, size in vocab.items()))
    if report.get("bpe_merges_learned"):
        lines.append(f"BPE merges learned: {report['bpe_merges_learned']}")
    return lines


def cmd_train(args) -> None:
    from varattn import config as config_lib
    from varattn.training.trainer import train

    if args.config and "=" in args.config and not Path(args.config).exists():
        args.overrides.insert(0, args.config)
        args.config = None
    if args.config is None:
        if not (args.resume and args.out):
            raise UserError("give a config file (varattn train CONFIG), or --resume --out RUN_DIR")
        if not (Path(args.out) / "config.yaml").is_file():
            raise UserError(f"{args.out}: no run to resume here (no config.yaml) — give the folder of an "
                            "existing run to --out, or start a new run: varattn train CONFIG --out DIR")
        args.config = str(Path(args.out) / "config.yaml")
    config = config_lib.load(args.config, args.overrides)
    out = args.out or str(Path("runs") / Path(args.config).stem)
    summary = train(config, out, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(summary, indent=1))
        print(f"run written to {out} (checkpoint_best, checkpoint_last, log.jsonl)")


def _device(spec: str):
    from varattn.device import resolve_device

    return resolve_device(spec)


def cmd_evaluate(args) -> None:
    from varattn.analysis.evaluation import evaluate, format_table, legend
    from varattn.training.runs import load_run

    if args.json:
        _check_output_folder(args.json, "--json")
    run = load_run(args.run, _device(args.device))
    _override_decode(run.config.decode, args)
    options = {"limit": args.limit} if args.limit is not None else {}
    if args.ensemble:
        options["decoder"] = _ensemble(run, args.ensemble, args.device).model
    with stopping.signals_caught():
        results = evaluate(run, args.data, args.split, kmax=tuple(args.kmax), bleu=not args.no_bleu, **options)
        signum = stopping.requested()
    if args.ensemble:
        results["ensemble"] = [str(run.checkpoint.parent), *args.ensemble]
    print(format_table(results))
    print(legend(results))
    if args.json:
        from varattn.data.textio import atomic_write_bytes

        try:
            atomic_write_bytes(args.json, json.dumps(results, indent=1).encode("utf-8"))
        except OSError as error:  # name the file meant, not its temporary twin
            raise OSError(error.errno, error.strerror, args.json) from None
        print(f"results written to {args.json}")
    if signum:
        kept = f"partial results in {args.json} and above" if args.json else "partial results above"
        raise stopping.Stopped(signum, f"{results.get('partial', 'stopped')}; {kept}")


def _read_input(path: str | None) -> list[str]:
    if path is None:
        return [line.rstrip("\n") for line in sys.stdin]
    from varattn.data.textio import read_lines

    return read_lines(path)


def cmd_translate(args) -> None:
    from varattn.decoding.translate import line_batches, output_lines, translate_lines

    if args.old_kmax is not None:
        print(f"varattn translate: --kmax is now --decode-kmax (--kmax {args.old_kmax} read as --decode-kmax "
              f"{args.old_kmax})", file=sys.stderr)
        if args.decode_kmax is None:
            args.decode_kmax = args.old_kmax
    run = _open_model(args.run, args.device)
    if args.ensemble:
        run = _ensemble(run, args.ensemble, args.device)
    decode = run.config.decode
    _override_decode(decode, args)
    if not 1 <= args.n_best <= decode.beam:
        raise UserError(f"--n-best {args.n_best}: must lie between 1 and the beam size ({decode.beam}) — "
                        f"add --beam {max(args.n_best, 1)}")
    if args.buffer < 1:
        raise UserError(f"--buffer {args.buffer}: must be at least 1 line")
    # a file is read whole (with a progress bar); standard input batch by batch, each written at once
    batches = [_read_input(args.input)] if args.input else line_batches(sys.stdin.buffer, args.buffer)
    if not args.input and sys.stdin.isatty():
        print("type a sentence and press Enter; Ctrl-D ends", file=sys.stderr)
    if args.output:
        _check_output_folder(args.output, "--output")
    out, tmp = sys.stdout, None
    if args.output:  # written beside the output and renamed when complete: a failure leaves no half file
        tmp = Path(args.output).with_name(f".{Path(args.output).name}.tmp")
        out = open(tmp, "w", encoding="utf-8")
    done, total, stopped = 0, None, None
    name = args.input or "<stdin>"
    try:
        try:
            # a file's lines are translated batch by batch to the end, or until SIGINT/SIGTERM; standard
            # input keeps the default signals (a read waiting for input must not outlive them)
            with stopping.signals_caught() if args.input else contextlib.nullcontext():
                for lines in batches:
                    total = len(lines) if args.input else None
                    translations = translate_lines(run, lines, decode, detokenize=args.detokenize,
                                                   progress=args.input is not None, n_best=args.n_best,
                                                   pretokenized=args.pretokenized, name=name, start=done + 1)
                    for line in output_lines(translations, n_best=args.n_best, scores=args.scores,
                                             alignments=args.alignments, start=done):
                        out.write(line + "\n")
                    out.flush()
                    done += len(translations)
                    stopped = stopping.requested()
                    if stopped:
                        break
        finally:
            if args.output:
                out.close()
    except OSError as error:  # a full disk shows when writing, where the error names no file
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if args.output and (not error.filename or str(error.filename) == str(tmp)) \
                and not isinstance(error, BrokenPipeError):
            raise OSError(error.errno, error.strerror, args.output) from None
        raise
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    if stopped:
        kept = "nothing was written"
        if tmp is not None and done:
            partial = Path(f"{args.output}.partial")
            os.replace(tmp, partial)
            kept = f"the first {done} translations are in {partial} ({args.output} was not written)"
        elif tmp is not None:
            tmp.unlink(missing_ok=True)
            kept = f"no line was complete; {args.output} was not written"
        elif done:
            kept = f"the first {done} translations were written"
        raise stopping.Stopped(stopped, f"stopped by {stopping.name(stopped)} after {done} of {total} lines; {kept}")
    if tmp is not None:
        os.replace(tmp, args.output)


def _check_output_folder(path: str, flag: str) -> None:
    """Refuse an output path whose folder does not exist, before any work."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: the folder {folder} does not exist — create it (mkdir -p {folder}) or "
                        "write elsewhere")


def cmd_align(args) -> None:
    from varattn.training.runs import load_run

    inputs = [bool(args.data), bool(args.src or args.tgt), bool(args.pairs)]
    if sum(inputs) != 1 or (inputs[1] and not (args.src and args.tgt)):
        raise UserError("give one input: --data DIR (and --split), --pairs FILE, or --src FILE --tgt FILE")
    if args.pretokenized and args.data:
        raise UserError("--pretokenized applies to --pairs or --src/--tgt; a prepared split is tokenised already")
    if args.symmetrize and not args.reverse_run:
        raise UserError(f"--symmetrize {args.symmetrize}: give --reverse-run RUN, a run trained the other way")
    run = load_run(args.run, _device(args.device))
    reverse = load_run(args.reverse_run, _device(args.device)) if args.reverse_run else None
    if args.layer is not None or args.head is not None:
        from varattn.models.protocol import CrossAttentionMaps

        if not isinstance(run.model, CrossAttentionMaps):
            raise UserError("--layer/--head: only a Transformer run has per-layer, per-head cross-attention")
        run.model.select_heads(args.layer, args.head)
    data = None
    if args.data:
        from varattn.data.text.prepared import load_prepared

        data = load_prepared(args.data, reverse=run.config.data.reverse)
    with stopping.signals_caught():
        _align(run, reverse, data, args)


def _echo(line: str) -> None:
    """A library progress line on standard output, a warning on standard error, both in the CLI's terms."""
    print(in_cli_terms(line), file=sys.stderr if line.startswith("warning:") else sys.stdout)


def _align(run, reverse, data, args) -> None:
    from varattn.analysis.report import AlignInput, LinkFiles, LinkOptions, ReportOptions, run_align

    summary = run_align(
        run, args.out,
        AlignInput(data=data, split=args.split, src=args.src, tgt=args.tgt, pairs=args.pairs,
                   pretokenized=args.pretokenized, limit=args.limit, gold=args.gold, one_based=args.one_based),
        LinkOptions(distribution=args.distribution, method=args.links, threshold=args.threshold, reverse_run=reverse,
                    symmetrize=args.symmetrize, soft_threshold=args.soft_threshold),
        LinkFiles(probs=args.output_probs, words=args.output_words, separator=args.separator),
        ReportOptions(pictures=args.pictures, formats=args.formats, grid=args.grid, html=args.html,
                      html_limit=args.html_limit, translate=not args.no_translate),
        progress=True, echo=_echo)
    print(json.dumps({k: v for k, v in summary.items() if k != "files"}, indent=1))
    report = ""
    if "html" in summary:
        html = summary["html"]
        report = f"; report: {args.html} ({html['drawn']} of {html['pairs']} pairs drawn"
        report += "; --html-limit 0 draws all)" if html["drawn"] < html["pairs"] else ")"
    print(f"{len(summary['files'])} files written to {args.out}{report}")
    signum = stopping.requested()
    if signum:
        raise stopping.Stopped(signum, f"{summary.get('partial', 'stopped')}; written to {args.out} (summary.json "
                                       "says partial)")


def cmd_align_corpus(args) -> None:
    from varattn.analysis.align_corpus import AlignCorpusRequest, align_corpus

    if args.pairs and "=" in args.pairs and not Path(args.pairs).exists():  # an override, not a file
        args.overrides.insert(0, args.pairs)
        args.pairs = None
    if bool(args.pairs) == bool(args.src or args.tgt) or (args.src is None) != (args.tgt is None):
        raise UserError("give the corpus once: PAIRS (a 'source ||| target' file) or --src FILE --tgt FILE")
    if not args.verbose:  # the trainer's and the recipes' log lines would break the bar
        logging.getLogger("varattn").setLevel(logging.WARNING)
    request = AlignCorpusRequest(
        out=args.out, pairs=args.pairs, src=args.src, tgt=args.tgt, recipe=args.recipe, overrides=args.overrides,
        threads=args.threads, tokenize=args.tokenize, lowercase=args.lowercase, src_lang=args.src_lang,
        tgt_lang=args.tgt_lang, bpe_merges=args.bpe_merges, max_len=args.max_len, valid_pairs=args.valid_pairs,
        symmetrize=args.symmetrize, distribution=args.distribution, matrices=args.matrices)
    bar = _JobBar()
    try:
        summary = align_corpus(request, on_progress=bar.update)
    finally:
        bar.close()
    seconds = summary["seconds"]
    print("  ".join(f"{stage} {_clock(value)}" for stage, value in seconds.items() if value is not None))
    print(f"{summary['pairs']} pairs aligned in {_clock(sum(v for v in seconds.values() if v))} of work "
          f"({_clock(summary['session_seconds'])} this time): {Path(args.out) / 'links.align'} "
          f"({summary['symmetrize']}), forward.align, reverse.align; summary: {Path(args.out) / 'summary.json'}")


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class _JobBar:
    """One bar over the whole align-corpus job: the job's fraction done, the stage and the time left."""

    def __init__(self) -> None:
        self.bar = None

    def update(self, progress) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=1000, bar_format="{percentage:3.0f}%|{bar}| {desc}", dynamic_ncols=True,
                            mininterval=0.5, file=sys.stderr)
        left = "estimating time left" if progress.remaining is None else f"{_clock(progress.remaining)} left"
        detail = f" ({progress.detail})" if progress.detail else ""
        self.bar.n = int(progress.fraction * 1000)
        self.bar.set_description_str(f"{progress.stage} {progress.stage_fraction:.0%}{detail} · {left} · "
                                     f"{_clock(progress.elapsed)} so far", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _open_model(path: str, device: str):
    """A run directory, checkpoint or exported folder, loaded on ``device``."""
    from varattn.training.runs import load_run

    return load_run(path, _device(device))


def _ensemble(run, paths: list[str], device: str):
    """``run`` with its model replaced by the ensemble of it and the runs at ``paths`` (see
    :mod:`varattn.decoding.ensemble`)."""
    import dataclasses

    from varattn.decoding.ensemble import Ensemble, check_same_vocabularies
    from varattn.models.protocol import Decodable

    others = [_open_model(path, device) for path in paths]
    for member, name in zip([run, *others], [_run_name(run), *paths]):
        if not isinstance(member.model, Decodable):
            raise UserError(f"{name}: a {member.task.name} model does not decode word by word — --ensemble "
                            "takes translation and transduction runs")
    check_same_vocabularies(run, others, paths)
    return dataclasses.replace(run, model=Ensemble([run.model, *(other.model for other in others)]))


def _run_name(run) -> str:
    """How an opened run is named in messages: its folder."""
    return str(run.checkpoint.parent)


def cmd_export(args) -> None:
    from varattn.export import export_run

    document = export_run(args.run, args.out, license=args.license)
    files = sorted(p.name for p in Path(args.out).iterdir())
    print(f"exported {document['mode']} model ({document['checkpoint']['name']}) to {args.out}: {', '.join(files)}")
    print(f"use it: python -c 'import varattn; print(varattn.load(\"{args.out}\").translate(\"...\").text)'")


def cmd_serve(args) -> None:
    from varattn.api import load
    from varattn.serve import make_server

    model = load(args.run, device=_device(args.device))
    server = make_server(model, args.host, args.port, max_chars=args.max_chars)
    print(f"serving {args.run} ({model.mode}) at http://{args.host}:{server.server_port}/ — Ctrl-C stops",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def cmd_quickstart(args) -> None:
    from varattn.cli.quickstart import run_quickstart

    run_quickstart(args.out, pairs=args.pairs, seed=args.seed, echo=print)


COMMANDS = {"prepare": cmd_prepare, "train": cmd_train, "config": cmd_config, "evaluate": cmd_evaluate,
            "translate": cmd_translate, "align": cmd_align, "align-corpus": cmd_align_corpus,
            "quickstart": cmd_quickstart, "export": cmd_export,
            "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in ("train", "align-corpus") or any(item.startswith("-") or "=" not in item
                                                                for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides.extend(extra)
    level = logging.DEBUG if args.verbose else logging.INFO
    if os.environ.get("RANK", "0") != "0":  # under torchrun, only the main process reports
        level = logging.WARNING
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        COMMANDS[args.command](args)
    except UserError as error:
        print(f"varattn {args.command}: error: {in_cli_terms(str(error))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `varattn translate ... | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # read-only folder, full disk, missing permission ...
        print(f"varattn {args.command}: error: {_os_error_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:  # training saves checkpoint_last first and says so
        signum = getattr(error, "signum", 2)
        print(f"varattn {args.command}: {error}" if str(error) else "interrupted", file=sys.stderr)
        return 128 + signum
    return 0


# Library messages name parameters (``max_len=3``, ``from_dir``); the command line calls them flags.
# `prepare`'s flags come from the recipes' declarations (_prepare_flags); these are the other commands'.
PARAMETER_FLAGS = {
    "out_dir": "--out", "run_dir": "--out", "data_dir": "--data", "one_based": "--one-based",
    "valid_pairs": "--valid-pairs", "soft_threshold": "--soft-threshold",
}
VALUED_FLAGS = {"split": "--split", "limit": "--limit", "threads": "--threads", "threshold": "--threshold"}


def _prepare_flags() -> dict[str, str]:
    """Every recipe option's name -> its `prepare` flag, as the recipes declare them."""
    from varattn.data.corpora.recipes import recipe_options

    return {option.name: option.cli_flag() for option, _ in recipe_options()}


def _flag_names() -> tuple[dict[str, str], dict[str, str]]:
    """(names replaced wherever they stand, names replaced only as ``name=value``): a recipe option with an
    underscore cannot be an English word, the others (``pairs``, ``lang``) are replaced only with a value."""
    bare, valued = dict(PARAMETER_FLAGS), dict(VALUED_FLAGS)
    for name, flag in _prepare_flags().items():
        (bare if "_" in name else valued).setdefault(name, flag)
    return bare, valued


def in_cli_terms(message: str) -> str:
    """A library message with its parameter names replaced by the flags that set them: ``max_len=3`` ->
    ``--max-len 3``, ``from_dir`` -> ``--from``, ``resume=True`` -> ``--resume``, ``one_based=False`` -> no
    ``--one-based``."""
    message = message.replace("resume=True", "--resume").replace("pretokenized=True", "--pretokenized")
    message = re.sub(r"\bset one_based=False\b", "drop --one-based", message)
    bare, valued = _flag_names()
    names = {**bare, **valued}
    message = re.sub(r"\b(" + "|".join(names) + r")=(?=\S)", lambda m: names[m.group(1)] + " ", message)
    return re.sub(r"\b(" + "|".join(bare) + r")\b", lambda m: bare[m.group(1)], message)


def _os_error_line(error: OSError) -> str:
    """One line for a failed read or write: the path, the cause and what to do."""
    import errno

    where = f"{error.filename}: " if error.filename else ""
    cause = error.strerror or str(error)
    folder = Path(str(error.filename)).parent if error.filename else None
    if error.errno == errno.ENOENT and folder is not None and not folder.is_dir():
        return f"{where}the folder {folder} does not exist — create it (mkdir -p {folder}) or write elsewhere"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some disk space or write to another disk"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make the folder writable (or readable) or choose another folder"
    else:
        fix = "check the path and the disk"
    return f"{where}{cause} — {fix}"


if __name__ == "__main__":
    sys.exit(main())
