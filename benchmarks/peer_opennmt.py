"""Peer comparison with OpenNMT-py 3.5.1 on CPU (issue 16): training target tokens/s of varattn ``soft``
against OpenNMT-py's RNN seq2seq with global MLP ("Bahdanau") attention and input feeding, at equal sizes,
on the same batches, one thread each, measured interleaved; then greedy and beam-5 decoding sentences/s.

What is compared. Both models are built by their own toolkit's code (varattn ``Seq2Seq``; OpenNMT-py's
``build_base_model`` with ``-encoder_type brnn -decoder_type rnn -rnn_type LSTM -global_attention mlp
-input_feed 1``) and trained by the same loop: zero_grad, forward, the toolkit's own loss (varattn's one
batch->objective path; OpenNMT-py's ``LossCompute``, cross-entropy summed then divided by the target
tokens), backward, gradient norm clipped at 5, Adam. Both get the very same padded batches (varattn's
``TokenBatcher`` over Multi30k training pairs, ``--max-tokens`` padded tokens), so data loading, which
each toolkit does its own way, is not timed. One round = ``--steps`` batches; within a round the two
toolkits alternate batch by batch (and which goes first alternates by round), so a busy machine slows them
alike. A round's rate is its real target tokens (``</s>`` included) over the summed step seconds; the
ratio is varattn / OpenNMT-py per round, reported as median and range.

Decoding (after training, so both models have learnt to stop): the first ``--decode-sentences`` of the
test split, greedy and beam 5; GNMT length normalisation α = 1 for both, no end-of-sentence penalty;
maximum length 1.5 |x| + 5 (OpenNMT-py uses the padded batch's |x|, so batches are sorted by length).
OpenNMT-py's greedy is its ``GreedySearch`` with top-k 1 (argmax); its beam is ``BeamSearch``.

The script makes its own virtual environment (``--venv``, default ``runs/peer-venv``): a venv that sees
this interpreter's packages (torch, varattn) through a ``.pth`` line, into which OpenNMT-py==3.5.1 and
the packages its ``import onmt`` needs are installed with ``pip install --no-deps`` (``PEER_PACKAGES``:
onmt's package imports every transform, so spaCy's stack is needed just to import it). It then runs
itself again inside that venv with ``--inner``.

``--arch transformer`` (issue 24) compares Transformers instead: varattn's ``TransformerSeq2Seq`` in
``soft`` mode at the sizes of ``configs/multi30k/transformer.yaml`` (3 + 3 pre-LN layers, width 256, 4
heads, feed-forward 512, dropout 0.3, attention dropout 0.1, sinusoidal positions, soft cross-attention in
every decoder layer) against OpenNMT-py's ``-encoder_type transformer -decoder_type transformer`` at the
same sizes (``-position_encoding``, biases on the attention and feed-forward projections as varattn has
them, no shared embeddings on either side). varattn has 4 more 256 x 256 matrices that OpenNMT-py has no
place for (the latent head's query and key, the output layer's ``W_h`` and ``W_x``); both counts are
printed. Each toolkit trains two copies of its model from the same initial weights, one in float32 and
one under ``torch.autocast("cpu", dtype=torch.bfloat16)`` around forward and loss (varattn's
``train.cpu_bf16``; OpenNMT-py has no CPU bf16 option of its own, so the benchmark wraps it in the same
autocast); the four take turns batch by batch (the order rotates by round). Three ratios per round:
(a) both float32, (b) both bf16, (c) as each ships, varattn bf16 over OpenNMT-py float32. Decoding, when
asked, uses the float32 copies.

    python benchmarks/peer_opennmt.py --setting 256 --rounds 6 --steps 15
    python benchmarks/peer_opennmt.py --setting paper --rounds 3 --steps 4 --no-decode
    python benchmarks/peer_opennmt.py --arch transformer --rounds 6 --steps 6 --no-decode

Writes ``benchmarks/results/peer_opennmt[_SETTING].{json,md}``, with ``--arch transformer``
``peer_opennmt_transformer.{json,md}`` (``--out``, ``--name``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import harness
from harness import RESULTS, ROOT, SHARED, command_line, describe, environment, table, write_results

MULTI30K = SHARED / "multi30k"
TRANSFORMER_RECIPE = ROOT / "configs" / "multi30k" / "transformer.yaml"

# what `import onmt` needs beyond torch/numpy/yaml, found by importing until nothing was missing
PEER_PACKAGES = ["OpenNMT-py==3.5.1", "pyonmttok==1.38.1", "configargparse==1.9.0", "spacy==3.8.18",
                 "thinc==8.3.14", "catalogue==2.0.10", "confection==1.3.4", "wasabi==1.1.3", "blis==1.3.4",
                 "cymem==2.0.16", "preshed==3.0.15", "murmurhash==1.0.16", "srsly==2.5.6", "typer==0.29.2",
                 "annotated_doc==0.0.7", "shellingham==1.5.4", "weasel==1.0.1", "httpx==0.28.1",
                 "pyahocorasick==2.3.1", "rapidfuzz==3.14.6", "fasttext==0.9.3"]

# emb, encoder hidden per direction, decoder hidden (= attention = output layer), layers
SETTINGS = {
    "256": {"emb": 256, "enc": 128, "dec": 256, "layers": 1, "max_tokens": 4096},
    # the paper's sizes (docs/design.md §3) except the encoder: OpenNMT-py's RNN decoder starts from the encoder's
    # final state and requires equal sizes, so 2 x 384 per direction (768) instead of 2 x 512
    "paper": {"emb": 512, "enc": 384, "dec": 768, "layers": 2, "max_tokens": 4096},
}


# ----------------------------------------------------------------------------- the peer venv


def ensure_venv(venv: Path) -> Path:
    """Create ``venv`` (once) with OpenNMT-py and its import-time packages; returns its python."""
    python = venv / "bin" / "python"
    marker = venv / "peer-installed.txt"
    if marker.is_file() and marker.read_text() == "\n".join(PEER_PACKAGES):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    import torch

    parent = str(Path(torch.__file__).resolve().parent.parent)
    # an `import` line in a .pth runs at start-up: addsitedir also reads the parent's .pth files
    # (editable installs), after the venv's own packages
    Path(site, "zz_parent_site.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *PEER_PACKAGES], check=True)
    marker.write_text("\n".join(PEER_PACKAGES))
    return python


def ensure_data(data: Path, merges: int) -> None:
    if not (data / "meta.json").is_file():
        harness.varattn("prepare", "multi30k", "--from", MULTI30K, "--out", data, "--bpe-merges", merges,
                        "--max-len", "80", console=True)


# ----------------------------------------------------------------------------- the two models


def onmt_vocab(tokens: list[str]):
    """A pyonmttok vocabulary with varattn's ids (its specials renamed to OpenNMT-py's)."""
    import pyonmttok

    names = {"<pad>": "<blank>"}
    vocab = pyonmttok.Vocab()
    for token in tokens:
        vocab.add_token(names.get(token, token))
    vocab.default_id = 1
    return vocab


def build_onmt(size: dict, dropout: float, src_tokens: list[str], tgt_tokens: list[str]):
    """OpenNMT-py's NMTModel, its LossCompute and vocabularies, built from its own option parser."""
    import torch
    from onmt.bin.train import _get_parser
    from onmt.model_builder import build_base_model
    from onmt.utils.loss import LossCompute
    from onmt.utils.parse import ArgumentParser

    opt = _get_parser().parse_args([
        "-data", "{}", "-src_vocab", "unused", "-encoder_type", "brnn", "-decoder_type", "rnn",
        "-rnn_type", "LSTM", "-layers", str(size["layers"]), "-enc_hid_size", str(2 * size["enc"]),
        "-dec_hid_size", str(size["dec"]), "-word_vec_size", str(size["emb"]), "-global_attention", "mlp",
        "-input_feed", "1", "-dropout", str(dropout), "-param_init", "0.1"])
    ArgumentParser.update_model_opts(opt)
    ArgumentParser.validate_model_opts(opt)
    vocabs = {"src": onmt_vocab(src_tokens), "tgt": onmt_vocab(tgt_tokens), "decoder_start_token": "<s>",
              "data_task": "seq2seq"}
    model = build_base_model(opt, vocabs)
    for parameter in model.parameters():  # what onmt's build_model does with -param_init
        torch.nn.init.uniform_(parameter, -0.1, 0.1)
    return model, LossCompute.from_opts(opt, model, vocabs["tgt"], train=True), vocabs


