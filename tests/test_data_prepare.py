"""`prepare` end to end: folder layout, counts, errors, and reading it back."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from varattn.data.corpora.recipes import prepare
from varattn.data.text.prepared import load_prepared
from varattn.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared"
M30K = SHARED / "data" / "multi30k"
SPLIT_FILES = ("npz", "src.txt", "tgt.txt", "ref.tgt")


def need_multi30k():
    if not (M30K / "tok" / "train.lc.norm.tok.de").is_file():
        pytest.skip(f"{M30K} is absent (the shared data folder sits beside the repository)")


def head(src: Path, dst: Path, n: int, start: int = 0) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines()[start : start + n]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


def decoded_rows(data, name):
    sp = data.split(name)
    return [" ".join(data.src_vocab.decode(sp.src(i), strip_specials=False)) for i in range(len(sp))]


@pytest.fixture(scope="module")
def m30k_sample(tmp_path_factory):
    need_multi30k()
    d = tmp_path_factory.mktemp("sample")
    files = {}
    for split, n, start in (("train", 300, 0), ("valid", 60, 0), ("test", 50, 0)):
        stem = {"train": "train", "valid": "val", "test": "test_2016_flickr"}[split]
        for lang in ("de", "en"):
            files[f"{split}_{'src' if lang == 'de' else 'tgt'}"] = head(
                M30K / "tok" / f"{stem}.lc.norm.tok.{lang}", d / f"{split}.{lang}", n, start
            )
    out = d / "prepared"
    report = prepare("files", out, **files, src_lang="de", tgt_lang="en", bpe_merges=200, progress=False)
    return out, report, files


def test_files_layout_complete(m30k_sample):
    out, report, files = m30k_sample
    names = {p.name for p in out.iterdir()}
    expected = {"meta.json", "vocab.src.json", "vocab.tgt.json", "bpe.codes"}
    expected |= {f"{s}.{ext}" for s in ("train", "valid", "test") for ext in SPLIT_FILES}
    assert names == expected
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format"] == 1 and meta["source"] == "files"
    assert [i["path"] for i in meta["inputs"]] == [
        str(Path(files[k]).resolve())
        for k in ("train_src", "train_tgt", "valid_src", "valid_tgt", "test_src", "test_tgt")
    ]
    assert all(len(i["sha256"]) == 64 for i in meta["inputs"])
    assert meta["settings"]["bpe_merges"] == 200 and 0 < meta["bpe_merges_learned"] <= 200
    assert meta["pipeline"]["bpe_codes"] == "bpe.codes"
    assert meta["splits"]["train"] == report["splits"]["train"]
    assert set(meta["splits"]["train"]) >= {
        "pairs",
        "dropped_empty",
        "dropped_long",
        "src_tokens",
        "tgt_tokens",
    }
    assert meta["splits"]["train"]["pairs"] == 300 and meta["splits"]["test"]["pairs"] == 50
    with np.load(out / "train.npz") as z:
        assert z["src"].dtype == np.int32 and z["src_offsets"].dtype == np.int64
        assert len(z["tgt_offsets"]) == 301


def test_npz_decodes_back_to_text(m30k_sample):
    out, _, _ = m30k_sample
    data = load_prepared(out)
    assert data.split_names == ["train", "valid", "test"]
    train = data.split("train")
    assert decoded_rows(data, "train") == (out / "train.src.txt").read_text().splitlines()
    tgt = [" ".join(data.tgt_vocab.decode(train.tgt(i))) for i in range(len(train))]
    assert tgt == (out / "train.tgt.txt").read_text().splitlines()
    assert any("@@" in ln for ln in tgt)
    # evaluation splits: unknown pieces become <unk>
    valid_txt = [ln.split() for ln in (out / "valid.src.txt").read_text().splitlines()]
    expected = [" ".join(t if t in data.src_vocab else "<unk>" for t in ln) for ln in valid_txt]
    assert decoded_rows(data, "valid") == expected
    # references: BPE removed, otherwise the input
    valid = data.split("valid")
    assert valid.references() == (M30K / "tok" / "val.lc.norm.tok.en").read_text().splitlines()[:60]
    assert valid.raw_references() is None and valid.gold_alignments() is None
    assert np.array_equal(valid.src_lengths, [len(t) for t in valid_txt])
    assert data.pipeline.decode_target(data.tgt_vocab.decode(valid.tgt(0))) == valid.references()[0]
    assert (
        data.pipeline.encode_source((M30K / "tok" / "val.lc.norm.tok.de").read_text().splitlines()[0])
        == valid_txt[0]
    )


def test_copy_essentials(m30k_sample, tmp_path):
    out, _, _ = m30k_sample
    data = load_prepared(out)
    copied = data.copy_essentials(tmp_path / "run")
    assert sorted(p.name for p in copied) == ["bpe.codes", "meta.json", "vocab.src.json", "vocab.tgt.json"]
    small = load_prepared(tmp_path / "run")
    assert small.src_vocab == data.src_vocab and small.tgt_vocab == data.tgt_vocab
    assert small.pipeline.encode_source("ein mann schläft .") == data.pipeline.encode_source(
        "ein mann schläft ."
    )
    assert small.split_names == data.split_names and not small.has_split("train") and data.has_split("train")
    with pytest.raises(UserError, match=r"train\.npz: split file missing"):
        small.split("train")


def test_multi30k_from_shared(tmp_path):
    need_multi30k()
    report = prepare("multi30k", tmp_path / "m", from_dir=M30K, max_len=15, progress=False)
    s = report["splits"]
    assert list(s) == ["train", "valid", "test", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr"]
    assert (
        s["valid"]["pairs"] == 1014 and s["test"]["pairs"] == 1000 and s["test_2017_mscoco"]["pairs"] == 461
    )
    assert s["train"]["pairs"] + s["train"]["dropped_long"] == 29000 and s["train"]["dropped_long"] > 0
    assert s["valid"]["dropped_long"] == 0
    assert (tmp_path / "m" / "test_2018_flickr.raw.tgt").is_file()


def write(p: Path, lines, gz=False) -> Path:
    data = "".join(f"{x}\n" for x in lines).encode("utf-8")
    p.write_bytes(gzip.compress(data) if gz else data)
    return p


def test_empty_and_long_pairs_dropped_and_counted(tmp_path):
    src = ["a b c", "", "d e", "f " * 30, "g h", "  ", "i j k"]
    tgt = ["x y", "z", "", "u v", "w " * 12, "q", "r s"]
    files = dict(
        train_src=write(tmp_path / "tr.s.gz", src, gz=True),
        train_tgt=write(tmp_path / "tr.t", tgt),
        valid_src=write(tmp_path / "va.s", src),
        valid_tgt=write(tmp_path / "va.t", tgt),
    )
    r = prepare("files", tmp_path / "o", **files, max_len=10, progress=False)
    assert r["splits"]["train"] == {**r["splits"]["train"], "pairs": 2, "dropped_empty": 3, "dropped_long": 2}
    assert r["splits"]["valid"] == {**r["splits"]["valid"], "pairs": 4, "dropped_empty": 3, "dropped_long": 0}
    assert (tmp_path / "o" / "train.src.txt").read_text() == "a b c\ni j k\n"
    r = prepare("files", tmp_path / "o", **files, max_len=10, filter_eval=True, progress=False)  # replaces
    assert r["splits"]["valid"]["pairs"] == 2 and r["splits"]["valid"]["dropped_long"] == 2
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["splits"]["valid"]["dropped_long"] == 2 and meta["settings"]["filter_eval"] is True


def test_files_tokenize_lowercase(tmp_path):
    files = dict(
        train_src=write(tmp_path / "a", ["Hello, World!", "It's fine."]),
        train_tgt=write(tmp_path / "b", ["Hallo, Welt!", "Gut so."]),
        valid_src=write(tmp_path / "c", ["Hello!"]),
        valid_tgt=write(tmp_path / "d", ["Hallo!"]),
    )
    r = prepare(
        "files",
        tmp_path / "o",
        **files,
        tokenize=True,
        lowercase=True,
        src_lang="en",
        tgt_lang="de",
        progress=False,
    )
    assert (tmp_path / "o" / "train.src.txt").read_text() == "hello , world !\nit 's fine .\n"
    assert r["pipeline"]["tokenize"] and r["pipeline"]["lowercase"] and not r["pipeline"]["escape"]
    assert "test" not in r["splits"]


@pytest.mark.parametrize("problem", ["unequal", "missing", "empty", "utf8", "no_valid_tgt"])
def test_bad_inputs_through_prepare(tmp_path, problem):
    files = dict(
        train_src=write(tmp_path / "tr.de", ["a", "b", "c"]),
        train_tgt=write(tmp_path / "tr.en", ["x", "y", "z"]),
        valid_src=write(tmp_path / "va.de", ["a"]),
        valid_tgt=write(tmp_path / "va.en", ["x"]),
    )
    if problem == "unequal":
        write(tmp_path / "tr.en", ["x", "y"])
        match = rf"{tmp_path / 'tr.de'}: has 3 lines but {tmp_path / 'tr.en'} has 2"
    elif problem == "missing":
        files["valid_tgt"] = tmp_path / "nope.en"
        match = rf"{tmp_path / 'nope.en'}: file not found"
    elif problem == "empty":
        (tmp_path / "va.de").write_bytes(b"")
        match = rf"{tmp_path / 'va.de'}: file is empty"
    elif problem == "utf8":
        (tmp_path / "tr.en").write_bytes(b"x\ny\xe9\nz\n")
        match = rf"{tmp_path / 'tr.en'}:2: invalid UTF-8"
    else:
        del files["valid_tgt"]
        match = "valid_tgt is missing"
    with pytest.raises(UserError, match=match) as e:
        prepare("files", tmp_path / "o", **files, progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "o").exists()


def test_synthetic_prepare_with_alignments(tmp_path):
    out = tmp_path / "syn"
    r = prepare("synthetic", out, pairs=400, seed=3, progress=False)
    assert {k: v["pairs"] for k, v in r["splits"].items()} == {"train": 360, "valid": 20, "test": 20}
    assert r["inputs"] == [] and r["settings"]["seed"] == 3
    data = load_prepared(out)
    for name in ("train", "test"):
        sp = data.split(name)
        refs = sp.references()
        gold = sp.gold_alignments()
        assert len(gold) == len(sp) == len(refs)
        for k, links in enumerate(gold):
            assert links and all(0 <= i < len(sp.src(k)) and 0 <= j < len(refs[k].split()) for i, j in links)
    again = prepare("synthetic", tmp_path / "syn2", pairs=400, seed=3, progress=False)
    assert (out / "train.src.txt").read_bytes() == (tmp_path / "syn2" / "train.src.txt").read_bytes()
    assert again["splits"] == r["splits"]


def test_out_dir_guard(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and is not a prepared data folder"):
        prepare("synthetic", busy, pairs=50, progress=False)
    prepare("synthetic", tmp_path / "p", pairs=50, progress=False)
    (tmp_path / "p" / "checkpoint_best.safetensors").write_text("x")
    with pytest.raises(UserError, match="holds files that prepare did not write"):
        prepare("synthetic", tmp_path / "p", pairs=50, progress=False)


def test_option_errors(tmp_path):
    with pytest.raises(UserError, match="unknown source 'wmt'"):
        prepare("wmt", tmp_path / "o")
    with pytest.raises(UserError, match="bpe_merges=-1"):
        prepare("synthetic", tmp_path / "o", pairs=50, bpe_merges=-1, progress=False)
    with pytest.raises(UserError, match="cannot be turned off"):
        prepare("multi30k", tmp_path / "o", from_dir=tmp_path, tokenize=False)
    with pytest.raises(UserError, match=r"tok/train\.lc\.norm\.tok\.de: file not found"):
        prepare("multi30k", tmp_path / "o", from_dir=tmp_path, progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "p"
    prepare("synthetic", out, pairs=60, progress=False)
    return out


def test_load_errors(small, tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        load_prepared(tmp_path / "none")
    with pytest.raises(UserError, match=r"meta\.json: not found"):
        load_prepared(tmp_path)
    data = load_prepared(small)
    with pytest.raises(UserError, match="no split 'dev' — available splits: train, valid, test"):
        data.split("dev")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "ids", "vocab", "meta"])
def test_corrupt_folder(small, tmp_path, damage):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(small, d)
    if damage == "truncate":
        b = (d / "valid.npz").read_bytes()
        (d / "valid.npz").write_bytes(b[: len(b) // 2])
        match = r"valid\.npz: not a valid split file"
    elif damage == "garbage":
        (d / "valid.npz").write_bytes(b"garbage")
        match = r"valid\.npz: not a valid split file"
    elif damage == "ids":
        with np.load(d / "valid.npz") as z:
            arrays = dict(z)
        arrays["tgt"][0] = 10**6
        np.savez(d / "valid.npz", **arrays)
        match = "tgt ids outside the vocabulary"
    elif damage == "vocab":
        (d / "vocab.tgt.json").write_text('{"format": "varattn-vocab", "version": 1,\n "tokens": [1, 2]}')
        match = r"vocab\.tgt\.json: 'tokens' must be a list of strings"
    else:
        (d / "meta.json").write_text('{"format": 1,\n "splits": {}\n "x": 1}')
        match = r"meta\.json:3: invalid JSON"
    with pytest.raises(UserError, match=match):
        load_prepared(d).split("valid")


def test_recipe_declares_its_flags(tmp_path, monkeypatch, capsys):
    """A recipe registered here alone, with an option of its own and one of PrepareRequest's, gets both as
    `varattn prepare` flags, receives their values, and refuses a flag it does not read."""
    from varattn.cli.main import build_parser, main
    from varattn.data.corpora import recipes

    monkeypatch.setattr(recipes, "RECIPES", dict(recipes.RECIPES))
    monkeypatch.setattr(recipes, "RECIPE_OPTIONS", dict(recipes.RECIPE_OPTIONS))
    seen = {}

    @recipes.recipe("toy", options=("seed", recipes.Option("depth", "how many tens of pairs", "int")))
    def _toy(out_dir, r):
        seen.update(depth=r.extra["depth"], seed=r.seed, max_len=r.build.max_len)
        return recipes.prepare_synthetic(out_dir, pairs=10 * r.extra["depth"], seed=r.seed,
                                         options=r.build_options())

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["prepare"]
    assert "toy: how many tens of pairs" in sub.format_help()
    assert "toy" in sub.parse_args(["toy", "--out", "o"]).source

    out = tmp_path / "toy"
    assert main(["prepare", "toy", "--out", str(out), "--depth", "3", "--seed", "5", "--max-len", "40"]) == 0
    assert seen == {"depth": 3, "seed": 5, "max_len": 40}
    splits = json.loads((out / "meta.json").read_text())["splits"]
    assert sum(splits[name]["pairs"] for name in ("train", "valid", "test")) == 30

    capsys.readouterr()
    assert main(["prepare", "toy", "--out", str(tmp_path / "no"), "--pairs", "50"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "toy" in error and "--pairs" in error
    assert "--depth" in error and "--seed" in error
    with pytest.raises(UserError, match="prepare synthetic: does not read lang"):
        recipes.prepare("synthetic", tmp_path / "lib", lang="fre")
