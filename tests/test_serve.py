"""The HTTP API through FastAPI's TestClient: a good image in each accepted form, and each bad input."""
import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digits.predictor import load_predictor
from digits.serve import create_app
from test_preprocess import png_header_only

MODEL = Path(__file__).parent / "data" / "seed.pt"


@pytest.fixture(scope="module")
def client():
    app = create_app(load_predictor(MODEL), max_upload_bytes=200_000, max_pixels=2_000_000)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def seven_png(size=280) -> bytes:
    """A hand-drawn-like 7: dark strokes on white, as the drawing page sends it."""
    img = Image.new("L", (size, size), 255)
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    s = size / 280
    draw.line([(70 * s, 60 * s), (200 * s, 60 * s), (120 * s, 230 * s)], fill=0, width=int(20 * s), joint="curve")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def check_prediction(body: dict, digit: int | None = 7) -> None:
    assert set(body) == {"prediction", "probabilities", "pixels"}
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-4
    assert np.asarray(body["pixels"]).shape == (28, 28)
    if digit is not None:
        assert body["prediction"] == digit


def test_multipart_upload(client):
    r = client.post("/predict", files={"file": ("seven.png", seven_png(), "image/png")})
    assert r.status_code == 200, r.text
    check_prediction(r.json())
    pixels = np.asarray(r.json()["pixels"])
    assert pixels.max() == 255 and pixels[0].sum() == 0  # light ink on black, as MNIST


def test_json_base64_and_data_url(client):
    encoded = base64.b64encode(seven_png()).decode()
    for image in (encoded, "data:image/png;base64," + encoded):
        r = client.post("/predict", json={"image": image})
        assert r.status_code == 200, r.text
        check_prediction(r.json())


