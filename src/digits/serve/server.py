"""Running the app: the listening socket, uvicorn, and the stop on Ctrl-C or SIGTERM.

    serve("runs/seed/checkpoint.pt", port=8000)          # until Ctrl-C
"""
from __future__ import annotations

import asyncio
import errno
import functools
import logging
import signal
import socket
import sys
import threading

from ..errors import DigitsError
from ..predictor import load_predictor
from ..preprocess import MAX_PIXELS, check_max_pixels
from .app import MAX_CONCURRENT, MAX_UPLOAD_BYTES, create_app
from .protocol import BACKLOG, HEAD_TIMEOUT, limited_protocol

# Seconds that requests in progress have to finish once SIGTERM or Ctrl-C stops the server; those
# still running then are cancelled (a second signal cancels them at once).
SHUTDOWN_GRACE = 3


def serve(model_path: str, host: str = "127.0.0.1", port: int = 8000, *,
          max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
          max_concurrent: int = MAX_CONCURRENT, head_timeout: float = HEAD_TIMEOUT,
          max_connections: int | None = None) -> None:
    """Load the model once and run the app with uvicorn until interrupted (protocol.py: the limits
    on request heads and connections; None: all but a reserve of the descriptors allowed)."""
    import uvicorn

    check_max_pixels(max_pixels)  # before the model is loaded
    # one thread per request: requests run in parallel in the worker pool instead
    app = create_app(load_predictor(model_path, threads=1), max_upload_bytes, max_pixels, max_concurrent)
    sock = _listen(host, port)
    # lifespan off: the app has no startup or shutdown work, and a second Ctrl-C, which skips the
    # shutdown event, left its task waiting to be cancelled: Starlette then logged a traceback
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=SHUTDOWN_GRACE,
                            http=limited_protocol(head_timeout, max_connections), backlog=BACKLOG)
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
