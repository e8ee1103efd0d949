"""Downloads against a local HTTP server on 127.0.0.1, and the recipes that download."""

import functools
import gzip
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from varattn.data.corpora.recipes import prepare
from varattn.data.text.prepared import load_prepared
from varattn.data.corpora.download import DownloadError, fetch
from varattn.errors import UserError


class Handler(SimpleHTTPRequestHandler):
    failures: dict = {}  # path -> remaining 500 answers

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        left = self.failures.get(self.path, 0)
        if left:
            self.failures[self.path] = left - 1
            self.send_error(500, "flaky")
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    Handler.failures = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    t.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_writes_atomically_and_caches(server, tmp_path):
    root, url = server
    (root / "a.txt").write_bytes(b"hello\n" * 1000)
    dest = tmp_path / "cache" / "sub" / "a.txt"
    assert fetch(url + "a.txt", dest, progress=False) == dest
    assert dest.read_bytes() == b"hello\n" * 1000
    assert not [p for p in dest.parent.iterdir() if p.name != "a.txt"]  # no temporary left
    (root / "a.txt").unlink()
    assert fetch(url + "a.txt", dest, progress=False).read_bytes() == b"hello\n" * 1000  # cached


def test_fetch_retries_server_errors(server, tmp_path):
    root, url = server
    (root / "b.txt").write_text("ok")
    Handler.failures = {"/b.txt": 2}
    dest = fetch(url + "b.txt", tmp_path / "b.txt", retries=2, backoff=0.01, progress=False)
    assert dest.read_text() == "ok"


def test_fetch_failure_is_a_user_error(server, tmp_path):
    _, url = server
    with pytest.raises(DownloadError) as e:
        fetch(url + "missing.gz", tmp_path / "m.gz", retries=3, backoff=5, progress=False)  # 404: no retry
    msg = str(e.value)
    assert isinstance(e.value, UserError) and e.value.status == 404 and "\n" not in msg
    assert (
        msg.startswith(url + "missing.gz: download failed (HTTP 404")
        and "use from_dir=DIR with the files" in msg
    )
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "m.gz").exists()


def test_fetch_unreachable_host(tmp_path):
    with pytest.raises(UserError, match=r"http://127\.0\.0\.1:9/x: download failed .*from_dir=DIR"):
        fetch("http://127.0.0.1:9/x", tmp_path / "x", retries=1, backoff=0.01, timeout=2, progress=False)


def _write_multi30k(root, n=40, splits=("train", "val", "test_2016_flickr", "test_2017_mscoco")):
    """A tiny fake copy of multi30k's data/task1 (tok/ and raw/)."""
    (root / "tok").mkdir(parents=True)
    (root / "raw").mkdir()
    for stem in splits:
        k = n if stem == "train" else 6
        de = [f"ein hund nummer {i} läuft ." for i in range(k)]
        en = [f"a dog number {i} runs &apos;s ." for i in range(k)]
        (root / "tok" / f"{stem}.lc.norm.tok.de").write_text("\n".join(de) + "\n", encoding="utf-8")
        (root / "tok" / f"{stem}.lc.norm.tok.en").write_text("\n".join(en) + "\n", encoding="utf-8")
        raw = "".join(f"A dog number {i} runs's.\n" for i in range(k)).encode()
        (root / "raw" / f"{stem}.en.gz").write_bytes(gzip.compress(raw))


def test_prepare_multi30k_by_download(server, tmp_path):
    root, url = server
    _write_multi30k(root / "data" / "task1")
    out = tmp_path / "m30k"
    report = prepare("multi30k", out, url=url + "data/task1", cache_dir=tmp_path / "cache", progress=False)
    assert list(report["splits"]) == ["train", "valid", "test", "test_2017_mscoco"]  # the others are 404
    assert report["splits"]["train"]["pairs"] == 40 and report["splits"]["valid"]["pairs"] == 6
    assert report["pipeline"] == {
        "src_lang": "de",
        "tgt_lang": "en",
        "tokenize": True,
        "lowercase": True,
        "escape": True,
        "bpe_codes": None,
    }
    assert all(len(i["sha256"]) == 64 for i in report["inputs"])
    data = load_prepared(out)
    valid = data.split("valid")
    assert valid.references()[1] == "a dog number 1 runs &apos;s ."
    assert valid.raw_references()[1] == "A dog number 1 runs's."
    assert (
        data.pipeline.decode_target(data.tgt_vocab.decode(valid.tgt(1)), detokenize=True)
        == "a dog number 1 runs's."
    )
    # the same again from the cache, without the server's files
    for p in sorted(root.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    again = prepare(
        "multi30k", tmp_path / "m30k2", url=url + "data/task1", cache_dir=tmp_path / "cache", progress=False
    )
    assert again["splits"] == report["splits"]


def test_prepare_multi30k_download_failure(server, tmp_path):
    _, url = server
    with pytest.raises(UserError, match=r"train\.lc\.norm\.tok\.de: download failed .*from_dir=DIR"):
        prepare("multi30k", tmp_path / "o", url=url, cache_dir=tmp_path / "cache", progress=False)
