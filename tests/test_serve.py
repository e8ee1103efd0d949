"""`varattn serve` (issue 14): the JSON API gives what the Python API gives, bad requests get a 4xx and a
one-line message without stopping the server, a real server answers on a free port, and the page works
in headless Chromium (a sentence submitted, translations and pictures shown, no script errors)."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from conftest import tiny_config

WAIT = 300  # seconds: a guard against a hang, not a speed requirement


@pytest.fixture(scope="module")
def run(synthetic_data, tmp_path_factory, one_thread):
    from varattn.training.trainer import train

    root = tmp_path_factory.mktemp("serve")
    train(tiny_config(synthetic_data, "vae-enum", epochs=3), root / "vae-enum")
    return root / "vae-enum"


@pytest.fixture(scope="module")
def model(run):
    import varattn

    return varattn.load(run, device="cpu")


@pytest.fixture(scope="module")
def client(model):
    from varattn.serve import create_app

    return create_app(model, max_chars=200).test_client()


@pytest.fixture(scope="module")
def pair(synthetic_data) -> tuple[str, str]:
    src = (synthetic_data / "test.src.txt").read_text(encoding="utf-8").splitlines()[1]
    tgt = (synthetic_data / "test.ref.tgt").read_text(encoding="utf-8").splitlines()[1]
    return src, tgt


def _png(encoded: str) -> bool:
    return base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")


def test_translate_and_align_give_what_the_python_api_gives(client, model, pair):
    source, target = pair
    info = client.get("/api/info").get_json()
    assert info["mode"] == "vae-enum" and info["has_posterior"] and info["limits"]["max_chars"] == 200

    response = client.post("/api/translate", json={"source": source, "beam": 3, "n_best": 3, "picture": True})
    assert response.status_code == 200
    found = response.get_json()
    expected = model.translate(source, beam=3, n_best=3)
    assert [t["text"] for t in found["translations"]] == [t.text for t in expected.nbest]
    assert [t["score"] for t in found["translations"]] == pytest.approx([t.score for t in expected.nbest])
    assert found["translations"][0]["links"] == [list(link) for link in expected.links]
    np.testing.assert_allclose(np.array(found["prior"]), expected.prior)
    assert found["source_tokens"] == expected.source_tokens and _png(found["picture"])
    assert "picture" not in client.post("/api/translate", json={"source": source}).get_json()

    aligned = client.post("/api/align", json={"source": source, "target": target, "picture": True}).get_json()
    expected_pair, score = model.align(source, target), model.score(source, target)
    assert set(aligned["matrices"]) == {"prior", "posterior", "exact-posterior"}
    for name, matrix in expected_pair.matrices.items():
        np.testing.assert_allclose(np.array(aligned["matrices"][name]), matrix)
        assert aligned["word_links"][name] == [list(link) for link in expected_pair.word_links[name]]
    assert aligned["target_tokens"] == target.split() + ["</s>"]
    assert aligned["log_prob"] == pytest.approx(score.log_prob) and _png(aligned["picture"])


@pytest.mark.parametrize("path, body, status, needle", [
    ("/api/translate", b"not json", 400, "send a JSON object"),
    ("/api/translate", b"[1, 2]", 400, "send a JSON object"),
    ("/api/translate", b"{}", 400, "source: give a string"),
    ("/api/translate", b'{"source": "   "}', 400, "source: empty"),
    ("/api/translate", json.dumps({"source": "a " * 150}).encode(), 413, "more than the limit of 200"),
    ("/api/translate", b'{"source": "me .", "beam": 0}', 400, "beam: 0 is outside 1..20"),
    ("/api/translate", b'{"source": "me .", "beam": "5"}', 400, "beam: give a whole number"),
    ("/api/translate", b'{"source": "me .", "beam": 2, "n_best": 3}', 400, "n_best: 3 is outside 1..2"),
    ("/api/translate", b'{"source": "me .", "picture": "yes"}', 400, "picture: give true or false"),
    ("/api/translate", b'{"source": "one .\\ntwo ."}', 400, "one sentence per request"),
    ("/api/align", b'{"source": "me ."}', 400, "target: give a string"),
    ("/api/nothing", b"{}", 404, "404 Not Found"),
    ("/api/translate", b"x" * (70 * 1024), 413, "413"),
])
def test_bad_requests_get_a_4xx_and_one_line_and_the_server_carries_on(client, pair, path, body, status, needle):
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == status
    message = response.get_json()["error"]
    assert needle in message and "\n" not in message
    assert client.get("/api/translate").status_code == 405
    assert client.post("/api/translate", json={"source": pair[0]}).status_code == 200


@pytest.mark.slow
def test_varattn_serve_answers_on_a_free_port_of_127_0_0_1(run, model, pair):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "varattn", "serve", str(run), "--port", "0", "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        ready, _, _ = select.select([process.stdout], [], [], WAIT)
        assert ready, "varattn serve printed nothing"
        banner = process.stdout.readline().decode("utf-8")
        url = re.search(r"http://127\.0\.0\.1:\d+/", banner).group(0)

        def post(path: str, body: bytes):
            request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=WAIT) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        status, found = post("api/translate", json.dumps({"source": pair[0], "beam": 5}).encode())
        assert status == 200 and found["translations"][0]["text"] == model.translate(pair[0], beam=5).text
        assert post("api/translate", b"{broken")[0] == 400
        status, aligned = post("api/align", json.dumps({"source": pair[0], "target": pair[1]}).encode())
        assert status == 200 and aligned["log_prob"] == pytest.approx(model.score(*pair).log_prob, abs=1e-4)
        with urllib.request.urlopen(url, timeout=WAIT) as page:
            assert b'id="source"' in page.read() and "connect-src 'self'" in page.headers["Content-Security-Policy"]
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(WAIT)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless Chromium on PATH (apt-get install -y chromium)")


def browse(browser: str, url: str, profile, *extra: str) -> subprocess.CompletedProcess:
    """Load ``url`` in headless Chromium, letting the page's requests finish (virtual time waits for them)."""
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=60000", *extra, url],
                          capture_output=True, text=True, timeout=WAIT, check=True)


