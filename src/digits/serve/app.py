"""The HTTP app: POST /predict, GET /health, GET /model, the drawing page at / and /openapi.json.

The app is built around one loaded model (the one the server was started with); inference runs
in a worker thread so that the event loop keeps answering. No error ever sends a stack trace.
server.py runs it.

    app = create_app(load_predictor("model.onnx"))       # test it with fastapi.testclient
"""
from __future__ import annotations

import asyncio
import logging
import os
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
from ..predictor import Predictor
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
