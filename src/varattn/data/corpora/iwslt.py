"""IWSLT'14 German-English, prepared as fairseq's ``examples/translation/prepare-iwslt14.sh`` does.

From the archive ``de-en.tgz`` (its files ``train.tags.de-en.{de,en}`` and ``IWSLT14.TED*.{de,en}.xml``):

* train: drop the lines holding ``<url>``, ``<talkid>`` or ``<keywords>``; remove the ``<title>`` and
  ``<description>`` tags (keeping their text); Moses-tokenise; clean like Moses' ``clean-corpus-n.perl``
  (keep pairs with 1-175 tokens on both sides and a length ratio of at most 1.5); lowercase;
  **valid** = every 23rd cleaned pair (the 23rd, 46th, ...), **train** = the rest;
* test = dev2010 + dev2012 (TEDX) + tst2010 + tst2011 + tst2012: the ``<seg id="..">`` texts with ``’``
  replaced by ``'``, Moses-tokenised and lowercased.

Moses escaping (``&apos;``) is on, as in fairseq's files. ``from_dir`` may hold the archive, its unpacked
files (also inside a ``de-en/`` subfolder), or the output of fairseq's script, ``{train,valid,test}.{de,en}``
(optionally with ``.bpe`` versions: with ``bpe_merges=0`` those are used as they are).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
from pathlib import Path

from varattn.data.text.build import BuildOptions, TextSplit, build_prepared
from varattn.data.corpora.download import default_cache_dir, fetch
from varattn.data.textio import read_lines, read_parallel
from varattn.data.text.tokenize import Pipeline
from varattn.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "IWSLT14_URL",
    "TEST_SETS",
    "strip_train_tags",
    "extract_segments",
    "clean_pairs",
    "prepare_iwslt14",
]

IWSLT14_URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
_DROP_TAGS = ("<url>", "<talkid>", "<keywords>")
_STRIP_TAGS = ("<title>", "</title>", "<description>", "</description>")
_SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
_SEG_CLOSE = re.compile(r"\s*</seg>\s*")
VALID_EVERY = 23
MIN_LEN, MAX_LEN, MAX_RATIO = 1, 175, 1.5


def strip_train_tags(lines: list[str]) -> list[str]:
    """``train.tags`` lines -> text lines (fairseq's grep/sed chain)."""
    out = []
    for ln in lines:
        if any(tag in ln for tag in _DROP_TAGS):
            continue
        for tag in _STRIP_TAGS:
            ln = ln.replace(tag, "")
        out.append(ln)
    return out


def extract_segments(lines: list[str]) -> list[str]:
    """The texts of the ``<seg id="N">`` lines of an IWSLT xml file (fairseq's grep/sed chain)."""
    out = []
    for ln in lines:
        if "<seg id" not in ln:
            continue
        ln = _SEG_CLOSE.sub("", _SEG_OPEN.sub("", ln))
        out.append(ln.replace("\u2019", "'"))
    return out


def clean_pairs(src: list[str], tgt: list[str]) -> tuple[list[int], int, int]:
    """Indices of the tokenised pairs ``clean-corpus-n.perl -ratio 1.5 .. 1 175`` keeps, the number dropped
    for an empty side, and the number dropped for length or ratio."""
    keep, empty, bad = [], 0, 0
    for i, (s, t) in enumerate(zip(src, tgt)):
        ns, nt = len(s.split()), len(t.split())
        if ns == 0 or nt == 0:
            empty += 1
        elif (
            ns < MIN_LEN
            or nt < MIN_LEN
            or ns > MAX_LEN
            or nt > MAX_LEN
            or ns / nt > MAX_RATIO
            or nt / ns > MAX_RATIO
        ):
            bad += 1
        else:
            keep.append(i)
    return keep, empty, bad


def _find_file(root: Path, name: str) -> Path | None:
    for cand in (root / name, root / "de-en" / name):
        if cand.is_file():
            return cand
    return None


def _extract_archive(tgz: Path, dest: Path) -> Path:
    """Unpack the train.tags and xml files of ``tgz`` (flat) into ``dest``; return ``dest``."""
    wanted = re.compile(r"(train\.tags\.[a-z]{2}-[a-z]{2}\.[a-z]{2}|IWSLT14\.TEDX?\..*\.xml)")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tgz, "r:*") as tar:
            found = 0
            for m in tar:
                base = os.path.basename(m.name)
                if m.isfile() and wanted.fullmatch(base):
                    f = tar.extractfile(m)
                    assert f is not None
                    from varattn.data.textio import atomic_write_bytes

                    atomic_write_bytes(dest / base, f.read())
                    found += 1
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError(
            f"{tgz}: not a valid .tgz archive ({e}) — delete it and retry, or use from_dir=DIR"
        ) from None
    if not found:
        raise UserError(
            f"{tgz}: holds no IWSLT'14 files (train.tags.*, IWSLT14.TED*.xml) — check the archive"
        )
    return dest


