"""`varattn serve`: a local web page and JSON API over a trained translation model (Flask).

Routes (JSON in and out; every error is a 4xx/5xx with ``{"error": "one line"}``, and the server keeps
running):

- ``GET /``: the page (:file:`page.html`, self-contained: no request leaves the server). Type a source
  sentence, see the n-best translations and the prior heat map of the best one; add a reference and see
  prior and posterior side by side and their overlay. ``/?source=...&reference=...`` fills the form and
  submits it.
- ``GET /api/info``: the model's mode, languages, whether it has a posterior, its decoding defaults and
  the server's limits.
- ``POST /api/translate`` ``{"source": str, "beam"?: int, "n_best"?: int, "kmax"?: int,
  "pretokenized"?: bool, "picture"?: bool}`` -> ``{"source_tokens", "translations": [{"text", "tokens",
  "score", "log_prob", "links"}...] (best first), "prior": [[...]] (the best one's, rows: its tokens and
  ``</s>``), "distribution", "picture"?: base64 PNG}``.
- ``POST /api/align`` ``{"source": str, "target": str, "pretokenized"?: bool, "picture"?: bool}`` ->
  ``{"source_tokens", "target_tokens", "matrices", "entropy", "links", "word_links", "log_prob", "ppl",
  "picture"?}``.
"""

from __future__ import annotations

import threading
from importlib import resources

from varattn.data.text.tokenize import normalize
from varattn.errors import UserError
from varattn.latent import get_mode

MAX_CHARS = 1000
MAX_BEAM = 20
MAX_BODY = 64 * 1024