def build_varattn(size: dict, dropout: float, src_vocab: int, tgt_vocab: int):
    from varattn.config import ModelConfig
    from varattn.models.seq2seq import Seq2Seq

    config = ModelConfig(mode="soft", emb_size=size["emb"], enc_hidden=size["enc"], enc_layers=size["layers"],
                         dec_hidden=size["dec"], dec_layers=size["layers"], attn_size=size["dec"],
                         output_size=size["dec"], dropout=dropout, init_range=0.1)
    return Seq2Seq(config, src_vocab, tgt_vocab)


def transformer_recipe(path: Path) -> dict:
    """The ``model`` and ``transformer`` sections of the recipe (the sizes both toolkits are built at)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    model = {k: v for k, v in data["model"].items() if k in ("mode", "arch")}
    if model != {"mode": "soft", "arch": "transformer"}:
        raise SystemExit(f"{path}: expected model.mode soft and model.arch transformer, found {model}")
    t = data["transformer"]
    if t.get("positions") != "sinusoidal" or t.get("cross_attention") != "all" or t.get("label_smoothing", 0):
        raise SystemExit(f"{path}: OpenNMT-py's Transformer matches sinusoidal positions, cross-attention in "
                         "every layer and no label smoothing only")
    return {"model": model, "transformer": t}


def build_varattn_transformer(recipe: dict, src_vocab: int, tgt_vocab: int):
    import varattn.models  # noqa: F401  (registers the transformer section)
    from varattn.config import from_dict
    from varattn.models.registry import build_translation_model

    return build_translation_model(from_dict(recipe), src_vocab, tgt_vocab)


def build_onmt_transformer(t: dict, src_tokens: list[str], tgt_tokens: list[str]):
    """OpenNMT-py's Transformer NMTModel at the recipe's sizes, a maker of its LossCompute for a model (a
    copy's loss must use the copy's generator) and the vocabularies."""
    import torch
    from onmt.bin.train import _get_parser
    from onmt.model_builder import build_base_model
    from onmt.utils.loss import LossCompute
    from onmt.utils.parse import ArgumentParser

    opt = _get_parser().parse_args([
        "-data", "{}", "-src_vocab", "unused", "-encoder_type", "transformer", "-decoder_type", "transformer",
        "-enc_layers", str(t["encoder_layers"]), "-dec_layers", str(t["decoder_layers"]),
        "-hidden_size", str(t["width"]), "-word_vec_size", str(t["width"]), "-heads", str(t["heads"]),
        "-transformer_ff", str(t["ffn"]), "-dropout", str(t["dropout"]),
        "-attention_dropout", str(t["attention_dropout"]), "-position_encoding", "-add_qkvbias", "-add_ffnbias",
        "-param_init", "0", "-param_init_glorot"])
    ArgumentParser.update_model_opts(opt)
    ArgumentParser.validate_model_opts(opt)
    vocabs = {"src": onmt_vocab(src_tokens), "tgt": onmt_vocab(tgt_tokens), "decoder_start_token": "<s>",
              "data_task": "seq2seq"}
    model = build_base_model(opt, vocabs)
    for module in model.modules():  # what onmt's build_model does with -param_init_glorot
        for name, parameter in module.named_parameters(recurse=False):
            if name == "weight" and parameter.dim() > 1:
                torch.nn.init.xavier_uniform_(parameter)
            elif name == "bias":
                torch.nn.init.zeros_(parameter)
    return model, lambda m: LossCompute.from_opts(opt, m, vocabs["tgt"], train=True), vocabs


class Trainer:
    """One toolkit's training step on a varattn batch; ``step`` returns its seconds. With ``bf16`` the
    forward pass and the loss run under CPU bf16 autocast (backward, clipping and Adam outside it, as
    varattn's trainer does)."""

    def __init__(self, name, model, loss_fn, bf16: bool = False):
        import torch

        self.name, self.model, self.loss_fn, self.bf16 = name, model, loss_fn, bf16
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.model.train()

    def step(self, batch) -> float:
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        if self.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = self.loss_fn(batch)
        else:
            loss = self.loss_fn(batch)
        loss.backward()
        self.last_loss = loss.detach()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizer.step()
        return time.perf_counter() - start


def varattn_loss(model):
    from varattn import latent

    mode = latent.get_mode("soft")

    def loss(batch):
        out = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        value, _ = latent.batch_objective(mode, out)
        return value
    return loss


def onmt_loss(model, compute):
    import torch

    def loss(batch):
        src = batch.src[:, :, None]
        tgt = torch.cat([batch.tgt_in[:, :1], batch.tgt_out], 1)[:, :, None]  # <s> y </s> <blank>...
        onmt_batch = {"src": src, "tgt": tgt, "srclen": batch.src_lengths}
        out, attns = model(src, tgt, batch.src_lengths)
        value, stats = compute(onmt_batch, out, attns)
        return value / stats.n_words
    return loss


# ----------------------------------------------------------------------------- decoding


def decode_varattn(model, sources, beam):
    from types import SimpleNamespace

    import torch
    from varattn.config import DecodeConfig
    from varattn.decoding.translate import decode_nbest

    model.eval()
    run = SimpleNamespace(model=model, device=torch.device("cpu"))
    config = DecodeConfig(beam=beam, alpha=1.0, eos_norm=0.0, max_len_a=1.5, max_len_b=5, batch_tokens=2000)
    with torch.no_grad():
        found = decode_nbest(run, sources, config)
    return sum(len(n[0].tokens) + 1 for n in found)


def decode_onmt(model, vocabs, sources, beam):
    import torch
    from onmt.translate import GNMTGlobalScorer
    from onmt.translate.translator import Translator

    model.eval()
    scorer = GNMTGlobalScorer(alpha=1.0, beta=0.0, length_penalty="wu", coverage_penalty="none")
    translator = Translator(model, vocabs, gpu=-1, n_best=1, max_length=250, max_length_ratio=1.5,
                            beam_size=beam, random_sampling_topk=1 if beam == 1 else 0, global_scorer=scorer,
                            report_score=False, logger=None)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    groups, group = [], []
    for i in order:  # batches of at most 2,000 padded source tokens, as varattn's decode_nbest makes them
        if group and (len(group) + 1) * len(sources[i]) > 2000:
            groups.append(group)
            group = []
        group.append(i)
    groups.append(group)
    tokens = 0
    for group in groups:
        rows = [sources[i] for i in group]
        width = max(map(len, rows))
        src = torch.zeros(len(rows), width, 1, dtype=torch.long)
        for r, ids in enumerate(rows):
            src[r, :len(ids), 0] = torch.as_tensor(ids)
        batch = {"src": src, "srclen": torch.tensor([len(x) for x in rows]), "indices": torch.arange(len(rows))}
        result = translator.translate_batch(batch, attn_debug=False)
        tokens += sum(len(p[0]) for p in result["predictions"])  # ids, </s> included
    return tokens


# ----------------------------------------------------------------------------- the run


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def inner(args) -> None:
    import torch

    from varattn.data.text.batching import TokenBatcher, collate
    from varattn.data.text.prepared import load_prepared

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    import onmt  # noqa: F401  (its import prints deprecation warnings; get them out of the way)

    size = dict(SETTINGS[args.setting])
    max_tokens = args.max_tokens or size["max_tokens"]
    data = load_prepared(args.data)
    train, test = data.split("train"), data.split(args.decode_split)
    batcher = TokenBatcher(train.src_lengths, train.tgt_lengths, max_tokens, shuffle=True, seed=args.seed)
    wanted = args.warmup + args.rounds * args.steps
    batches = [collate(train, idx) for idx, _ in zip(batcher.batches(0), range(wanted))]
    src_tokens, tgt_tokens = data.src_vocab.itos, data.tgt_vocab.itos
    ours = Trainer("varattn", m := build_varattn(size, args.dropout, len(src_tokens), len(tgt_tokens)),
                   varattn_loss(m))
    onmt_model, compute, vocabs = build_onmt(size, args.dropout, src_tokens, tgt_tokens)
    peer = Trainer("OpenNMT-py", onmt_model, onmt_loss(onmt_model, compute))
    params = {t.name: sum(p.numel() for p in t.model.parameters()) for t in (ours, peer)}
    for batch in batches[:args.warmup]:
        ours.step(batch)
        peer.step(batch)
    rounds = []
    for r in range(args.rounds):
        part = batches[args.warmup + r * args.steps: args.warmup + (r + 1) * args.steps]
        seconds = {"varattn": 0.0, "OpenNMT-py": 0.0}
        for batch in part:
            for trainer in ((ours, peer) if r % 2 == 0 else (peer, ours)):
                seconds[trainer.name] += trainer.step(batch)
        tokens = int(sum((b.tgt_out != 0).sum() for b in part))
        row = {"round": r, "target_tokens": tokens, "load_1min": os.getloadavg()[0],
               **{f"{k}_tokens_per_s": tokens / v for k, v in seconds.items()}}
        row["ratio"] = row["varattn_tokens_per_s"] / row["OpenNMT-py_tokens_per_s"]
        rounds.append(row)
        print(f"round {r}: varattn {row['varattn_tokens_per_s']:7.0f} tok/s  OpenNMT-py "
              f"{row['OpenNMT-py_tokens_per_s']:7.0f} tok/s  ratio {row['ratio']:.3f}  load {row['load_1min']:.2f}",
              flush=True)
    decoding = []
    if args.decode_sentences:
        sources = [test.src(i).tolist() for i in range(min(args.decode_sentences, len(test)))]
        for beam in (1, 5):
            for rep in range(args.decode_rounds):
                for name, fn in ((("varattn", lambda: decode_varattn(ours.model, sources, beam)),
                                  ("OpenNMT-py", lambda: decode_onmt(onmt_model, vocabs, sources, beam)))[::1 if rep % 2 == 0 else -1]):
                    start = time.perf_counter()
                    out_tokens = fn()
                    seconds = time.perf_counter() - start
                    decoding.append({"toolkit": name, "beam": beam, "repeat": rep, "sentences": len(sources),
                                     "seconds": seconds, "sentences_per_s": len(sources) / seconds,
                                     "mean_output_length": out_tokens / len(sources),
                                     "output_tokens_per_s": out_tokens / seconds, "load_1min": os.getloadavg()[0]})
                    print(f"decode beam {beam} {name:<10}: {len(sources) / seconds:7.1f} sentences/s, "
                          f"mean length {out_tokens / len(sources):.1f}", flush=True)
    write(args, size, max_tokens, params, rounds, decoding, len(batches))


# ----------------------------------------------------------------------------- the Transformer run

# (ratio key, numerator trainer, denominator trainer, what it compares)
COMPARISONS = [("a", "varattn float32", "OpenNMT-py float32", "both float32"),
               ("b", "varattn bf16", "OpenNMT-py bf16", "both under CPU bf16 autocast"),
               ("c", "varattn bf16", "OpenNMT-py float32", "as each ships: varattn bf16 (its recipe's "
                "train.cpu_bf16), OpenNMT-py float32")]


def decode_all(args, test, ours_model, onmt_model, vocabs) -> list[dict]:
    """Greedy and beam-5 decoding of the first ``--decode-sentences`` test sentences, toolkits alternating."""
    decoding = []
    sources = [test.src(i).tolist() for i in range(min(args.decode_sentences, len(test)))]
    for beam in (1, 5):
        for rep in range(args.decode_rounds):
            for name, fn in ((("varattn", lambda: decode_varattn(ours_model, sources, beam)),
                              ("OpenNMT-py", lambda: decode_onmt(onmt_model, vocabs, sources, beam)))[::1 if rep % 2 == 0 else -1]):
                start = time.perf_counter()
                out_tokens = fn()
                seconds = time.perf_counter() - start
                decoding.append({"toolkit": name, "beam": beam, "repeat": rep, "sentences": len(sources),
                                 "seconds": seconds, "sentences_per_s": len(sources) / seconds,
                                 "mean_output_length": out_tokens / len(sources),
                                 "output_tokens_per_s": out_tokens / seconds, "load_1min": os.getloadavg()[0]})
                print(f"decode beam {beam} {name:<10}: {len(sources) / seconds:7.1f} sentences/s, "
                      f"mean length {out_tokens / len(sources):.1f}", flush=True)
    return decoding


def inner_transformer(args) -> None:
    import copy

    import torch

    from varattn.data.text.batching import TokenBatcher, collate
    from varattn.data.text.prepared import load_prepared

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    import onmt  # noqa: F401  (its import prints deprecation warnings; get them out of the way)

    recipe = transformer_recipe(args.recipe)
    max_tokens = args.max_tokens or 4096
    data = load_prepared(args.data)
    train, test = data.split("train"), data.split(args.decode_split)
    batcher = TokenBatcher(train.src_lengths, train.tgt_lengths, max_tokens, shuffle=True, seed=args.seed)
    wanted = args.warmup + args.rounds * args.steps
    batches = [collate(train, idx) for idx, _ in zip(batcher.batches(0), range(wanted))]
    src_tokens, tgt_tokens = data.src_vocab.itos, data.tgt_vocab.itos
    ours_model = build_varattn_transformer(recipe, len(src_tokens), len(tgt_tokens))
    onmt_model, make_compute, vocabs = build_onmt_transformer(recipe["transformer"], src_tokens, tgt_tokens)
    params = {"varattn": sum(p.numel() for p in ours_model.parameters()),
              "OpenNMT-py": sum(p.numel() for p in onmt_model.parameters())}
    print(f"parameters: varattn {params['varattn']:,}, OpenNMT-py {params['OpenNMT-py']:,}", flush=True)
    trainers = []
    for bf16 in (False, True):  # the bf16 copies start from the float32 copies' weights
        ours = ours_model if not bf16 else copy.deepcopy(ours_model)
        peer = onmt_model if not bf16 else copy.deepcopy(onmt_model)
        precision = "bf16" if bf16 else "float32"
        trainers += [Trainer(f"varattn {precision}", ours, varattn_loss(ours), bf16=bf16),
                     Trainer(f"OpenNMT-py {precision}", peer, onmt_loss(peer, make_compute(peer)), bf16=bf16)]
    for batch in batches[:args.warmup]:
        for trainer in trainers:
            trainer.step(batch)
    rounds = []
    for r in range(args.rounds):
        part = batches[args.warmup + r * args.steps: args.warmup + (r + 1) * args.steps]
        seconds = {t.name: 0.0 for t in trainers}
        losses = {t.name: 0.0 for t in trainers}
        order = trainers[r % len(trainers):] + trainers[:r % len(trainers)]
        for batch in part:
            for trainer in order:
                seconds[trainer.name] += trainer.step(batch)
                losses[trainer.name] += float(trainer.last_loss) / len(part)  # outside the timed step
        tokens = int(sum((b.tgt_out != 0).sum() for b in part))
        row = {"round": r, "target_tokens": tokens, "first": order[0].name, "load_1min": os.getloadavg()[0],
               **{f"{k}_tokens_per_s": tokens / v for k, v in seconds.items()},
               **{f"{k}_loss": v for k, v in losses.items()}}
        for key, num, den, _ in COMPARISONS:
            row[f"ratio_{key}"] = row[f"{num}_tokens_per_s"] / row[f"{den}_tokens_per_s"]
        rounds.append(row)
        print(f"round {r}: " + "  ".join(f"{t.name} {row[f'{t.name}_tokens_per_s']:.0f}" for t in trainers)
              + " tok/s  ratios " + " ".join(f"({k}) {row[f'ratio_{k}']:.3f}" for k, *_ in COMPARISONS)
              + f"  load {row['load_1min']:.2f}", flush=True)
    decoding = decode_all(args, test, ours_model, onmt_model, vocabs) if args.decode_sentences else []
    write_transformer(args, recipe, max_tokens, params, rounds, decoding, [t.name for t in trainers])


def decoding_ratios(decoding: list[dict]) -> dict:
    """Per beam: varattn / OpenNMT-py sentences/s, paired by repeat (median and range)."""
    ratios = {}
    for beam in sorted({d["beam"] for d in decoding}):
        ours = {d["repeat"]: d["sentences_per_s"] for d in decoding if d["beam"] == beam and d["toolkit"] == "varattn"}
        peer = {d["repeat"]: d["sentences_per_s"] for d in decoding if d["beam"] == beam and d["toolkit"] != "varattn"}
        ratios[beam] = summary([ours[k] / peer[k] for k in ours])
    return ratios


def decoding_lines(decoding: list[dict], ratios: dict) -> list[str]:
    """The decoding table and a line per beam of its ratios (markdown lines)."""
    return [table(["beam", "toolkit", "repeat", "sentences", "seconds", "sentences/s",
                   "mean output length (incl. </s>)", "output tokens/s", "load"],
                  [[d["beam"], d["toolkit"], d["repeat"], d["sentences"], f"{d['seconds']:.1f}",
                    f"{d['sentences_per_s']:.1f}", f"{d['mean_output_length']:.1f}",
                    f"{d['output_tokens_per_s']:.0f}", f"{d['load_1min']:.2f}"] for d in decoding],
                  align="rlrrrrrrr"),
            ""] + [f"Decoding beam {b}: varattn / OpenNMT-py sentences/s = {v['median']:.2f} (range "
                   f"{v['min']:.2f}-{v['max']:.2f})." for b, v in ratios.items()] + [""]


def write_transformer(args, recipe, max_tokens, params, rounds, decoding, names) -> None:
    import onmt
    import torch

    ratios = {key: summary([r[f"ratio_{key}"] for r in rounds]) for key, *_ in COMPARISONS}
    dec_ratios = decoding_ratios(decoding)
    command = command_line(__file__, args.argv)
    info = harness.machine(threads=1)
    try:
        native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native_bf16 = False
    t = recipe["transformer"]
    record = {"what": "CPU training speed (target tokens/s) of Transformers, varattn soft vs OpenNMT-py, "
                      "float32 and CPU bf16 autocast", "arch": "transformer",
              "command": command, "machine": info, "python": platform.python_version(),
              "torch": torch.__version__, "onmt": getattr(onmt, "__version__", "3.5.1"), "threads": 1,
              "cpu_native_bf16": native_bf16, "recipe": harness.rel(args.recipe), "sizes": t,
              "max_tokens": max_tokens, "data": str(args.data), "parameters": params, "trainers": names,
              "comparisons": {k: {"numerator": n, "denominator": d, "what": w} for k, n, d, w in COMPARISONS},
              "rounds": rounds, "ratios": ratios, "steps_per_round": args.steps, "warmup_steps": args.warmup,
              "decoding": decoding, "decoding_ratio": dec_ratios, "peer_packages": PEER_PACKAGES}
    med = lambda key: statistics.median(r[key] for r in rounds)  # noqa: E731
    loads = [r["load_1min"] for r in rounds]
    short = {"varattn float32": "varattn fp32", "OpenNMT-py float32": "OpenNMT-py fp32",
             "varattn bf16": "varattn bf16", "OpenNMT-py bf16": "OpenNMT-py bf16"}
    lines = [f"# Peer comparison, Transformer: varattn `soft` vs OpenNMT-py {record['onmt']} (CPU, one thread each)",
             "", f"`{command}`", "",
             f"{describe(info)}, Python {record['python']}; native CPU bf16 products (oneDNN): "
             f"{'yes' if native_bf16 else 'no (bf16 emulated)'}. Load (1-minute average) during the rounds: "
             f"{min(loads):.2f}-{max(loads):.2f} on {info['cpu_cores']} cores.", "",
             f"Sizes from `{record['recipe']}`: {t['encoder_layers']} + {t['decoder_layers']} layers, width "
             f"{t['width']}, {t['heads']} heads, feed-forward {t['ffn']}, dropout {t['dropout']}, attention dropout "
             f"{t['attention_dropout']}, sinusoidal positions, no shared embeddings; parameters varattn "
             f"{params['varattn']:,}, OpenNMT-py {params['OpenNMT-py']:,} (varattn's latent head and output layer "
             "W_h, W_x: 4 more 256 x 256 matrices). "
             f"Data: {args.data} (Multi30k De-En, joint BPE); the same batches of ≤ {max_tokens} padded tokens for "
             f"all four; {args.warmup} warm-up steps each, then {args.rounds} rounds of {args.steps} steps, taking "
             "turns batch by batch (the order rotates by round). bf16: `torch.autocast('cpu', dtype=torch.bfloat16)` "
             "around forward and loss, for OpenNMT-py put there by the benchmark (it has no CPU bf16 option).", "",
             table(["round", "target tokens", *[f"{short[n]} tok/s" for n in names], "(a) fp32/fp32",
                    "(b) bf16/bf16", "(c) bf16/fp32", "load"],
                   [[r["round"], r["target_tokens"], *[f"{r[f'{n}_tokens_per_s']:.0f}" for n in names],
                     *[f"{r[f'ratio_{k}']:.3f}" for k, *_ in COMPARISONS], f"{r['load_1min']:.2f}"] for r in rounds],
                   align="r" * (2 + len(names) + len(COMPARISONS) + 1)), ""]
    lines += [f"**({k}) {w}: varattn / OpenNMT-py = {ratios[k]['median']:.3f}** (median of rounds; range "
              f"{ratios[k]['min']:.3f}-{ratios[k]['max']:.3f}); medians {med(f'{n}_tokens_per_s'):.0f} vs "
              f"{med(f'{d}_tokens_per_s'):.0f} target tokens/s." for k, n, d, w in COMPARISONS]
    last = rounds[-1]
    lines += ["", "Training loss (cross-entropy per target token, `</s>` included, each toolkit's own loss), mean "
              "over the last round's steps: " + ", ".join(f"{n} {last[f'{n}_loss']:.2f}" for n in names)
              + f" (after {args.warmup + args.rounds * args.steps} steps).", ""]
    if decoding:
        lines += ["Decoding after training (the float32 copies): test sentences, α = 1, no end-of-sentence penalty, "
                  "maximum length 1.5 |x| + 5; alternating toolkits.", "",
                  *decoding_lines(decoding, dec_ratios)]
    else:
        lines += ["Decoding not measured (`--no-decode`).", ""]
    write_results(Path(args.out) / args.name, record, "\n".join(lines), command=command, threads=1)
    print("\n".join(lines))


def write(args, size, max_tokens, params, rounds, decoding, n_batches) -> None:
    import onmt
    import torch

    ratio = summary([r["ratio"] for r in rounds])
    dec_ratios = decoding_ratios(decoding)
    command = command_line(__file__, args.argv)
    info = harness.machine(threads=1)
    record = {"what": "CPU training speed (target tokens/s) and decoding speed, varattn soft vs OpenNMT-py",
              "command": command, "machine": info, "python": platform.python_version(),
              "torch": torch.__version__, "onmt": getattr(onmt, "__version__", "3.5.1"), "threads": 1,
              "setting": args.setting, "sizes": size, "max_tokens": max_tokens, "dropout": args.dropout,
              "data": str(args.data), "parameters": params, "rounds": rounds, "ratio": ratio,
              "steps_per_round": args.steps, "warmup_steps": args.warmup, "decoding": decoding,
              "decoding_ratio": dec_ratios, "peer_packages": PEER_PACKAGES}
    med = lambda key: statistics.median(r[key] for r in rounds)  # noqa: E731
    lines = [f"# Peer comparison: varattn `soft` vs OpenNMT-py {record['onmt']} (CPU, one thread each)", "",
             f"`{command}`", "",
             f"{describe(info)}, Python {record['python']}. Load (1-minute average) "
             f"during the rounds: {min(r['load_1min'] for r in rounds):.2f}-{max(r['load_1min'] for r in rounds):.2f} "
             f"on {info['cpu_cores']} cores.", "",
             f"Sizes: embeddings {size['emb']}, {size['layers']}-layer BiLSTM encoder {size['enc']} per direction, "
             f"{size['layers']}-layer input-feeding LSTM decoder {size['dec']}, MLP attention {size['dec']}, "
             f"dropout {args.dropout}; parameters varattn {params['varattn']:,}, OpenNMT-py {params['OpenNMT-py']:,}. "
             f"Data: {args.data} (Multi30k De-En, joint BPE); the same batches of ≤ {max_tokens} padded tokens for "
             f"both; {args.warmup} warm-up steps each, then {args.rounds} rounds of {args.steps} steps, alternating "
             "batch by batch.", "",
             table(["round", "target tokens", "varattn tok/s", "OpenNMT-py tok/s", "ratio", "load"],
                   [[r["round"], r["target_tokens"], f"{r['varattn_tokens_per_s']:.0f}",
                     f"{r['OpenNMT-py_tokens_per_s']:.0f}", f"{r['ratio']:.3f}", f"{r['load_1min']:.2f}"]
                    for r in rounds], align="rrrrrr")]
    lines += ["", f"**Training: varattn / OpenNMT-py = {ratio['median']:.3f}** (median of rounds; range "
              f"{ratio['min']:.3f}-{ratio['max']:.3f}); medians {med('varattn_tokens_per_s'):.0f} vs "
              f"{med('OpenNMT-py_tokens_per_s'):.0f} target tokens/s.", ""]
    if decoding:
        lines += ["Decoding after training: test sentences, α = 1, no end-of-sentence penalty, maximum length "
                  "1.5 |x| + 5; alternating toolkits.", "",
                  *decoding_lines(decoding, dec_ratios)]
    # NAME.json (the record, stamped with its commit and date) and NAME.md (ending with them), atomically
    write_results(Path(args.out) / args.name, record, "\n".join(lines), command=command, threads=1)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=("rnn", "transformer"), default="rnn",
                        help="rnn: the LSTM models at --setting; transformer: the sizes of --recipe, float32 and bf16")
    parser.add_argument("--recipe", default=str(TRANSFORMER_RECIPE), help="--arch transformer: the sizes' recipe")
    parser.add_argument("--setting", choices=SETTINGS, default="256")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=15, help="training steps per toolkit per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=0, help="padded tokens per batch (default per setting)")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--decode-sentences", type=int, default=300, help="0: no decoding")
    parser.add_argument("--no-decode", action="store_true", help="the same as --decode-sentences 0")
    parser.add_argument("--decode-rounds", type=int, default=2)
    parser.add_argument("--data", default=str(ROOT / "runs" / "peer" / "multi30k-10k"))
    parser.add_argument("--bpe-merges", type=int, default=10000)
    parser.add_argument("--decode-split", default="test")
    parser.add_argument("--venv", default=str(ROOT / "runs" / "peer-venv"))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--name", default=None, help="results file stem (default peer_opennmt[_SETTING])")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.argv = [a for a in sys.argv[1:] if a != "--inner"]
    if args.no_decode:
        args.decode_sentences = 0
    if args.arch == "transformer":
        args.name = args.name or "peer_opennmt_transformer"
    args.name = args.name or ("peer_opennmt" if args.setting == "256" else f"peer_opennmt_{args.setting}")
    if args.inner:
        (inner_transformer if args.arch == "transformer" else inner)(args)
        return
    python = ensure_venv(Path(args.venv))
    ensure_data(Path(args.data), args.bpe_merges)
    # the inner run on one thread, this checkout's src first, its output on the terminal
    subprocess.run([str(python), str(Path(__file__).resolve()), "--inner", *sys.argv[1:]], check=True,
                   env=environment(1, PYTHONWARNINGS="ignore"))


if __name__ == "__main__":
    main()
