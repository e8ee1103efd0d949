"""Reading and writing text files with checks a user can act on.

Every reader returns lines without their trailing ``\\n`` / ``\\r\\n``. Lines are split on ``\\n`` only
(never on the other Unicode line breaks that :meth:`str.splitlines` honours), so the line numbers we report
are the ones an editor shows and parallel files stay aligned. Files ending in ``.gz`` are read through gzip.

Every problem is a :class:`~varattn.errors.UserError` with one line: ``path[:line]: what — what to do``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from varattn.errors import UserError

_UMASK = os.umask(0o022)
os.umask(_UMASK)

__all__ = [
    "read_bytes",
    "read_lines",
    "read_parallel",
    "write_lines",
    "atomic_write_bytes",
    "sha256_file",
]


def read_bytes(path: str | os.PathLike) -> bytes:
    """The content of ``path``, gunzipped when the name ends in ``.gz``.

    Raises UserError for a missing file, a folder, an unreadable file or a corrupt gzip stream.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: file not found — check the path")
    if p.is_dir():
        raise UserError(f"{p}: is a folder, not a file — give the path of a text file")
    try:
        if p.name.endswith(".gz"):
            with gzip.open(p, "rb") as f:
                return f.read()
        return p.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, PermissionError):
            raise UserError(f"{p}: cannot read the file ({e.strerror}) — check its permissions") from None
        if p.name.endswith(".gz"):
            raise UserError(
                f"{p}: not a valid gzip file ({e}) — download it again or give the uncompressed file"
            ) from None
        raise UserError(f"{p}: cannot read the file ({e}) — check the path") from None


def read_lines(path: str | os.PathLike, *, allow_empty: bool = False) -> list[str]:
    """The lines of a UTF-8 text file (plain or ``.gz``), trailing newline and ``\\r`` removed.

    A final newline does not make an extra empty line; a file of zero bytes has zero lines, which is an
    error unless ``allow_empty``. Invalid UTF-8 is reported with the file and the 1-based line number.
    """
    p = Path(path)
    data = read_bytes(p)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{p}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x}) — convert the file to UTF-8, "
            f"e.g. with iconv"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if not lines and not allow_empty:
        raise UserError(f"{p}: file is empty — give a file with one sentence per line")
    return lines


def read_parallel(src_path: str | os.PathLike, tgt_path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """The lines of two parallel files; their line counts must agree (line i of one translates line i)."""
    src = read_lines(src_path)
    tgt = read_lines(tgt_path)
    if len(src) != len(tgt):
        raise UserError(
            f"{src_path}: has {len(src)} lines but {tgt_path} has {len(tgt)} — parallel files need one "
            f"translation per line; fix or realign them"
        )
    return src, tgt


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Write one line per item (UTF-8, ``\\n`` endings) atomically. Items must not contain ``\\n``."""
    atomic_write_bytes(path, "".join(f"{ln}\n" for ln in lines).encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file's bytes as stored (compressed bytes for ``.gz``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary sibling of ``out`` to write a whole folder into. When the block ends
    normally the folder replaces ``out`` (removing what was there); on any error it is deleted and
    ``out`` is left as it was."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(out)) from None
    tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder the usual permissions
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError) and (not error.filename or str(tmp) in str(error.filename)):
            raise OSError(error.errno, error.strerror, str(out)) from None  # name the folder meant
        raise