def test_the_page_in_headless_chromium_translates_and_draws(model, pair, tmp_path):
    from varattn.serve import make_server

    browser = chromium()
    server = make_server(model, "127.0.0.1", 0)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        query = urllib.parse.urlencode({"source": pair[0], "reference": pair[1], "beam": 3, "n_best": 3})
        shown = browse(browser, f"http://127.0.0.1:{server.server_port}/?{query}", tmp_path / "profile", "--dump-dom")
    finally:
        server.shutdown()
        server.server_close()
    dom = shown.stdout
    assert 'data-state="done"' in dom
    assert re.search(r'<pre id="errors">\s*</pre>', dom), "the page reported script errors"
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, f"the browser's console: {console}"  # errors, CSP refusals, failed loads
    expected = model.translate(pair[0], beam=3, n_best=3)
    items = re.findall(r'<li class="translation">(.*?)<span', dom)
    assert items == [(t.text or "(empty)").replace("&", "&amp;") for t in expected.nbest]
    for figure in ("prior-picture", "alignment-picture"):
        assert re.search(rf'id="{figure}"[^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{{100,}}"', dom) or \
            re.search(rf'src="data:image/png;base64,[A-Za-z0-9+/=]{{100,}}"[^>]*id="{figure}"', dom)
    assert 'id="alignment" class=""' in dom and "log p(reference | source)" in dom


def test_a_port_in_use_is_one_line_naming_it(model):
    import socket

    from varattn.errors import UserError
    from varattn.serve import make_server

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=rf"127\.0\.0\.1:{port}: cannot listen .* choose another port"):
            make_server(model, "127.0.0.1", port)
