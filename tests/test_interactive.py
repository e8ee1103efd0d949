"""Line-by-line translation (issue 14): `varattn translate` answers each line of standard input while the
pipe is still open, numbers n-best entries across batches as one file would, and reports bad UTF-8 with
its line number; the reader gives whatever complete lines a stream holds."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys

import pytest

from varattn.errors import UserError

from conftest import tiny_config

WAIT = 300  # seconds: a guard against a hang, not a speed requirement


@pytest.fixture(scope="module")
def run(synthetic_data, tmp_path_factory, one_thread):
    from varattn.training.trainer import train

    root = tmp_path_factory.mktemp("interactive")
    train(tiny_config(synthetic_data, "soft", epochs=3), root / "soft")
    return root / "soft"


@pytest.fixture(scope="module")
def sources(synthetic_data) -> list[str]:
    return (synthetic_data / "test.src.txt").read_text(encoding="utf-8").splitlines()[:5]


def _varattn(*args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "varattn", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def _read_line(process: subprocess.Popen) -> bytes:
    ready, _, _ = select.select([process.stdout], [], [], WAIT)
    assert ready, f"no output within {WAIT} s while the input pipe stayed open"
    return process.stdout.readline()


@pytest.mark.slow
def test_each_line_is_translated_before_stdin_closes(run, sources):
    import varattn

    model = varattn.load(run, device="cpu")
    expected = [model.translate(source, beam=1) for source in sources[:2]]  # one at a time, as typed
    process = _varattn("translate", str(run), "--device", "cpu")
    try:
        for source, translation in zip(sources, expected):
            process.stdin.write((source + "\n").encode("utf-8"))
            process.stdin.flush()  # the pipe stays open: the answer must come now
            assert _read_line(process).decode("utf-8").rstrip("\n") == translation.text
        process.stdin.close()
        assert process.wait(WAIT) == 0
        assert process.stdout.read() == b""
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_batches_of_stdin_number_nbest_entries_as_a_whole_file_does(run, sources, tmp_path):
    text = "".join(line + "\n" for line in sources)
    whole = tmp_path / "in.txt"
    whole.write_text(text, encoding="utf-8")
    options = ["--beam", "2", "--n-best", "2", "--scores", "--device", "cpu"]
    from_file = subprocess.run([sys.executable, "-m", "varattn", "translate", str(run), "--input", str(whole),
                                *options], capture_output=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    streamed = subprocess.run([sys.executable, "-m", "varattn", "translate", str(run), "--buffer", "2", *options],
                              input=text.encode("utf-8"), capture_output=True, check=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = streamed.stdout.decode("utf-8").splitlines()
    assert {line.split(" ||| ")[0] for line in lines} == {str(i) for i in range(len(sources))}
    # batches of 2 decode in other batches than the whole file: texts agree, scores to float precision
    for ours, theirs in zip(lines, from_file.stdout.decode("utf-8").splitlines(), strict=True):
        (i, a, x), (j, b, y) = ours.split(" ||| "), theirs.split(" ||| ")
        assert (i, a) == (j, b) and float(x) == pytest.approx(float(y), abs=1e-4)


@pytest.mark.slow
def test_bad_utf8_on_stdin_is_one_line_with_its_line_number(run):
    process = subprocess.run([sys.executable, "-m", "varattn", "translate", str(run), "--device", "cpu"],
                             input=b"me fabon .\nbad \xff byte\n", capture_output=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert process.returncode == 2
    error = process.stderr.decode("utf-8").strip()
    assert "\n" not in error and "<stdin>:2: invalid UTF-8 (byte 0xff)" in error
    assert len(process.stdout.decode("utf-8").splitlines()) == 1  # the good first line was answered


class _Chunks(io.RawIOBase):
    """A stream whose reads return the given chunks one by one, as a pipe delivers writes."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = list(chunks)

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def test_line_batches_yield_complete_lines_as_they_arrive():
    from varattn.decoding.translate import line_batches

    stream = _Chunks([b"\xef\xbb\xbfone\r\ntw", b"o\nthree\nfour\nfive\n", b"six", b" seven\n", b"last"])
    assert list(line_batches(stream, 2)) == [["one"], ["two", "three"], ["four", "five"], ["six seven"], ["last"]]
    assert list(line_batches(_Chunks([b"a\n\nb\n"]), 64)) == [["a", "", "b"]]
    with pytest.raises(UserError, match=r"<stdin>:3: invalid UTF-8"):
        list(line_batches(_Chunks([b"a\nb\n", b"\xc3(\n"]), 8))
    with pytest.raises(UserError, match="buffer 0"):
        list(line_batches(_Chunks([]), 0))


@pytest.mark.slow
def test_a_terminal_gets_a_hint_and_each_line_answered(run, sources):
    import pty

    import varattn

    expected = varattn.load(run, device="cpu").translate(sources[2], beam=1).text
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "varattn", "translate", str(run), "--device", "cpu"],
                               stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    os.close(slave)
    try:
        os.write(master, (sources[2] + "\n").encode("utf-8"))  # typed, and the terminal stays open
        assert _read_line(process).decode("utf-8").rstrip("\n") == expected
        os.write(master, b"\x04")  # Ctrl-D
        assert process.wait(WAIT) == 0
        assert "Ctrl-D ends" in process.stderr.read().decode("utf-8")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
