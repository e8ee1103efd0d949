"""Reading text with checks: each bad input gives its one-line error."""

import gzip

import pytest

from varattn.data.textio import read_lines, read_parallel, sha256_file, write_lines
from varattn.errors import UserError


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and " — " in msg
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(UserError) as e:
        read_lines(tmp_path / "nope.de")
    assert one_line(e).startswith(f"{tmp_path / 'nope.de'}: file not found")


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        read_lines(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.en"
    p.write_bytes(b"")
    with pytest.raises(UserError) as e:
        read_lines(p)
    assert one_line(e).startswith(f"{p}: file is empty")
    assert read_lines(p, allow_empty=True) == []


def test_empty_gz_file(tmp_path):
    p = tmp_path / "empty.en.gz"
    with gzip.open(p, "wb"):
        pass
    with pytest.raises(UserError, match="file is empty"):
        read_lines(p)


def test_invalid_utf8_names_file_and_line(tmp_path):
    p = tmp_path / "bad.de"
    p.write_bytes("eins\nzwei\ndrei \xe4\n".encode("utf-8") + b"vier \xff\xfe kaputt\nfunf\n")
    with pytest.raises(UserError) as e:
        read_lines(p)
    assert one_line(e).startswith(f"{p}:4: invalid UTF-8")


def test_invalid_utf8_on_first_line_of_gz(tmp_path):
    p = tmp_path / "bad.de.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\xc3(\nok\n")
    with pytest.raises(UserError, match=r"bad\.de\.gz:1: invalid UTF-8"):
        read_lines(p)


def test_corrupt_gz(tmp_path):
    p = tmp_path / "corrupt.en.gz"
    p.write_bytes(b"this is not gzip at all")
    with pytest.raises(UserError, match="not a valid gzip file"):
        read_lines(p)


def test_unequal_line_counts_name_both_files_and_counts(tmp_path):
    a, b = tmp_path / "train.de", tmp_path / "train.en"
    a.write_text("a\nb\nc\n")
    b.write_text("x\ny\n")
    with pytest.raises(UserError) as e:
        read_parallel(a, b)
    msg = one_line(e)
    assert str(a) in msg and str(b) in msg and "3 lines" in msg and "has 2" in msg


def test_line_endings_and_unicode_separators(tmp_path):
    p = tmp_path / "crlf.txt"
    # \x85 and \u2028 are line breaks for str.splitlines but not for us: the count must stay 3.
    p.write_bytes("\ufeffone\r\ntwo \u2028 still two\x85\r\n\r\n".encode("utf-8"))
    assert read_lines(p) == ["one", "two \u2028 still two\x85", ""]
    q = tmp_path / "nonl.txt"
    q.write_text("a\nb")
    assert read_lines(q) == ["a", "b"]


def test_gz_round_trip_and_parallel(tmp_path):
    a, b = tmp_path / "x.de.gz", tmp_path / "x.en"
    with gzip.open(a, "wt", encoding="utf-8") as f:
        f.write("ein haus\nzwei häuser\n")
    write_lines(b, ["a house", "two houses"])
    assert read_parallel(a, b) == (["ein haus", "zwei häuser"], ["a house", "two houses"])
    assert len(sha256_file(a)) == 64
