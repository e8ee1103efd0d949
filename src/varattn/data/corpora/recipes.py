"""``prepare(source, out_dir, **options)``: corpus recipes that end in a prepared data folder.

Sources:

* ``synthetic`` — the embedded corpus (:mod:`varattn.data.text.synthetic`): ``pairs`` sentence pairs in all
  (5 % each, at most 500, for valid and test), already tokenised, with gold alignments.
* ``multi30k`` — Multi30k task 1 (WMT16 multimodal): the dataset's lowercased, tokenised files
  (``tok/*.lc.norm.tok.{de,en}``), from ``from_dir`` or downloaded from the dataset's repository. Splits
  ``train``, ``valid`` (= val), ``test`` (= test_2016_flickr) and, when present, ``test_2017_flickr``,
  ``test_2017_mscoco``, ``test_2018_flickr``; untokenised references from ``raw/*.gz``.
* ``iwslt14`` — IWSLT'14 De-En as fairseq's ``prepare-iwslt14.sh`` makes it (:mod:`varattn.data.corpora.iwslt`).
* ``files`` — your own parallel files (plain or ``.gz``).

Shared options (every source): ``tokenize``/``lowercase`` (Moses, sacremoses; default per source),
``bpe_merges`` (joint BPE learned on train; 0 = none, e.g. for input that is already BPE'd), ``max_len``
(drop *train* pairs with more final tokens on either side; evaluation splits are kept whole so that scores
cover the full test sets, unless ``filter_eval``), ``min_freq`` and ``max_vocab`` (vocabularies, from
train only). Pairs with an empty side are dropped from every split. All drops are counted in the report.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from varattn.data.text.build import BuildOptions, TextSplit, build_prepared
from varattn.data.corpora.download import DownloadError, default_cache_dir, fetch
from varattn.data.text.pharaoh import format_links
from varattn.data.text.synthetic import generate
from varattn.data.textio import read_lines, read_parallel
from varattn.data.text.tokenize import Pipeline
from varattn.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["RECIPES", "RECIPE_OPTIONS", "SHARED_OPTIONS", "Option", "PrepareRequest", "recipe", "recipe_options", "options_of", "MULTI30K_URL", "prepare", "prepare_synthetic", "prepare_files", "prepare_multi30k"]

MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/"
MULTI30K_SPLITS = {  # our name -> the dataset's file stem
    "train": "train",
    "valid": "val",
    "test": "test_2016_flickr",
    "test_2017_flickr": "test_2017_flickr",
    "test_2017_mscoco": "test_2017_mscoco",
    "test_2018_flickr": "test_2018_flickr",
}
_MULTI30K_REQUIRED = ("train", "valid", "test")


def _option(default, help: str | None = None, *, kind: str = "str", flag: str | None = None):
    """A :class:`PrepareRequest` field with what ``varattn prepare`` needs to offer it (``help=None``: no flag)."""
    return field(default=default, metadata={"help": help, "kind": kind, "flag": flag})


@dataclass(frozen=True)
class Option:
    """One setting a recipe reads, as the command line offers it.

    ``kind``: ``str``, ``path``, ``int``, ``bool`` (``--x`` / ``--no-x``) or ``switch`` (``--x`` sets True).
    ``flag``: the command-line name, by default ``--`` and ``name`` with ``-`` for ``_``.
    """

    name: str
    help: str | None
    kind: str = "str"
    flag: str | None = None

    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass
class PrepareRequest:
    """Every option a recipe may read (each recipe declares the ones it reads in :func:`recipe`)."""

    from_dir: str | os.PathLike | None = _option(None, "take the corpus from this folder instead of downloading",
                                                 kind="path", flag="--from")
    url: str | None = _option(None, "base URL to download from")
    cache_dir: str | os.PathLike | None = _option(None)  # library only: where downloads are kept
    pairs: int = _option(10_000, "number of sentence pairs (default 10000)", kind="int")
    seed: int = _option(1, "random seed (default 1)", kind="int")
    train_src: str | os.PathLike | None = _option(None, "train source file (plain or .gz)", kind="path")
    train_tgt: str | os.PathLike | None = _option(None, "train target file (plain or .gz)", kind="path")
    valid_src: str | os.PathLike | None = _option(None, "valid source file (plain or .gz)", kind="path")
    valid_tgt: str | os.PathLike | None = _option(None, "valid target file (plain or .gz)", kind="path")
    test_src: str | os.PathLike | None = _option(None, "test source file (plain or .gz)", kind="path")
    test_tgt: str | os.PathLike | None = _option(None, "test target file (plain or .gz)", kind="path")
    src_lang: str | None = _option(None, "source language code (default per corpus)")
    tgt_lang: str | None = _option(None, "target language code (default per corpus)")
    tokenize: bool | None = _option(None, "Moses-tokenise the text (default: on for raw text, off for tokenised "
                                          "corpora)", kind="bool")
    lowercase: bool | None = _option(None, "lowercase the text (default per corpus)", kind="bool")
    answers: int | None = _option(None, "answer vocabulary size (default 3000)", kind="int")
    questions: int | None = _option(None, "training questions (default 10000)", kind="int")
    feature_dim: int | None = _option(None, "region feature width (vqa-synthetic: default 64; vqa: the width the "
                                            "features must have)", kind="int")
    lang: str | None = _option(None, "the language of the files (e.g. fre, kor, vie_hanoi)")
    train: str | os.PathLike | None = _option(None, "train file, word<TAB>space-separated symbols per line",
                                              kind="path")
    valid: str | os.PathLike | None = _option(None, "valid file, word<TAB>space-separated symbols per line",
                                              kind="path")
    test: str | os.PathLike | None = _option(None, "test file, word<TAB>space-separated symbols per line "
                                                   "(optional)", kind="path")
    normalization: str = _option("nfc", "Unicode normalisation of the words: nfc (default), nfd, nfkc, nfkd or "
                                        "none")
    build: BuildOptions = field(default_factory=BuildOptions)  # bpe_merges, max_len, min_freq, ... progress
    extra: dict[str, Any] = field(default_factory=dict)  # a recipe's own options (Option objects in recipe())

    @property
    def min_freq(self) -> int:
        return self.build.min_freq

    @property
    def progress(self) -> bool:
        return self.build.progress

    def build_options(self) -> BuildOptions:
        return self.build

    def cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()


#: recipe name -> function(out_dir, request) -> report; `varattn prepare` offers exactly these
RECIPES: dict[str, Callable[[str | os.PathLike, PrepareRequest], dict]] = {}
#: recipe name -> the options it reads besides the shared ones: PrepareRequest field names or its own Option
RECIPE_OPTIONS: dict[str, tuple[str | Option, ...]] = {}

#: the build steps' options, read by every recipe (BuildOptions.progress is the library's alone)
SHARED_OPTIONS = (
    Option("bpe_merges", "joint BPE merges to learn; 0 = none", "int"),
    Option("max_len", "drop training pairs longer than this (tokens)", "int"),
    Option("filter_eval", "apply max_len to evaluation splits too", "switch"),
    Option("min_freq", "least count of a vocabulary entry (default 1)", "int"),
    Option("max_vocab", "most vocabulary entries besides the specials", "int"),
)


def recipe(name: str, options: tuple[str | Option, ...] = ()):
    """Register a corpus recipe under ``name`` (a decorator). ``options``: what it reads besides
    :data:`SHARED_OPTIONS` — names of :class:`PrepareRequest` fields, or an :class:`Option` of its own (its
    value reaches the recipe in ``request.extra``). ``varattn prepare`` offers a flag for each."""
    known = {f.name for f in fields(PrepareRequest)}
    for option in options:
        if isinstance(option, str) and option not in known:
            raise ValueError(f"recipe {name!r}: {option!r} is not a PrepareRequest field — declare an Option")

    def register(function):
        RECIPES[name] = function
        RECIPE_OPTIONS[name] = tuple(options)
        return function

    return register


def _own_names(source: str) -> list[str]:
    return [o if isinstance(o, str) else o.name for o in RECIPE_OPTIONS.get(source, ())]


def options_of(source: str) -> list[Option]:
    """The options recipe ``source`` reads: its own (as declared), then the shared ones."""
    offered = {option.name: option for option, _ in recipe_options()}
    own = [o if isinstance(o, Option) else offered.get(o, Option(o, None)) for o in RECIPE_OPTIONS[source]]
    return own + list(SHARED_OPTIONS)


def recipe_options() -> list[tuple[Option, tuple[str, ...] | None]]:
    """Every option of every registered recipe, once, with the recipes that read it (None: every recipe);
    PrepareRequest's fields first in their order, then the recipes' own, then the shared ones."""
    readers: dict[str, list[str]] = {}
    own: dict[str, Option] = {}
    for source, options in RECIPE_OPTIONS.items():
        for option in options:
            name = option if isinstance(option, str) else option.name
            readers.setdefault(name, []).append(source)
            if not isinstance(option, str):
                own.setdefault(name, option)
    result: list[tuple[Option, tuple[str, ...] | None]] = []
    for f in fields(PrepareRequest):
        if f.metadata.get("help") and f.name in readers:
            result.append((Option(f.name, f.metadata["help"], f.metadata["kind"], f.metadata["flag"]),
                           tuple(readers[f.name])))
    result += [(option, tuple(readers[name])) for name, option in own.items()]
    return result + [(option, None) for option in SHARED_OPTIONS]


def prepare(source: str, out_dir: str | os.PathLike, **options) -> dict:
    """Prepare ``source`` into ``out_dir`` and return the report (the meta.json content plus ``out``).

    ``source`` is a name in :data:`RECIPES`; ``options`` are fields of :class:`PrepareRequest`:

    - from_dir: multi30k / iwslt14 / vqa: take the corpus from this folder instead of downloading.
    - url: multi30k: base URL of ``data/task1/``; iwslt14: URL of ``de-en.tgz``.
    - cache_dir: where downloads are kept (default :func:`~varattn.data.corpora.download.default_cache_dir`).
    - pairs, seed: synthetic: pairs in all (train + valid + test) and the seed (also vqa-synthetic's seed).
    - train_src … test_tgt: files: the parallel files (test optional).
    - src_lang, tgt_lang: languages (multi30k/iwslt14: ``de``/``en``; files: for the Moses rules).
    - tokenize, lowercase: None = the source's default (on for iwslt14; for multi30k the files are
      tokenised and lowercased already, so they stay on and are not re-applied; off otherwise).
    - bpe_merges: joint BPE merges to learn on train (0 = no BPE).
    - max_len: drop training pairs with more than this many final tokens on either side.
    - filter_eval: apply ``max_len`` to the evaluation splits too.
    - min_freq, max_vocab: vocabulary thresholds (max_vocab excludes the 4 specials).
    - answers, questions, feature_dim: vqa / vqa-synthetic: answer vocabulary size, synthetic questions,
      region feature width.
    - progress: tqdm bars on a terminal.
    """
    if source not in RECIPES:
        raise UserError(f"unknown source {source!r} — choose one of: {', '.join(RECIPES)}")
    build_fields = {f.name for f in fields(BuildOptions)}
    readable = {o.name for o in options_of(source)} | build_fields
    unread = [k for k in options if k not in readable]
    if unread:
        offered = ", ".join(o.name for o in options_of(source))
        raise UserError(f"prepare {source}: does not read {', '.join(unread)} — its options: {offered}")
    request_fields = {f.name for f in fields(PrepareRequest)}
    build = BuildOptions(**{k: v for k, v in options.items() if k in build_fields})
    request = PrepareRequest(**{k: v for k, v in options.items() if k in request_fields}, build=build,
                             extra={k: v for k, v in options.items() if k not in build_fields | request_fields})
    if request.min_freq < 1:
        raise UserError(f"min_freq={request.min_freq}: must be at least 1")
    return RECIPES[source](out_dir, request)


@recipe("synthetic", options=("pairs", "seed", "tokenize", "lowercase"))
def _synthetic(out_dir, r: PrepareRequest) -> dict:
    return prepare_synthetic(out_dir, pairs=r.pairs, seed=r.seed, tokenize=r.tokenize, lowercase=r.lowercase,
                             options=r.build_options())


@recipe("multi30k", options=("from_dir", "url", "cache_dir", "src_lang", "tgt_lang", "tokenize", "lowercase"))
def _multi30k(out_dir, r: PrepareRequest) -> dict:
    return prepare_multi30k(out_dir, from_dir=r.from_dir, url=r.url, cache_dir=r.cache(),
                            src_lang=r.src_lang or "de", tgt_lang=r.tgt_lang or "en", tokenize=r.tokenize,
                            lowercase=r.lowercase, options=r.build_options())


@recipe("iwslt14", options=("from_dir", "url", "cache_dir", "src_lang", "tgt_lang", "tokenize", "lowercase"))
def _iwslt14(out_dir, r: PrepareRequest) -> dict:
    from varattn.data.corpora.iwslt import prepare_iwslt14

    return prepare_iwslt14(out_dir, from_dir=r.from_dir, url=r.url, cache_dir=r.cache(),
                           src_lang=r.src_lang or "de", tgt_lang=r.tgt_lang or "en",
                           tokenize=True if r.tokenize is None else r.tokenize,
                           lowercase=True if r.lowercase is None else r.lowercase, options=r.build_options())


@recipe("files", options=("train_src", "train_tgt", "valid_src", "valid_tgt", "test_src", "test_tgt",
                         "src_lang", "tgt_lang", "tokenize", "lowercase"))
def _files(out_dir, r: PrepareRequest) -> dict:
    return prepare_files(out_dir, train=(r.train_src, r.train_tgt), valid=(r.valid_src, r.valid_tgt),
                         test=(r.test_src, r.test_tgt), src_lang=r.src_lang or "src", tgt_lang=r.tgt_lang or "tgt",
                         tokenize=bool(r.tokenize), lowercase=bool(r.lowercase), options=r.build_options())


@recipe("vqa", options=("from_dir", "answers", "feature_dim"))
def _vqa(out_dir, r: PrepareRequest) -> dict:
    from varattn.data.vqa.reader import prepare_vqa

    if not r.from_dir:
        raise UserError("prepare vqa: give from_dir, the folder with the VQA v2 questions, annotations and "
                        "region features")
    return prepare_vqa(r.from_dir, out_dir, feature_dim=r.feature_dim, answers=r.answers or 3000,
                       min_freq=r.min_freq, progress=r.progress)


@recipe("vqa-synthetic", options=("seed", "questions", "answers", "feature_dim"))
def _vqa_synthetic(out_dir, r: PrepareRequest) -> dict:
    from varattn.data.vqa.synthetic import prepare_vqa_synthetic

    return prepare_vqa_synthetic(out_dir, questions=r.questions or 10000, seed=r.seed,
                                 feature_dim=r.feature_dim or 64, answers=r.answers or 3000, min_freq=r.min_freq,
                                 progress=r.progress)


SPLIT_MARKS = Option("split_marks", "target symbols' trailing marks (tone, length, nasality) as tokens of their own; "
                     "outputs and scores join them back", "switch")


@recipe("sigmorphon-g2p", options=("from_dir", "lang", "normalization", SPLIT_MARKS))
def _sigmorphon_g2p(out_dir, r: PrepareRequest) -> dict:
    from varattn.data.lexicon import prepare_sigmorphon

    return prepare_sigmorphon(out_dir, from_dir=r.from_dir, lang=r.lang, normalization=r.normalization,
                              options=r.build_options(), split_marks=bool(r.extra.get("split_marks")))


@recipe("lexicon", options=("train", "valid", "test", "normalization", "lowercase", SPLIT_MARKS))
def _lexicon(out_dir, r: PrepareRequest) -> dict:
    from varattn.data.lexicon import prepare_lexicon

    return prepare_lexicon(out_dir, train=r.train, valid=r.valid, test=r.test, normalization=r.normalization,
                           lowercase=bool(r.lowercase), options=r.build_options(),
                           split_marks=bool(r.extra.get("split_marks")))


# --- synthetic -----------------------------------------------------------------------------------


def prepare_synthetic(
    out_dir: str | os.PathLike,
    *,
    pairs: int = 10_000,
    seed: int = 1,
    tokenize: bool | None = None,
    lowercase: bool | None = None,
    options: BuildOptions | None = None,
) -> dict:
    """The embedded corpus: ``pairs`` pairs in all; valid and test get 5 % each (at most 500, at least
    1), train the rest. Gold alignments are written as ``{split}.align``."""
    if pairs < 10:
        raise UserError(f"pairs={pairs}: too few — use at least 10")
    options = options or BuildOptions()
    n_eval = max(1, min(500, round(0.05 * pairs)))
    _, data = generate(pairs, seed)
    cut = {"test": (0, n_eval), "valid": (n_eval, 2 * n_eval), "train": (2 * n_eval, pairs)}
    splits = []
    for name in ("train", "valid", "test"):
        a, b = cut[name]
        part = data[a:b]
        splits.append(
            TextSplit(
                name,
                [" ".join(p.src) for p in part],
                [" ".join(p.tgt) for p in part],
                align=[format_links(p.alignment) for p in part],
            )
        )
    pipeline = Pipeline("src", "tgt", tokenize=bool(tokenize), lowercase=bool(lowercase))
    return build_prepared(
        out_dir,
        source="synthetic",
        splits=splits,
        pipeline=pipeline,
        options=options,
        settings={
            "pairs": pairs,
            "seed": seed,
            "tokenize": pipeline.tokenize,
            "lowercase": pipeline.lowercase,
        },
    )


# --- files ---------------------------------------------------------------------------------------


def prepare_files(
    out_dir: str | os.PathLike,
    *,
    train: tuple,
    valid: tuple,
    test: tuple = (None, None),
    src_lang: str = "src",
    tgt_lang: str = "tgt",
    tokenize: bool = False,
    lowercase: bool = False,
    options: BuildOptions | None = None,
) -> dict:
    """Your own parallel files (plain or .gz): train and valid required, test optional."""
    options = options or BuildOptions()
    flags = {
        "train": ("train_src", "train_tgt"),
        "valid": ("valid_src", "valid_tgt"),
        "test": ("test_src", "test_tgt"),
    }
    splits, inputs = [], []
    for name, (s, t) in (("train", train), ("valid", valid), ("test", test)):
        if s is None and t is None and name == "test":
            continue
        if s is None or t is None:
            missing = flags[name][0] if s is None else flags[name][1]
            raise UserError(f"prepare files: {missing} is missing — give both {' and '.join(flags[name])}")
        src, tgt = read_parallel(s, t)
        splits.append(TextSplit(name, src, tgt))
        inputs += [s, t]
    pipeline = Pipeline(src_lang, tgt_lang, tokenize=tokenize, lowercase=lowercase, escape=False)
    return build_prepared(
        out_dir,
        source="files",
        splits=splits,
        pipeline=pipeline,
        options=options,
        inputs=inputs,
        settings={"src_lang": src_lang, "tgt_lang": tgt_lang, "tokenize": tokenize, "lowercase": lowercase},
    )


# --- multi30k ------------------------------------------------------------------------------------


def _m30k_paths(root: Path, stem: str, lang: str) -> tuple[list[Path], list[Path]]:
    """Candidate paths of the tokenised and the raw file of one split and language."""
    tok = [root / "tok" / f"{stem}.lc.norm.tok.{lang}", root / f"{stem}.lc.norm.tok.{lang}"]
    raw = [root / "raw" / f"{stem}.{lang}.gz", root / "raw" / f"{stem}.{lang}"]
    return tok, raw


def _first(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _download_multi30k(url: str, cache: Path, langs: tuple[str, str], tgt: str, progress: bool) -> Path:
    """Fetch the multi30k files into a cache folder laid out like the dataset's ``data/task1``."""
    base = url if url.endswith("/") else url + "/"
    root = cache / "multi30k" / hashlib.sha1(base.encode()).hexdigest()[:12]
    for name, stem in MULTI30K_SPLITS.items():
        wanted = [f"tok/{stem}.lc.norm.tok.{lang}" for lang in langs] + [f"raw/{stem}.{tgt}.gz"]
        for k, rel in enumerate(wanted):
            required = name in _MULTI30K_REQUIRED and k < 2
            try:
                fetch(base + rel, root / rel, progress=progress)
            except DownloadError as e:
                if required or e.status is None:
                    raise
                log.warning("skipping %s: %s", rel, e)
                if k < 2:  # no tokenised file: the split is absent
                    break
    return root


