"""The HTTP protocol uvicorn runs for each connection: uvicorn's own (h11), with two limits it lacks.

uvicorn 0.54 gives a connection that has not sent a whole request head all the time it likes: a
client that opens connections and sends a few bytes of a head, or none, holds one file descriptor
each for ever. Once they held all the process may open (1,024 is usual), the server could accept
no other (asyncio logged "Too many open files" tracebacks, and /health timed out) for as long as
they stayed open. Here:

- a connection that waits for its first request head and has received none within HEAD_TIMEOUT
  seconds, or waits for the next one (a kept-alive connection that has sent part of a head) for
  a whole interval of checks, is answered 408 and closed;
- a connection beyond ``max_connections`` (by default what the descriptors the process may open
  leave after a reserve: 704 of 1,024) is answered 503 and closed at once, so that the server
  always has descriptors left for its own work and recovers as soon as the flood stops.

    config = uvicorn.Config(app, http=limited_protocol(head_timeout=10.0), backlog=BACKLOG)
"""
from __future__ import annotations

import asyncio
import functools
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    import resource
except ImportError:  # Windows: no descriptor limit to read; taken as the usual 1,024
    resource = None

HEAD_TIMEOUT = 10.0  # seconds a connection may take to send a request head
RESERVED = 64  # descriptors kept for the server itself (model, logs, its listening socket)
BACKLOG = 64  # connections the kernel queues; asyncio accepts up to this many at a time
_BUSY = object()  # a check's note that the connection was not waiting for a request head


def default_max_connections() -> int:
    """The descriptors this process may open, less RESERVED and four bursts of accepted connections
    (asyncio accepts a backlog's worth at a time, and accepts again while those of the bursts
    before are still on their way to connection_made, or to being closed), at least 16."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if resource else 1024
    return 4096 if resource and soft == resource.RLIM_INFINITY else max(16, soft - RESERVED - 4 * BACKLOG)


def limited_protocol(head_timeout: float = HEAD_TIMEOUT, max_connections: int | None = None) -> type:
    """uvicorn's h11 protocol with a time limit on request heads and a cap on connections."""
    cap = default_max_connections() if max_connections is None else max_connections
    return type("LimitedH11Protocol", (_Limited,), {"head_timeout": head_timeout, "max_connections": cap})


def _answer(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class _Limited(H11Protocol):
    head_timeout: float = HEAD_TIMEOUT
    max_connections: int = 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            self._refuse(503, "Service Unavailable", "too many connections; try again shortly")
            return
        self._watch(None)  # waiting for its first head: refused if none has come at the first check

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _watch(self, seen) -> None:
        """Check again in head_timeout seconds; ``seen``: the connection's latest request (None
        before its first) if it was waiting for a head at this check, _BUSY if not."""
        self._head_timer = self.loop.call_later(self.head_timeout, functools.partial(self._check_head, seen))

    def _check_head(self, seen) -> None:
        """Refuse a connection that has waited for a request head (received none, or a part of
        one) for a whole interval: between head_timeout and twice that."""
        waiting = self.conn.their_state is h11.IDLE
        if waiting and seen is self.cycle and not self.transport.is_closing():
            self._refuse(408, "Request Timeout", f"no request head within {self.head_timeout:g} s")
        else:
            self._watch(self.cycle if waiting else _BUSY)

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self._head_timer = None
        self.transport.write(_answer(status, reason, detail))
        self.transport.close()
