"""IWSLT'14 preparation as fairseq's prepare-iwslt14.sh, on a tiny fake de-en folder."""

import functools
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from varattn.data.corpora.recipes import prepare
from varattn.data.text.prepared import load_prepared
from varattn.data.corpora.iwslt import TEST_SETS, clean_pairs, extract_segments, strip_train_tags
from varattn.errors import UserError


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


SHARED = Path(__file__).resolve().parents[2] / "shared"

HEADER = [
    '<doc docid="1" genre="lectures">',
    "<url>http://www.ted.com/talks/x.html</url>",
    "<keywords>talks, science</keywords>",
    "<speaker>Jane Doe</speaker>",
    "<talkid>1</talkid>",
    "<title>Titel {k}</title>",
    "<description>Beschreibung {k}</description>",
]


def _train_lines(lang: str, n: int) -> list[str]:
    """n sentence pairs, the 5th one over-long-by-ratio, the 9th empty, the 13th over 175 tokens."""
    out = []
    for i in range(n):
        if i % 20 == 4:
            out.append("Ja." if lang == "de" else "Well, yes, that is what I said, isn't it, my friend?")
        elif i % 20 == 8:
            out.append("" if lang == "de" else "(Applause)")
        elif i % 20 == 12:
            out.append(" ".join(["Wort"] * 180) if lang == "de" else " ".join(["word"] * 180))
        else:
            out.append(f"Satz Nummer {i}, sagt er." if lang == "de" else f"Sentence number {i}, it's said.")
    return out


