"""Reading a POST /predict request: its size and time limits, and its image or 28x28 pixels as typed values.

Every problem becomes an ``ApiError`` with the HTTP status and a message for the client.

    body = await read_body(request, limit=10 * 2**20, timeout=60)
    image = await parse_input(request.headers, body)     # bytes of an image, or uint8 (28, 28)
    await drain(receive, error.drain)                    # after answering a 413: the rest, discarded
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

# python-multipart logs a warning for each malformed multipart body ("Expected boundary character
# 122, got 98 at index 4"), printed on stderr by logging's last resort: any client could fill the
# server's log. Each of them is also a MultiPartException, which the client gets as a 400.
for _name in ("python_multipart", "multipart"):  # its package, and its name before 0.0.13
    logging.getLogger(_name).setLevel(logging.CRITICAL)


# Bytes of a refused body (413) read and thrown away after the answer, so that a client sending
# it all gets the answer: closing a socket with unread data makes the kernel reset the connection,
# and the client, still sending, saw "connection reset" (a browser "Failed to fetch") instead of
# the 413. Larger bodies are not read: their clients get the reset.
MAX_DRAIN_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Drain:
    """The rest of a refused request body to read and discard: at most ``max_bytes`` of it, until
    ``deadline`` (the event loop's clock; None: no limit)."""
    max_bytes: int
    deadline: float | None


class ApiError(Exception):
    """``close``: end the connection after the answer, as the rest of the body was not read;
    ``drain``: first read and discard that rest (``Drain``), when its client is sending it."""

    def __init__(self, status: int, message: str, close: bool = False, drain: Drain | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close
        self.drain = drain


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``limit`` bytes, declared or not, and
    (408) when it has not all arrived ``timeout`` seconds after the first read. The 413 says how
    much of the rest to drain within that same time."""
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_big(limit, request, deadline, left=int(declared))
    try:
        return await asyncio.wait_for(_read(request, limit, deadline), timeout)
    except asyncio.TimeoutError:  # a client that stalls or trickles: it held memory and a turn
        raise ApiError(408, f"the request body did not arrive within {timeout:g} s", close=True) from None


def _too_big(limit: int, request: Request, deadline: float | None, left: int | None,
             reading: bool = False) -> ApiError:
    """``left``: the bytes of the body still to come, when known (Content-Length). ``reading``: the
    body has begun to be read (uvicorn has then answered an "Expect: 100-continue" with its go-ahead)."""
    # A client that sent "Expect: 100-continue" (curl does for large bodies) and is refused before any
    # read waits for a go-ahead that never comes: it sends no body, and has none to drain. Once the
    # body is being read it is coming, go-ahead given, and is drained. Nor is one over the bound drained.
    waiting = not reading and "100-continue" in request.headers.get("expect", "").lower()
    drain = None if waiting or (left is not None and left > MAX_DRAIN_BYTES) else Drain(MAX_DRAIN_BYTES, deadline)
    return ApiError(413, f"request body over the limit of {limit:,} bytes; send a smaller image",
                    close=True, drain=drain)


async def _read(request: Request, limit: int, deadline: float | None) -> bytes:
    """The body, message by message from ASGI's receive (whose more_body says whether the rest is
    still to come: a body whose last message passes the limit has nothing left to drain, and a drain
    would wait for a message that never comes)."""
    body = bytearray()  # grown in place: joining a list of chunks held the body twice at the end
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ApiError(400, "the client disconnected before sending the whole request")
        chunk, more = message.get("body", b""), message.get("more_body", False)
        if len(body) + len(chunk) > limit:
            error = _too_big(limit, request, deadline, left=None, reading=True)
            if not more:
                error.drain = None  # all of it has arrived
            raise error
        body += chunk
        if not more:
            return bytes(body)


async def drain(receive, how: Drain) -> None:
    """Reads and discards the rest of the request body from the ASGI ``receive``: until its end,
    ``how.max_bytes`` or ``how.deadline``, whichever comes first. Holds one chunk at a time."""
    async def discard() -> None:
        left = how.max_bytes
        while left > 0:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: the client has gone
                return
            left -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    timeout = None if how.deadline is None else max(0.0, how.deadline - asyncio.get_running_loop().time())
    try:
        await asyncio.wait_for(discard(), timeout)
    except asyncio.TimeoutError:  # a client that stalls: the connection is closed all the same
        pass


async def _once(body: bytes):
    yield body


async def parse_input(headers: Headers, body: bytes) -> bytes | np.ndarray:
    """Image bytes (multipart field ``file``, or JSON ``{"image": base64}``) or uint8 (28, 28)
    pixels (JSON ``{"pixels": [[...28 numbers...] x 28]}``, light ink on black, 0-255)."""
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await _from_form(headers, body)
    if kind == "application/json":  # megabytes of JSON and base64 take a while: not in the event loop
        return await run_in_threadpool(_from_json, body)
    raise ApiError(415, "send multipart/form-data with an image in the field 'file', or JSON "
                   "{\"image\": \"<base64>\"} or {\"pixels\": [[28 numbers] x 28]}")


async def _from_form(headers: Headers, body: bytes) -> bytes:
    try:
        form = await MultiPartParser(headers, _once(body), max_files=1, max_fields=10).parse()
    except MultiPartException as e:
        raise ApiError(400, f"malformed multipart request: {e.message}") from None
    try:
        upload = form.get("file")
        if isinstance(upload, str):  # curl -F 'file=<seven.png' sends the bytes as text, not a file
            raise ApiError(400, "the multipart field 'file' must be a file upload, not text: "
                           "curl -F 'file=@seven.png' (with @)")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "no file in the multipart field 'file' (curl -F 'file=@seven.png')")
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise ApiError(400, "the uploaded file is empty")
    return data


def _from_json(body: bytes) -> bytes | np.ndarray:
    try:
        # strict=False: newlines may stand in a string, as in {"image": "$(base64 seven.png)"}
        payload = json.loads(body, strict=False)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[" * 50000 nests too deep
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(payload, dict) or ("image" in payload) == ("pixels" in payload):
        raise ApiError(400, "JSON must be an object with exactly one of 'image' (base64 of an image "
                       "file, a data: URL is fine) or 'pixels' (28x28 numbers 0-255)")
    if "pixels" in payload:
        return _pixels(payload["pixels"])
    text = payload["image"]
    if not isinstance(text, str) or not text:
        raise ApiError(400, "'image' must be a non-empty base64 string")
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.lower().endswith(";base64"):
            raise ApiError(400, "'image' as a data: URL must be base64: data:image/png;base64,...")
    data = _base64(text)
    if not data:
        raise ApiError(400, "'image' is empty")
    return data


def _base64(text: str) -> bytes:
    """Base64 as tools write it: wrapped in lines (GNU base64 wraps at 76 columns), in the URL-safe
    alphabet (- and _ for + and /) or without its = padding. Anything else is a 400."""
    text = "".join(text.split()).translate(_URL_SAFE)
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "'image' is not valid base64") from None


_URL_SAFE = str.maketrans("-_", "+/")


def _pixels(value) -> np.ndarray:
    try:
        pixels = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, RecursionError):  # numpy refuses depth > 32 itself; be sure
        raise ApiError(400, "'pixels' must be 28 rows of 28 numbers") from None
    except OverflowError:  # an integer too large for a float
        raise ApiError(400, "'pixels' values must be numbers from 0 to 255 (light ink on black)") from None
    if pixels.shape != (28, 28):
        raise ApiError(400, f"'pixels' must be 28 rows of 28 numbers, got shape {pixels.shape}")
    # numpy reads "255" and true as numbers; JSON that sends them is malformed, so refuse it
    if any(type(v) not in (int, float) for row in value for v in row):
        raise ApiError(400, "'pixels' must be 28 rows of 28 numbers, not strings or true/false")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise ApiError(400, "'pixels' values must be numbers from 0 to 255 (light ink on black)")
    return np.round(pixels).astype(np.uint8)
