"""The HTTP app: POST /predict, GET /health, GET /model, the drawing page at / and /openapi.json.

The app is built around one loaded model (the one the server was started with); inference runs
in a worker thread so that the event loop keeps answering. No error ever sends a stack trace.

    app = create_app(load_predictor("model.onnx"))       # test it with fastapi.testclient
    serve("runs/seed/checkpoint.pt", port=8000)          # or run it with uvicorn
"""
from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import signal
import socket
import sys
import threading
import weakref
from importlib.resources import files

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..errors import DigitsError
from ..predict import predict_image, predict_pixels
from ..predictor import Predictor, load_predictor
from ..preprocess import MAX_PIXELS, check_max_pixels
from .inputs import ApiError, Drain, drain, parse_input, read_body

MAX_UPLOAD_BYTES = 10 * 2**20  # a phone photo is 2-8 MB
# Requests decoded and predicted at once; further requests wait their turn. Each decode may take
# up to max_pixels of memory (40 million by default). They wait in the event loop, not in the
# worker pool (40 threads): waiting there took every thread, and /health could not answer.
MAX_CONCURRENT = os.cpu_count() or 1
# Seconds a request body has to arrive in full once the server starts reading it (408 after):
# 10 MiB at 1.4 Mbit/s, a phone photo at far less. A client that stalls or trickles holds one of
# the 2 x max_concurrent places for bodies, and its memory, this long at most.
BODY_TIMEOUT = 60.0
# Seconds that requests in progress have to finish once SIGTERM or Ctrl-C stops the server; those
# still running then are cancelled (a second signal cancels them at once).
SHUTDOWN_GRACE = 3
STATIC = files("digits.serve") / "static"
log = logging.getLogger("digits.serve")


class PredictionOut(BaseModel):
    prediction: int = Field(description="the most probable digit")
    probabilities: list[float] = Field(description="softmax probability of each digit 0-9")
    pixels: list[list[int]] = Field(description="the 28x28 image the model saw (0-255, light ink on black)")


class ErrorOut(BaseModel):
    detail: str


_REQUEST_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "an image file"}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "image": {"type": "string", "description": "base64 of an image file (or a base64 data: URL)"},
        "pixels": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                   "description": "28x28 numbers 0-255, light ink on black, used as they are"}}}}}}}
_ERRORS = {code: {"model": ErrorOut, "description": text} for code, text in (
    (400, "malformed request"), (413, "body over the size limit"), (415, "unsupported content type"),
    (422, "not an image, over the pixel limit, or no digit in it"),
    (408, "the body did not arrive in full in time"), (503, "the server stopped while answering"))}


def _infer(predictor: Predictor, source, max_pixels: int) -> dict:
    if isinstance(source, np.ndarray):
        probs = predict_pixels(predictor, source)[0]
        pixels = source
    else:
        result = predict_image(predictor, source, max_pixels=max_pixels)
        probs, pixels = np.asarray(result.probabilities), result.pixels[0]
    return {"prediction": int(probs.argmax()), "probabilities": [float(p) for p in probs],
            "pixels": pixels.tolist()}


def _turns(count: int):
    """A function giving the running event loop's semaphore of ``count`` turns: one per loop, as
    a semaphore is bound to the first loop that waits on it (an app can outlive a loop)."""
    turns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> its semaphore

    def my_turns() -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in turns:
            turns[loop] = asyncio.Semaphore(count)
        return turns[loop]
    return my_turns