def _locate(from_dir: Path | None, url: str | None, cache: Path, progress: bool) -> tuple[str, Path]:
    """("fairseq", folder) for fairseq's prepared layout, or ("raw", folder) with train.tags and xml files."""
    if from_dir is None:
        u = url or IWSLT14_URL
        sub = cache / "iwslt14" / hashlib.sha1(u.encode()).hexdigest()[:12]
        tgz = fetch(u, sub / "de-en.tgz", progress=progress)
        return "raw", _extract_archive(tgz, sub / "de-en")
    root = Path(from_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder — check from_dir")
    if (root / "train.de").is_file() or (root / "train.en").is_file():
        return "fairseq", root
    tags = _find_file(root, "train.tags.de-en.de") or _find_file(root, "train.tags.de-en.en")
    if tags is not None:
        return "raw", tags.parent
    tgz = root / "de-en.tgz"
    if tgz.is_file():
        key = hashlib.sha1(str(tgz.resolve()).encode()).hexdigest()[:12]
        return "raw", _extract_archive(tgz, cache / "iwslt14" / key / "de-en")
    has_eval = (root / "valid.de").is_file() or (root / "test.de").is_file()
    what = "only valid/test files" if has_eval else "no IWSLT'14 files"
    raise UserError(
        f"{root}: no training data (train.de/train.en, train.tags.de-en.*, or de-en.tgz), it has {what} — "
        f"run without from_dir to download IWSLT'14, or prepare files of a training set of your own "
        f"with valid_src={root / 'valid.de'}"
    )


def _prepare_raw(root: Path, src_lang: str, tgt_lang: str, pipeline: Pipeline, options: BuildOptions):
    from tqdm.auto import tqdm

    inputs: list[Path] = []
    paths = {}
    for lang in (src_lang, tgt_lang):
        p = root / f"train.tags.de-en.{lang}"
        if not p.is_file():
            raise UserError(f"{p}: file not found — the IWSLT'14 de-en archive holds it; download it again")
        paths[lang] = p
        inputs.append(p)
    tags = {lang: strip_train_tags(read_lines(p)) for lang, p in paths.items()}
    if len(tags[src_lang]) != len(tags[tgt_lang]):
        raise UserError(
            f"{paths[src_lang]}: has {len(tags[src_lang])} text lines but {paths[tgt_lang]} has "
            f"{len(tags[tgt_lang])} after removing tag lines — restore the archive's files"
        )

    def bar(xs, desc):
        return tqdm(xs, desc=desc, disable=None if options.progress else True, leave=False, mininterval=1)

    # fairseq: tokenise, clean, then lowercase (lowercasing does not change token counts, so we tokenise
    # and lowercase in one pass before cleaning).
    tok = {
        lang: [
            pipeline.pretokenize(x, "src" if lang == src_lang else "tgt")
            for x in bar(tags[lang], f"tokenise train.{lang}")
        ]
        for lang in (src_lang, tgt_lang)
    }
    keep, empty, bad = clean_pairs(tok[src_lang], tok[tgt_lang])
    valid_idx = [keep[k] for k in range(len(keep)) if (k + 1) % VALID_EVERY == 0]
    train_idx = [keep[k] for k in range(len(keep)) if (k + 1) % VALID_EVERY != 0]

    def pick(idx: list[int], name: str) -> TextSplit:
        return TextSplit(
            name,
            [tok[src_lang][i] for i in idx],
            [tok[tgt_lang][i] for i in idx],
            pretokenized=True,
            raw_ref=[" ".join(tags[tgt_lang][i].split()) for i in idx],
        )

    splits = [pick(train_idx, "train"), pick(valid_idx, "valid")]
    test: dict[str, list[str]] = {src_lang: [], tgt_lang: []}
    for name in TEST_SETS:
        for lang in (src_lang, tgt_lang):
            fname = f"IWSLT14.{name}.de-en.{lang}.xml"
            p = root / fname
            if not p.is_file():
                raise UserError(
                    f"{p}: file not found — the IWSLT'14 de-en archive holds it; download it again"
                )
            inputs.append(p)
            test[lang].append(extract_segments(read_lines(p)))
        a, b = test[src_lang][-1], test[tgt_lang][-1]
        if len(a) != len(b):
            raise UserError(
                f"{root / f'IWSLT14.{name}.de-en.{src_lang}.xml'}: has {len(a)} segments but "
                f"{root / f'IWSLT14.{name}.de-en.{tgt_lang}.xml'} has {len(b)} — restore the archive's files"
            )
    src_raw = [x for part in test[src_lang] for x in part]
    tgt_raw = [x for part in test[tgt_lang] for x in part]
    splits.append(
        TextSplit(
            "test",
            [pipeline.pretokenize(x, "src") for x in bar(src_raw, f"tokenise test.{src_lang}")],
            [pipeline.pretokenize(x, "tgt") for x in bar(tgt_raw, f"tokenise test.{tgt_lang}")],
            pretokenized=True,
            raw_ref=[" ".join(x.split()) for x in tgt_raw],
        )
    )
    cleaning = {
        "pairs_in": len(tok[src_lang]),
        "dropped_empty": empty,
        "dropped_clean": bad,
        "kept": len(keep),
        "valid_every": VALID_EVERY,
        "min_len": MIN_LEN,
        "max_len": MAX_LEN,
        "max_ratio": MAX_RATIO,
    }
    return splits, inputs, cleaning


def _prepare_fairseq(root: Path, src_lang: str, tgt_lang: str, options: BuildOptions):
    use_bpe = options.bpe_merges == 0 and all(
        (root / f"{s}.{lang}.bpe").is_file()
        for s in ("train", "valid", "test")
        for lang in (src_lang, tgt_lang)
    )
    suffix = ".bpe" if use_bpe else ""
    splits, inputs = [], []
    for name in ("train", "valid", "test"):
        s, t = root / f"{name}.{src_lang}{suffix}", root / f"{name}.{tgt_lang}{suffix}"
        if name != "test" or s.is_file() or t.is_file():
            src, tgt = read_parallel(s, t)
            splits.append(TextSplit(name, src, tgt, pretokenized=True))
            inputs += [s, t]
    return splits, inputs, use_bpe


def prepare_iwslt14(
    out_dir: str | os.PathLike,
    *,
    from_dir: str | os.PathLike | None = None,
    url: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    src_lang: str = "de",
    tgt_lang: str = "en",
    tokenize: bool = True,
    lowercase: bool = True,
    options: BuildOptions | None = None,
) -> dict:
    """IWSLT'14 De-En (see the module docstring); returns the report."""
    options = options or BuildOptions()
    if {src_lang, tgt_lang} != {"de", "en"}:
        raise UserError(f"prepare iwslt14: languages {src_lang}-{tgt_lang} — IWSLT'14 here is de-en or en-de")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    layout, root = _locate(Path(from_dir) if from_dir is not None else None, url, cache, options.progress)
    settings = {
        "src_lang": src_lang,
        "tgt_lang": tgt_lang,
        "from_dir": str(from_dir) if from_dir is not None else None,
        "url": None if from_dir is not None else (url or IWSLT14_URL),
        "layout": layout,
    }
    extra: dict = {}
    if layout == "raw":
        pipeline = Pipeline(src_lang, tgt_lang, tokenize=tokenize, lowercase=lowercase, escape=True)
        splits, inputs, cleaning = _prepare_raw(root, src_lang, tgt_lang, pipeline, options)
        extra["cleaning"] = cleaning
    else:
        # fairseq's files are tokenised and lowercased already; the pipeline records that for raw input.
        pipeline = Pipeline(src_lang, tgt_lang, tokenize=True, lowercase=True, escape=True)
        splits, inputs, used_bpe = _prepare_fairseq(root, src_lang, tgt_lang, options)
        settings["used_bpe_files"] = used_bpe
        if used_bpe:
            extra["notes"] = [
                "the .bpe files were used as they are; their BPE codes are unknown, so raw input to "
                "`varattn translate` is not BPE-segmented"
            ]
    settings.update(tokenize=pipeline.tokenize, lowercase=pipeline.lowercase)
    return build_prepared(
        out_dir,
        source="iwslt14",
        splits=splits,
        pipeline=pipeline,
        options=options,
        inputs=inputs,
        settings=settings,
        extra_meta=extra,
    )