def write_fake_iwslt(folder: Path, n: int = 100) -> None:
    """train.tags.de-en.{de,en} with tag lines, and the five IWSLT14.TED*.xml dev/test files."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        body = _train_lines(lang, n)
        lines = (
            [h.format(k=lang) for h in HEADER]
            + body[: n // 2]
            + [h.format(k=lang) for h in HEADER]
            + body[n // 2 :]
        )
        (folder / f"train.tags.de-en.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for t, name in enumerate(TEST_SETS):
            segs = [
                f'<seg id="{s}"> Test {t} Satz {s} – don\u2019t </seg>'
                if lang == "de"
                else f'<seg id="{s}"> Test {t} sentence {s} don\u2019t. </seg>'
                for s in range(1, 4)
            ]
            xml = [
                '<?xml version="1.0" encoding="UTF-8"?>',
                "<mteval>",
                f'<srcset setid="{name}">',
                '<doc docid="1">',
                "<talkid>1</talkid>",
                *segs,
                "</doc>",
                "</srcset>",
                "</mteval>",
            ]
            (folder / f"IWSLT14.{name}.de-en.{lang}.xml").write_text("\n".join(xml) + "\n", encoding="utf-8")


def test_strip_tags_and_segments():
    lines = [h.format(k="x") for h in HEADER] + ["Hallo Welt."]
    assert strip_train_tags(lines) == [
        '<doc docid="1" genre="lectures">',
        "<speaker>Jane Doe</speaker>",
        "Titel x",
        "Beschreibung x",
        "Hallo Welt.",
    ]
    assert extract_segments(['<seg id="7">  Don\u2019t go.  </seg>', "<talkid>1</talkid>"]) == ["Don't go."]


def test_clean_pairs():
    keep, empty, bad = clean_pairs(
        ["a b", "", "a", "a b c d", " ".join("x" * 176)], ["a b c", "x", "a b", "a b c", "y"]
    )
    assert keep == [0, 3] and empty == 1 and bad == 2  # "a" vs "a b": ratio 2 > 1.5


def check_fake_prepared(out: Path, report: dict, n: int = 100) -> None:
    c = report["cleaning"]
    # 2 header blocks: the <doc>, <speaker>, title and description lines stay (as fairseq keeps them)
    assert c["pairs_in"] == n + 2 * 4
    assert c["dropped_empty"] == n // 20  # the empty German lines
    assert c["dropped_clean"] == 2 * (n // 20)  # ratio and length
    kept = c["kept"]
    assert report["splits"]["valid"]["pairs"] == kept // 23
    assert report["splits"]["train"]["pairs"] == kept - kept // 23
    assert report["splits"]["test"]["pairs"] == 3 * len(TEST_SETS)
    data = load_prepared(out)
    train_txt = (out / "train.src.txt").read_text().splitlines()
    valid_txt = (out / "valid.src.txt").read_text().splitlines()
    # the 23rd kept line goes to valid; lowercased, tokenised, Moses-escaped
    # the 23rd kept pair: 4 header lines, then sentences 0-21 less the dropped 4, 8 and 12
    assert valid_txt[0] == "satz nummer 21 , sagt er ."
    everything = valid_txt + train_txt
    assert "titel de" in everything and "beschreibung de" in everything  # tags removed, text kept
    assert not [ln for ln in everything if "ted.com" in ln or "science" in ln or "talkid" in ln]
    numbered = lambda lines: {ln for ln in lines if ln.startswith("satz nummer")}  # noqa: E731
    assert not numbered(valid_txt) & numbered(train_txt)
    assert len(numbered(valid_txt)) + len(numbered(train_txt)) == n - 3 * (n // 20)
    assert data.split("test").references()[0] == "test 0 sentence 1 don &apos;t ."
    assert (out / "test.src.txt").read_text().splitlines()[
        0
    ] == "test 0 satz 1 – don &apos; t"  # Moses' German rule
    assert data.split("test").raw_references()[0] == "Test 0 sentence 1 don't."
    assert data.split("valid").raw_references()[0] == "Sentence number 21, it's said."


def test_prepare_iwslt14_from_unpacked_folder(tmp_path):
    write_fake_iwslt(tmp_path / "orig" / "de-en")
    out = tmp_path / "prep"
    report = prepare("iwslt14", out, from_dir=tmp_path / "orig", cache_dir=tmp_path / "cache", progress=False)
    assert report["settings"]["layout"] == "raw" and report["pipeline"]["escape"] is True
    check_fake_prepared(out, report)


def test_prepare_iwslt14_from_archive_with_bpe(tmp_path):
    write_fake_iwslt(tmp_path / "x" / "de-en")
    (tmp_path / "orig").mkdir()
    with tarfile.open(tmp_path / "orig" / "de-en.tgz", "w:gz") as tar:
        tar.add(tmp_path / "x" / "de-en", arcname="de-en")
    out = tmp_path / "prep"
    report = prepare(
        "iwslt14",
        out,
        from_dir=tmp_path / "orig",
        cache_dir=tmp_path / "cache",
        bpe_merges=30,
        max_len=8,
        progress=False,
    )
    assert (out / "bpe.codes").is_file() and report["pipeline"]["bpe_codes"] == "bpe.codes"
    assert report["splits"]["train"]["dropped_long"] > 0
    assert report["splits"]["test"]["dropped_long"] == 0  # evaluation splits are kept whole


def test_prepare_iwslt14_by_download(tmp_path):
    write_fake_iwslt(tmp_path / "x" / "de-en")
    www = tmp_path / "www"
    www.mkdir()
    with tarfile.open(www / "de-en.tgz", "w:gz") as tar:
        tar.add(tmp_path / "x" / "de-en", arcname="de-en")
    handler = functools.partial(QuietHandler, directory=str(www))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/de-en.tgz"
        out = tmp_path / "prep"
        report = prepare("iwslt14", out, url=url, cache_dir=tmp_path / "cache", progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert report["settings"]["url"] == url
    check_fake_prepared(out, report)


def test_corrupt_archive(tmp_path):
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "de-en.tgz").write_bytes(b"not an archive")
    with pytest.raises(UserError, match=r"de-en\.tgz: not a valid \.tgz archive"):
        prepare(
            "iwslt14", tmp_path / "o", from_dir=tmp_path / "orig", cache_dir=tmp_path / "c", progress=False
        )


def test_unequal_tag_files(tmp_path):
    write_fake_iwslt(tmp_path / "orig")
    p = tmp_path / "orig" / "train.tags.de-en.en"
    p.write_text(p.read_text() + "one more line\n")
    with pytest.raises(
        UserError, match=r"train\.tags\.de-en\.de: has 108 text lines but .*train\.tags\.de-en\.en has 109"
    ):
        prepare(
            "iwslt14", tmp_path / "o", from_dir=tmp_path / "orig", cache_dir=tmp_path / "c", progress=False
        )


def test_fairseq_layout_uses_bpe_files(tmp_path):
    d = tmp_path / "fs"
    d.mkdir()
    for split, k in (("train", 30), ("valid", 5), ("test", 5)):
        for lang in ("de", "en"):
            words = [f"{lang}wort{i}" for i in range(k)]
            (d / f"{split}.{lang}").write_text("\n".join(f"{w} ende" for w in words) + "\n")
            (d / f"{split}.{lang}.bpe").write_text("\n".join(f"{w[:4]}@@ {w[4:]} ende" for w in words) + "\n")
    out = tmp_path / "o"
    report = prepare("iwslt14", out, from_dir=d, progress=False)
    assert report["settings"]["used_bpe_files"] is True and report["notes"]
    assert (out / "train.tgt.txt").read_text().splitlines()[0] == "enwo@@ rt0 ende"
    assert (out / "train.ref.tgt").read_text().splitlines()[0] == "enwort0 ende"


def test_shared_iwslt_without_train_says_what_to_do(tmp_path):
    shared = SHARED / "data" / "iwslt14-deen"
    if not shared.is_dir():
        pytest.skip(f"{shared} is absent (the shared data folder sits beside the repository)")
    with pytest.raises(UserError) as e:
        prepare("iwslt14", tmp_path / "o", from_dir=shared, progress=False)
    msg = str(e.value)
    assert (
        "\n" not in msg and "no training data" in msg and "only valid/test" in msg and "prepare files" in msg
    )


def test_missing_train_in_empty_folder(tmp_path):
    with pytest.raises(UserError, match="no training data .* no IWSLT'14 files"):
        prepare("iwslt14", tmp_path / "o", from_dir=tmp_path, progress=False)