def create_app(predictor: Predictor, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_PIXELS, max_concurrent: int = MAX_CONCURRENT,
               body_timeout: float = BODY_TIMEOUT) -> FastAPI:
    """The app serving ``predictor``; limits in bytes (413 above) and decoded pixels (422 above),
    at most ``max_concurrent`` images decoded and predicted at once, and at most twice as many
    request bodies read or held at once, each within ``body_timeout`` seconds (408 after)."""
    check_max_pixels(max_pixels)
    # A body is read only in its place, held until its answer: a request waiting for one holds a
    # few hundred KiB at most (uvicorn stops reading a socket past 64 KiB unread). Twice the turns,
    # so that the next bodies arrive while images are predicted. (Bodies used to be read before
    # any limit: clients stalling part-way into large bodies held their memory for ever.)
    my_bodies, my_turns = _turns(2 * max_concurrent), _turns(max_concurrent)
    # No /docs or /redoc: FastAPI's pages load Swagger UI and ReDoc from CDNs (and fonts from
    # Google), and were blank without the internet; /openapi.json describes the API all the same.
    app = FastAPI(title="digits", version=__version__, description="Recognise a handwritten digit: "
                  "upload an image, or draw one at /.", docs_url=None, redoc_url=None)
    app.state.predictor = predictor
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _add_error_handlers(app)

    def get(path: str, **kwargs):
        """@app.get, answering HEAD as well (uptime monitors use it): FastAPI's routes, unlike
        Starlette's, answered HEAD with 405. Out of the schema, which would list it twice."""
        def register(endpoint):
            app.head(path, include_in_schema=False)(endpoint)  # uvicorn sends no body for HEAD
            return app.get(path, **kwargs)(endpoint)
        return register

    # async: these answer in the event loop, needing no worker thread while predictions run
    @get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @get("/health")
    async def health() -> dict:
        # the limit too: the drawing page refuses a larger file itself, before sending it
        return {"status": "ok", "backend": predictor.backend, "max_upload_bytes": max_upload_bytes}

    @get("/model")
    async def model() -> dict:
        return {"backend": predictor.backend, **predictor.description}

    @app.post("/predict", response_model=PredictionOut, responses=_ERRORS, openapi_extra=_REQUEST_DOC)
    async def predict(request: Request) -> dict:
        """An image file (multipart field `file`, or JSON `image` in base64) or 28x28 `pixels`."""
        async with my_bodies():  # waiting here holds no worker thread, nor its body
            body = await read_body(request, max_upload_bytes, body_timeout)
            async with my_turns():  # decoding waits its turn too
                source = await parse_input(request.headers, body)
                return await run_in_threadpool(_infer, predictor, source, max_pixels)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"Connection": "close"} if exc.close else None  # the rest of the body is not read
        if exc.drain is not None:
            return _DrainingResponse({"detail": exc.message}, exc.status, headers, drain=exc.drain)
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(DigitsError)
    async def image_error(request: Request, exc: DigitsError) -> JSONResponse:
        message = str(exc)
        return JSONResponse({"detail": message.removeprefix("image: ")}, status_code=422)

    app.add_middleware(_LastResort)


class _DrainingResponse(JSONResponse):
    """A JSON answer sent in full, then the rest of the request body read and thrown away (``Drain``)
    before the response ends and the connection closes. Closed with the body unread, the socket was
    reset by the kernel: a client sending the whole body (a browser, http.client, requests) got
    "connection reset" instead of the answer."""

    def __init__(self, content, status_code: int, headers: dict | None, drain: Drain):
        super().__init__(content, status_code=status_code, headers=headers)
        self.drain = drain

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        # all of the answer's bytes (Content-Length says how many) go out now, before the drain
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        await drain(receive, self.drain)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _LastResort:
    """Around the app's routes and handlers: an unexpected exception is logged once and answered 500
    as JSON, and a request cut off by the server stopping is answered 503. (FastAPI's handler for
    Exception runs in Starlette's ServerErrorMiddleware, which raises the exception again for the
    server to log: uvicorn logged each traceback a second time, "Exception in ASGI application".)"""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except asyncio.CancelledError:  # shutdown's grace period ran out, or a second Ctrl-C
            if not started:
                await _answer(scope, receive, send, 503, "the server is shutting down; try again later")
            raise
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if not started:  # else the server ends the connection: the answer is incomplete
                await _answer(scope, receive, send, 500, "internal error; the server log has the details")


async def _answer(scope, receive, send, status: int, detail: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)