def prepare_multi30k(
    out_dir: str | os.PathLike,
    *,
    from_dir: str | os.PathLike | None = None,
    url: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    src_lang: str = "de",
    tgt_lang: str = "en",
    tokenize: bool | None = None,
    lowercase: bool | None = None,
    options: BuildOptions | None = None,
) -> dict:
    """Multi30k task 1 from the dataset's tokenised, lowercased files (see the module docstring)."""
    options = options or BuildOptions()
    if tokenize is False or lowercase is False:
        raise UserError(
            "prepare multi30k: uses the dataset's tokenised, lowercased files, so tokenisation and "
            "lowercasing cannot be turned off — use `prepare files` with the raw/*.gz files instead"
        )
    if from_dir is not None:
        root = Path(from_dir)
        if not root.is_dir():
            raise UserError(f"{root}: no such folder — give from_dir a copy of data/task1 of multi30k/dataset")
    else:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        root = _download_multi30k(
            url or MULTI30K_URL, cache, (src_lang, tgt_lang), tgt_lang, options.progress
        )
    splits, inputs = [], []
    for name, stem in MULTI30K_SPLITS.items():
        src_p = _first(_m30k_paths(root, stem, src_lang)[0])
        tgt_p = _first(_m30k_paths(root, stem, tgt_lang)[0])
        if src_p is None or tgt_p is None:
            if name in _MULTI30K_REQUIRED:
                missing = _m30k_paths(root, stem, src_lang if src_p is None else tgt_lang)[0][0]
                raise UserError(
                    f"{missing}: file not found — point from_dir at a copy of data/task1 of "
                    f"github.com/multi30k/dataset (with tok/ and raw/)"
                )
            continue
        src, tgt = read_parallel(src_p, tgt_p)
        inputs += [src_p, tgt_p]
        raw = None
        raw_p = _first(_m30k_paths(root, stem, tgt_lang)[1])
        if raw_p is not None:
            raw = read_lines(raw_p)
            inputs.append(raw_p)
            if len(raw) != len(tgt):
                raise UserError(
                    f"{raw_p}: has {len(raw)} lines but {tgt_p} has {len(tgt)} — the raw and tokenised "
                    f"references must match; restore the dataset's files"
                )
        splits.append(TextSplit(name, src, tgt, pretokenized=True, raw_ref=raw))
    pipeline = Pipeline(src_lang, tgt_lang, tokenize=True, lowercase=True, escape=True)
    settings: dict[str, Any] = {
        "src_lang": src_lang,
        "tgt_lang": tgt_lang,
        "tokenize": True,
        "lowercase": True,
        "from_dir": str(from_dir) if from_dir is not None else None,
        "url": None if from_dir is not None else (url or MULTI30K_URL),
    }
    return build_prepared(
        out_dir,
        source="multi30k",
        splits=splits,
        pipeline=pipeline,
        options=options,
        inputs=inputs,
        settings=settings,
    )