def test_json_base64_as_tools_write_it(client):
    """GNU base64 wraps its lines at 76 columns, and {"image": "$(base64 seven.png)"} puts those
    newlines into the JSON string as they are; other tools write the URL-safe alphabet or leave
    out the padding. All were refused as "not valid base64" (or "not valid JSON")."""
    png = seven_png()
    png += b"\0" * (len(png) % 3 == 0)  # so that its base64 ends in padding (Pillow ignores the byte)
    wrapped = base64.encodebytes(png).decode()  # 76 columns and a newline, as GNU base64
    url_safe = base64.urlsafe_b64encode(png).decode()
    unpadded = base64.b64encode(png).decode().rstrip("=")
    assert "\n" in wrapped.rstrip("\n") and set("-_") & set(url_safe) and len(unpadded) % 4
    for image in (wrapped, url_safe, unpadded, url_safe.rstrip("="), wrapped.replace("\n", "\r\n  "),
                  "data:image/png;base64," + wrapped):
        r = client.post("/predict", json={"image": image})
        assert r.status_code == 200, (r.text, image[:80])
        check_prediction(r.json())
    shell = ('{"image": "%s"}' % wrapped.rstrip("\n")).encode()  # raw newlines inside the string
    r = client.post("/predict", content=shell, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    check_prediction(r.json())


def test_json_pixels_are_used_as_they_are(client):
    first = client.post("/predict", files={"file": ("s.png", seven_png(), "image/png")}).json()
    r = client.post("/predict", json={"pixels": first["pixels"]})
    assert r.status_code == 200
    assert r.json()["pixels"] == first["pixels"]
    assert np.allclose(r.json()["probabilities"], first["probabilities"], atol=1e-6)


def test_health_model_page_and_docs(client):
    assert client.get("/health").json() == {"status": "ok", "backend": "pytorch", "max_upload_bytes": 200_000}
    model = client.get("/model").json()
    assert model["model_name"] == "seed" and model["parameters"] == 42940 and model["file"] == "seed.pt"
    assert model["metrics"]["test_accuracy"] > 0.97  # from tests/data/metrics.json beside it
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "http" not in r.text  # no CDN: it must work offline
    assert "http" not in page.text.replace("http-equiv", "")
    # FastAPI's /docs and /redoc load their scripts from CDNs: blank pages without the internet
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert all(set(methods) <= {"get", "post"} for methods in spec["paths"].values())  # HEAD unlisted


def test_head_is_answered_wherever_get_is(client):
    """Uptime monitors check a server with HEAD: / and /health answered 405."""
    for path in ("/", "/health", "/model", "/openapi.json", "/static/app.js"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == 200 and head.content == b"", (path, head.status_code)
        assert head.headers["content-type"] == got.headers["content-type"], path
    assert client.head("/predict").status_code == 405


_ROW = "[" + ",".join(["1" + "0" * 400] + ["0"] * 27) + "]"
HUGE_PIXEL = ('{"pixels": [' + ",".join([_ROW] * 28) + "]}").encode()  # valid JSON, too big for a float
BAD = [
    ("not an image", dict(files={"file": ("x.png", b"hello", "image/png")}), 422, "cannot read it as an image"),
    ("too many pixels", dict(files={"file": ("b.png", png_header_only(3000, 3000), "image/png")}), 422,
     "over the limit"),
    ("decompression bomb", dict(files={"file": ("b.png", png_header_only(60000, 60000), "image/png")}), 422,
     "over the limit"),
    ("too large", dict(files={"file": ("big.png", b"\0" * 300_000, "image/png")}), 413, "over the limit"),
    ("blank", dict(files={"file": ("w.png", png_header_only(1, 1), "image/png")}), 422, ""),
    ("no file field", dict(files={"other": ("a.png", b"x", "image/png")}), 400, "field 'file'"),
    # curl -F 'file=<seven.png' (< instead of @) sends the bytes as a text field, not a file
    ("file sent as text", dict(files={"file": (None, b"\x89PNG\r\n")}), 400, "must be a file upload"),
    ("empty file", dict(files={"file": ("a.png", b"", "image/png")}), 400, "empty"),
    ("bad json", dict(content=b"{nope", headers={"content-type": "application/json"}), 400, "not valid JSON"),
    ("both keys", dict(json={"image": "", "pixels": []}), 400, "exactly one"),
    ("bad base64", dict(json={"image": "***"}), 400, "base64"),
    ("base64 a character short", dict(json={"image": "QUJDQ"}), 400, "base64"),
    ("base64 padding inside", dict(json={"image": "QQ==QUJD"}), 400, "base64"),
    ("base64 with punctuation", dict(json={"image": "QUJD.QUJD"}), 400, "base64"),
    ("wrong shape", dict(json={"pixels": [[0] * 28] * 27}), 400, "28 rows"),
    ("out of range", dict(json={"pixels": [[300] * 28] * 28}), 400, "0 to 255"),
    ("pixels as strings", dict(json={"pixels": [["255"] * 28] * 28}), 400, "numbers"),
    ("pixels as booleans", dict(json={"pixels": [[True] + [0] * 27] * 28}), 400, "numbers"),
    ("pixel too big for a float", dict(content=HUGE_PIXEL, headers={"content-type": "application/json"}),
     400, "0 to 255"),
    ("empty data URL", dict(json={"image": "data:,"}), 400, "data: URL"),
    ("data URL not base64", dict(json={"image": "data:image/png,abc"}), 400, "data: URL"),
    ("empty base64 image", dict(json={"image": "data:image/png;base64,"}), 400, "empty"),
    ("plain text", dict(content=b"7", headers={"content-type": "text/plain"}), 415, "multipart"),
]


@pytest.mark.parametrize("kwargs,status,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_inputs_get_a_json_message_and_no_stack_trace(client, kwargs, status, message):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert message in r.json()["detail"]
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_an_unexpected_failure_is_a_500_without_details_logged_once(caplog):
    """The app logs the traceback and answers; Starlette's ServerErrorMiddleware raised it again for
    the server, and uvicorn logged it a second time ("Exception in ASGI application"). The
    TestClient raises what reaches the server, as uvicorn logs it."""
    broken = create_app(load_predictor(MODEL))
    broken.state.predictor._logits = lambda images: 1 / 0  # noqa: E731
    with TestClient(broken) as c:
        r = c.post("/predict", json={"pixels": [[0] * 28] * 28})
    assert r.status_code == 500 and "ZeroDivision" not in r.text
    assert json.loads(r.text)["detail"].startswith("internal error")
    logged = [rec for rec in caplog.records if rec.exc_info]
    assert [(rec.name, rec.getMessage()) for rec in logged] == [
        ("digits.serve", "unexpected error on POST /predict")]
    assert logged[0].exc_info[0] is ZeroDivisionError


def health_seconds_while_held(client, started, release) -> float:
    """How long GET /health took while a request was held in progress; then lets it go on."""
    import time

    assert started.wait(5)
    t0 = time.perf_counter()
    assert client.get("/health").status_code == 200
    answered = time.perf_counter() - t0
    release.set()
    return answered


def test_inference_does_not_block_the_event_loop():
    import threading

    slow = create_app(load_predictor(MODEL))
    model_logits = slow.state.predictor._logits
    started, release = threading.Event(), threading.Event()

    def sleepy(images):  # holds the prediction until /health has answered (or 10 s pass)
        started.set()
        release.wait(10)
        return model_logits(images)

    slow.state.predictor._logits = sleepy
    with TestClient(slow) as c:
        worker = threading.Thread(target=c.post, args=("/predict",), kwargs={"json": {"pixels": [[0] * 28] * 28}})
        worker.start()
        answered = health_seconds_while_held(c, started, release)
        worker.join()
    # a blocked event loop could answer only after the 10 s hold; the margin absorbs a loaded CPU
    assert answered < 5, f"/health waited {answered:.2f} s for a prediction in progress"


def test_json_is_decoded_outside_the_event_loop_and_waits_its_turn(monkeypatch):
    """A large JSON body takes a while to parse and to decode from base64: /health must answer
    meanwhile, and no more bodies are decoded at once than images predicted."""
    import threading

    from digits.serve import inputs

    from_json = inputs._from_json
    started, release = threading.Event(), threading.Event()
    lock, running, peak = threading.Lock(), [0], [0]

    def held(body):  # the decoding in progress holds until /health has answered (or 10 s pass)
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        started.set()
        release.wait(10)
        with lock:
            running[0] -= 1
        return from_json(body)

    monkeypatch.setattr(inputs, "_from_json", held)
    with TestClient(create_app(load_predictor(MODEL), max_concurrent=1)) as c:
        def post():
            assert c.post("/predict", json={"image": base64.b64encode(seven_png()).decode()}).status_code == 200

        workers = [threading.Thread(target=post) for _ in range(3)]
        for w in workers:
            w.start()
        answered = health_seconds_while_held(c, started, release)
        for w in workers:
            w.join()
    assert answered < 5, f"/health waited {answered:.2f} s for JSON being decoded"
    assert peak[0] == 1  # three requests at once, one decoded at a time


def test_a_streamed_body_over_the_limit_is_cut_off_with_413(client):
    """Also at once: a body that had all arrived when it passed the limit was drained all the same,
    and the drain waited its 60 s for a message that never came."""
    import time

    chunks = (b"x" * 50_000 for _ in range(10))  # no Content-Length: sent chunked
    start = time.perf_counter()
    r = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    assert time.perf_counter() - start < 10


def test_the_rest_of_a_refused_body_is_drained_within_its_bounds():
    """After a 413 the rest of the body is read and thrown away (so that the client sending it gets
    the answer, not a reset connection), one chunk at a time, up to a number of bytes and the body's
    deadline: a client sending for ever, or one that stalls, cannot hold the server."""
    import asyncio
    import time

    from digits.serve.inputs import Drain, drain

    async def endless():
        await asyncio.sleep(0)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def stalling():
        await asyncio.sleep(3600)

    async def run():
        calls = []

        async def counted():
            calls.append(1)
            return await endless()

        await drain(counted, Drain(max_bytes=10_000, deadline=None))
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        await drain(stalling, Drain(max_bytes=10_000, deadline=loop.time() + 0.2))
        await drain(endless, Drain(max_bytes=10**12, deadline=loop.time() + 0.2))
        return len(calls), time.perf_counter() - start

    chunks, took = asyncio.run(run())
    assert chunks == 10 and took < 2


def test_no_more_images_are_predicted_at_once_than_the_limit():
    import threading
    import time

    app = create_app(load_predictor(MODEL), max_concurrent=2)
    model_logits = app.state.predictor._logits
    lock, running, peak = threading.Lock(), [0], [0]

    def counted(images):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return model_logits(images)

    app.state.predictor._logits = counted
    with TestClient(app) as c:
        def post():
            assert c.post("/predict", json={"pixels": [[0] * 28] * 28}).status_code == 200

        workers = [threading.Thread(target=post) for _ in range(6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert peak[0] == 2  # six requests at once, two predicted at a time


def test_health_model_and_page_answer_while_many_predictions_wait():
    """Predictions waiting for their turn must not hold the worker threads the others need."""
    import threading
    import time

    app = create_app(load_predictor(MODEL), max_concurrent=1)
    model_logits = app.state.predictor._logits
    started, release, arrived = threading.Event(), threading.Event(), threading.Semaphore(0)

    def held(images):  # the first prediction holds its turn until the checks below are done
        started.set()
        release.wait(10)
        return model_logits(images)

    async def counting(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/predict":
            arrived.release()
        await app(scope, receive, send)

    app.state.predictor._logits = held
    answered = {}
    with TestClient(counting) as c:
        def check():
            for path in ("/health", "/model", "/"):
                t0 = time.perf_counter()
                answered[path] = (c.get(path).status_code, time.perf_counter() - t0)

        def post():
            assert c.post("/predict", json={"pixels": [[0] * 28] * 28}).status_code == 200

        posts = [threading.Thread(target=post) for _ in range(45)]  # more than the pool's 40 threads
        for t in posts:
            t.start()
        assert started.wait(10) and all(arrived.acquire(timeout=10) for _ in posts)
        time.sleep(0.3)  # let them reach the point where they wait their turn
        checker = threading.Thread(target=check)
        checker.start()
        checker.join(5)
        release.set()
        for t in [checker, *posts]:
            t.join()
    assert {path: code for path, (code, _) in answered.items()} == {"/health": 200, "/model": 200, "/": 200}
    assert all(seconds < 5 for _, seconds in answered.values()), answered


def test_one_app_serves_waiting_requests_from_one_event_loop_after_another():
    import asyncio

    import httpx

    app = create_app(load_predictor(MODEL), max_concurrent=1)
    body = {"pixels": np.zeros((28, 28)).tolist()}

    async def three_at_once() -> list[int]:  # with one turn, two of them wait on the limit
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            replies = await asyncio.gather(*(c.post("/predict", json=body) for _ in range(3)))
        return [r.status_code for r in replies]

    assert asyncio.run(three_at_once()) == [200] * 3
    assert asyncio.run(three_at_once()) == [200] * 3  # a new loop (a second TestClient, say)


def _stalling_request(app, reading: list, peak: list, first=b'{"image": "'):
    """POST /predict straight to the ASGI app from a client that sends ``first``, a part of the
    body it declares, then stalls; ``reading`` counts those whose body is being read."""
    import asyncio

    sent, started = [], False

    async def receive():
        nonlocal started
        if not started:  # the app has begun to read this body
            started = True
            reading[0] += 1
            peak[0] = max(peak[0], reading[0])
            return {"type": "http.request", "body": first, "more_body": True}
        await asyncio.Event().wait()  # the rest never comes

    async def send(message):
        if message["type"] == "http.response.start" and started:
            reading[0] -= 1
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"9000000")]}

    async def run():
        await app(scope, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"]), json.loads(sent[1]["body"])
    return run()


def test_a_body_that_stalls_is_answered_408_and_its_connection_closed():
    """A client that sent part of its body and stopped held its memory and its place for ever."""
    import asyncio
    import time

    app = create_app(load_predictor(MODEL), body_timeout=0.5)
    t0 = time.perf_counter()
    status, headers, body = asyncio.run(asyncio.wait_for(_stalling_request(app, [0], [0]), 10))
    assert status == 408 and headers[b"connection"] == b"close", (status, headers)
    assert body["detail"] == "the request body did not arrive within 0.5 s"
    assert time.perf_counter() - t0 < 5


@pytest.mark.slow
def test_no_more_bodies_are_read_at_once_than_twice_the_turns():
    """Bodies were read before any limit applied: 20 clients stalling short of 9 MiB bodies took
    the server from 259 to 474 MB, for ever. With one turn, two bodies are read at once (the
    others wait, unread, in the kernel and uvicorn's 64 KiB), and /health answers meanwhile."""
    import asyncio
    import time

    import httpx

    app = create_app(load_predictor(MODEL), max_concurrent=1, body_timeout=0.5)
    reading, peak = [0], [0]

    async def six_stalled_and_health():
        stalled = asyncio.gather(*(_stalling_request(app, reading, peak) for _ in range(6)))
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            t0 = time.perf_counter()
            health = (await c.get("/health")).status_code, time.perf_counter() - t0
        return await stalled, health

    t0 = time.perf_counter()
    answers, (health, seconds) = asyncio.run(asyncio.wait_for(six_stalled_and_health(), 20))
    assert [status for status, _, _ in answers] == [408] * 6
    assert peak[0] == 2  # six at once, two read at a time: three rounds of 0.5 s
    assert 1.4 < time.perf_counter() - t0 < 10
    assert health == 200 and seconds < 1


def test_the_connection_cap_leaves_the_process_descriptors_of_its_own(monkeypatch):
    import resource

    from digits.serve import protocol

    for soft, cap in ((1024, 704), (200, 16), (resource.RLIM_INFINITY, 4096)):  # 704: as the README says
        monkeypatch.setattr(resource, "getrlimit", lambda which, soft=soft: (soft, resource.RLIM_INFINITY))
        assert protocol.default_max_connections() == cap
    monkeypatch.setattr(protocol, "resource", None)  # Windows
    assert protocol.default_max_connections() == 704
    limited = protocol.limited_protocol(2.5, 7)
    assert limited.head_timeout == 2.5 and limited.max_connections == 7