def serve(model_path: str, host: str = "127.0.0.1", port: int = 8000, *,
          max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
          max_concurrent: int = MAX_CONCURRENT) -> None:
    """Load the model once and run the app with uvicorn until interrupted."""
    import uvicorn

    check_max_pixels(max_pixels)  # before the model is loaded
    # one thread per request: requests run in parallel in the worker pool instead
    app = create_app(load_predictor(model_path, threads=1), max_upload_bytes, max_pixels, max_concurrent)
    sock = _listen(host, port)
    # lifespan off: the app has no startup or shutdown work, and a second Ctrl-C, which skips the
    # shutdown event, left its task waiting to be cancelled: Starlette then logged a traceback
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=SHUTDOWN_GRACE)
    server = uvicorn.Server(config)
    server.handle_exit = functools.partial(_stop, server)  # uvicorn's signal handler: ours instead
    uvicorn_log = logging.getLogger("uvicorn.error")
    cancelled = _CancelledCount()
    for quieter in (_no_cancelled_traceback, cancelled):  # after uvicorn.Config has configured logging
        uvicorn_log.addFilter(quieter)
    # Our handler from now on: a Ctrl-C as soon as it says it is serving stops it quietly too (and
    # asyncio.run leaves Ctrl-C alone, instead of raising KeyboardInterrupt in the running task).
    previous = {}
    if threading.current_thread() is threading.main_thread():  # where signal handlers can be set
        previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    where = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    print(f"digits: serving {model_path} on http://{where}:{sock.getsockname()[1]}/ (Ctrl-C stops it)",
          flush=True)
    try:
        server.run(sockets=[sock])  # the socket we bound: no second bind that could fail or race
    except KeyboardInterrupt:  # Ctrl-C is how a server is stopped, not an error
        return
    finally:
        sock.close()
        for quieter in (_no_cancelled_traceback, cancelled):
            uvicorn_log.removeFilter(quieter)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise DigitsError("the server could not start; see the messages above")
    cancelled.report()


def _stop(server, sig: int, frame) -> None:
    """SIGINT or SIGTERM: the first stops the server, leaving requests in progress SHUTDOWN_GRACE
    seconds to finish; a second ends them at once. uvicorn's own handler let a stalled client keep
    the server running for ever (no time limit; a second SIGTERM did nothing), and noted each
    signal to raise it again once stopped: a second Ctrl-C then became a KeyboardInterrupt inside
    asyncio's teardown, printed as tracebacks of 40 to 120 lines."""
    if not server.should_exit:
        server.should_exit = True
        return
    server.force_exit = True
    try:  # force_exit alone: on Python 3.12+ uvicorn still waits out the grace period for the
        # connections to close (Server.wait_closed waits for them there)
        asyncio.get_running_loop().call_soon_threadsafe(_cancel_requests, server)
    except RuntimeError:  # the event loop is not running: nothing to cancel
        pass


def _cancel_requests(server) -> None:
    for task in list(server.server_state.tasks):
        task.cancel()  # each is answered 503 (_LastResort), and its connection closed


def _no_cancelled_traceback(record: logging.LogRecord) -> bool:
    """Drops uvicorn's "Exception in ASGI application" traceback for a request cancelled because the
    server stopped (its grace period ran out, or a second signal came): that is no error."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


class _CancelledCount(logging.Filter):
    """Counts the requests uvicorn cancelled when the grace period ran out, dropping its line saying
    so ("ERROR:    Cancel 1 running task(s), timeout graceful shutdown exceeded"): a stop is no
    error, and the process exits 0. serve says it in a plain line of its own once stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "timeout graceful shutdown exceeded" not in str(record.msg):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        self.count += args[0] if args and isinstance(args[0], int) else 1
        return False

    def report(self) -> None:
        n = self.count
        if n:
            print(f"digits: stopped; {n} request{'s' * (n != 1)} still running after {SHUTDOWN_GRACE} s "
                  f"{'was' if n == 1 else 'were'} cancelled", file=sys.stderr)


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port``, so that a busy port or an unknown host is one line of
    error before anything says it is serving (uvicorn logged it and exited with code 3)."""
    # IPPROTO_TCP, as getaddrinfo gives uvicorn when it binds: asyncio sets TCP_NODELAY only on
    # accepted sockets whose proto says TCP, and the default proto 0 left Nagle on. uvicorn writes a
    # response's head and body separately, so on a kept-alive connection the body then waited for
    # the client's delayed ACK: 40 ms more on every request (44-48 ms instead of 2-8 ms).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen()  # connections wait in the backlog from the moment it says it is serving
    except OSError as e:
        sock.close()
        why = "the port is in use; pick another with --port" if e.errno == errno.EADDRINUSE else (
            f"{e.strerror or e}; check --host and --port")
        raise DigitsError(f"cannot listen on {host}:{port}: {why}") from None
    return sock