class BadRequest(Exception):
    """A request the server refuses: HTTP ``status`` and a one-line message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _text(body: dict, key: str, limit: int, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key}: give a string, e.g. {{\"{key}\": \"ein hund läuft .\"}}")
    if not value.strip():
        if not required:
            return None
        raise BadRequest(f"{key}: empty — type a sentence")
    if not normalize(value)[0].strip():
        raise BadRequest(f"{key}: only invisible format characters (zero-width spaces, byte-order marks), "
                         "nothing to translate — type a sentence")
    if len(value) > limit:
        raise BadRequest(f"{key}: {len(value)} characters, more than the limit of {limit}", 413)
    if "\n" in value.strip():
        raise BadRequest(f"{key}: one sentence per request (no line breaks)")
    return value


# The keys each route reads; any other key is refused (a typo such as "nbest" would otherwise be ignored).
ACCEPTED = {"translate": ("source", "beam", "n_best", "kmax", "pretokenized", "picture"),
            "align": ("source", "target", "pretokenized", "picture")}


def _known_keys(body: dict, route: str) -> None:
    unknown = [key for key in body if key not in ACCEPTED[route]]
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} — /api/{route} accepts {', '.join(ACCEPTED[route])}")


def example_pair(model) -> tuple[str, str]:
    """A source sentence and its reference from the first pair of the run's own validation split (BPE
    removed), for the page's placeholders; a neutral hint naming the languages when that data is not at
    hand (an exported model, a moved folder)."""
    from pathlib import Path

    from varattn.data.text.tokenize import remove_bpe

    fallback = (f"a sentence in {model.source_language}", f"its translation in {model.target_language}")
    config = model.config
    if not config.data.dir:
        return fallback
    folder, split = Path(config.data.dir), config.data.valid_split
    names = ("tgt.txt", "src.txt") if config.data.reverse else ("src.txt", "ref.tgt")
    found = []
    for name in names:
        try:
            with open(folder / f"{split}.{name}", encoding="utf-8") as handle:
                found.append(remove_bpe(handle.readline()).strip())
        except (OSError, UnicodeDecodeError):
            return fallback
    return (found[0], found[1]) if all(found) else fallback


def _integer(body: dict, key: str, default: int, least: int, most: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key}: give a whole number between {least} and {most}")
    if not least <= value <= most:
        raise BadRequest(f"{key}: {value} is outside {least}..{most}")
    return value


def _flag(body: dict, key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{key}: give true or false")
    return value


def _picture(source_tokens, target_tokens, matrices) -> str:
    """A base64 PNG of the matrices (heat maps side by side, and the overlay when there are a prior and
    a posterior), drawn as `varattn align` draws them."""
    from varattn.analysis.align import PairAlignment
    from varattn.analysis.pictures import pair_figure, png_base64

    pair = PairAlignment(0, list(source_tokens), list(target_tokens), matrices, {k: 0.0 for k in matrices})
    return png_base64(pair_figure(pair), dpi=90)


def create_app(model, *, max_chars: int = MAX_CHARS, max_beam: int = MAX_BEAM):
    """The Flask application serving ``model`` (a :class:`varattn.api.Model`). Translations and alignments
    take turns on the model (a lock) and draw their pictures after releasing it, so under a threaded
    server the page, ``/api/info``, refused requests and picture drawing never wait behind a slow one."""
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask("varattn.serve")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.ensure_ascii = False
    lock = threading.Lock()
    page = resources.files("varattn.serve").joinpath("page.html").read_text(encoding="utf-8")
    import html

    example = example_pair(model)
    page = page.replace('placeholder="ein hund läuft ."', f'placeholder="{html.escape(example[0])}"', 1)
    page = page.replace('placeholder="a dog is running ."', f'placeholder="{html.escape(example[1])}"', 1)
    distribution = "attention" if get_mode(model.mode).soft_context else "prior"

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise BadRequest('send a JSON object with Content-Type: application/json, e.g. {"source": "..."}')
        return data

    @app.errorhandler(BadRequest)
    def bad_request(error: BadRequest):
        return jsonify(error=str(error)), error.status

    @app.errorhandler(UserError)
    def user_error(error: UserError):
        return jsonify(error=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify(error=f"{error.code} {error.name}: {error.description}".replace("\n", " ")), error.code

    @app.errorhandler(Exception)
    def internal_error(error: Exception):
        app.logger.exception("request failed")
        return jsonify(error=f"internal error ({type(error).__name__}: {error})".replace("\n", " ")), 500

    @app.after_request
    def no_network(response):
        response.headers["Content-Security-Policy"] = ("default-src 'none'; script-src 'unsafe-inline'; "
                                                       "style-src 'unsafe-inline'; img-src data:; connect-src 'self'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.get("/api/info")
    def info():
        return jsonify(mode=model.mode, source_language=model.source_language,
                       target_language=model.target_language, has_posterior=model.has_posterior,
                       distribution=distribution, decode=model.decode,
                       example={"source": example[0], "reference": example[1]},
                       limits={"max_chars": max_chars, "max_beam": max_beam, "max_body_bytes": MAX_BODY})

    @app.post("/api/translate")
    def translate():
        data = body()
        _known_keys(data, "translate")
        source = _text(data, "source", max_chars)
        beam = _integer(data, "beam", max(int(model.decode.get("beam", 1)), 1), 1, max_beam)
        n_best = _integer(data, "n_best", 1, 1, beam)
        kmax = _integer(data, "kmax", int(model.decode.get("kmax", 0)), 0, 1000)
        pretokenized, picture = _flag(data, "pretokenized", False), _flag(data, "picture", False)
        with lock:
            best = model.translate(source, beam=beam, n_best=n_best, kmax=kmax, pretokenized=pretokenized)
            result = {"source_tokens": best.source_tokens, "distribution": distribution,
                      "translations": [{"text": t.text, "tokens": t.tokens, "score": t.score,
                                        "log_prob": t.log_prob, "links": t.links} for t in (best.nbest or [best])],
                      "prior": best.prior.tolist()}
        if picture and best.prior.size:  # drawn outside the lock: the model is free for the next request
            result["picture"] = _picture(best.source_tokens, best.tokens + ["</s>"], {distribution: best.prior})
        return jsonify(result)

    @app.post("/api/align")
    def align():
        data = body()
        _known_keys(data, "align")
        source, target = _text(data, "source", max_chars), _text(data, "target", max_chars)
        pretokenized, picture = _flag(data, "pretokenized", False), _flag(data, "picture", False)
        with lock:
            found = model.align(source, target, pretokenized=pretokenized)
            score = model.score(source, target, pretokenized=pretokenized)
            result = {"source_tokens": found.source_tokens, "target_tokens": found.target_tokens,
                      "matrices": {k: v.tolist() for k, v in found.matrices.items()}, "entropy": found.entropy,
                      "links": found.links, "word_links": found.word_links, "log_prob": score.log_prob,
                      "ppl": score.ppl}
        if picture:
            result["picture"] = _picture(found.source_tokens, found.target_tokens, found.matrices)
        return jsonify(result)

    return app


def make_server(model, host: str = "127.0.0.1", port: int = 8080, **limits):
    """A threaded WSGI server (werkzeug) for the app, bound but not yet serving; ``.serve_forever()``
    runs it, ``.shutdown()`` stops it, ``.server_port`` is the port (useful with port 0)."""
    from werkzeug.serving import make_server as werkzeug_server

    app = create_app(model, **limits)
    try:
        return werkzeug_server(host, port, app, threaded=True)
    except (OSError, SystemExit) as error:  # werkzeug prints its own advice and exits when the port is taken
        cause = getattr(error, "strerror", None) or "address in use or not available"
        raise UserError(f"{host}:{port}: cannot listen ({cause}) — choose another port (port=0 picks a free "
                        "one)") from None
