"""The HTTP API against hostile clients: any body with any content type gets a 2xx or a 4xx with a
JSON message (never a 5xx or a stack trace), and no request can make the server read another model
or another file."""
import json
import logging

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digits.cli import main
from digits.predictor import load_predictor
from digits.serve import create_app
from test_serve import MODEL, seven_png

settings.register_profile("http", max_examples=50, deadline=5000, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ = settings.get_profile("http")
PATHS = {"/health", "/model", "/predict"}  # and the page at /, outside the schema


@pytest.fixture(scope="module")
def client():
    app = create_app(load_predictor(MODEL), max_upload_bytes=50_000, max_pixels=2_000_000)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _clean_4xx(r, allowed=(200,)) -> None:
    assert r.status_code in allowed or 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text and 'File "' not in r.text
    if r.status_code >= 400:
        assert isinstance(r.json()["detail"], (str, list))


_TYPES = st.sampled_from(["application/json", "multipart/form-data", "multipart/form-data; boundary=x",
                          "image/png", "text/plain", "", "application/json; charset=utf-16",
                          "multipart/form-data; boundary=" + "b" * 300])


@FUZZ
@given(_TYPES, st.binary(max_size=3000))
def test_any_body_with_any_content_type(client, kind, body):
    _clean_4xx(client.post("/predict", content=body, headers={"content-type": kind}))


def test_malformed_multipart_leaves_nothing_in_the_log(client, caplog):
    """python-multipart logged a warning for each malformed body, printed on stderr by logging's last
    resort ("Expected boundary character 97, got 122 at index 4"): any client could fill the log."""
    with caplog.at_level(logging.DEBUG):
        for body, kind in ((b"--zzz\r\ngarbage", "multipart/form-data; boundary=abc"),
                           (b"--abc\r\nno headers end", "multipart/form-data; boundary=abc"),
                           (b"\0" * 500, "multipart/form-data; boundary=x")):
            _clean_4xx(client.post("/predict", content=body, headers={"content-type": kind}), allowed=())
    assert [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")] == []


@settings(FUZZ, max_examples=25)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(
                        st.sampled_from(["image", "pixels", "checkpoint", "x"]), inner, max_size=3),
                    max_leaves=200))
def test_any_json(client, value):
    try:
        body = json.dumps(value).encode()
    except ValueError:
        return
    _clean_4xx(client.post("/predict", content=body, headers={"content-type": "application/json"}))


@pytest.mark.parametrize("body", [b"[" * 20000 + b"]" * 20000, b"{\"pixels\": " + b"[" * 20000,
                                  b'{"pixels": ' + b"[" * 900 + b"0" + b"]" * 900 + b"}"],
                         ids=["nested-20000", "nested-unclosed", "pixels-nested-900"])
def test_deeply_nested_json_is_a_400_not_a_crash(client, body):
    """json.loads raises RecursionError past Python's recursion limit: that is a bad body, not a 500."""
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    _clean_4xx(r, allowed=())
    assert r.status_code == 400 and r.json()["detail"] in ("the body is not valid JSON",
                                                            "'pixels' must be 28 rows of 28 numbers")


@FUZZ
@given(st.binary(min_size=1, max_size=2000), st.text(max_size=80))
def test_any_uploaded_file_and_file_name(client, data, name):
    _clean_4xx(client.post("/predict", files={"file": (name or "x", data, "image/png")}))


def test_only_the_configured_model_is_ever_used(client, tmp_path):
    """No parameter, field or header picks a model or a file: the answer and /model stay the same."""
    described = client.get("/model").json()
    expected = client.post("/predict", files={"file": ("7.png", seven_png(), "image/png")}).json()
    other = str(tmp_path / "other.pt")
    r = client.post(f"/predict?checkpoint={other}&model={other}", headers={"x-checkpoint": other},
                    files={"file": ("7.png", seven_png(), "image/png")})
    assert r.status_code == 200 and r.json() == expected
    r = client.post("/predict", files={"file": ("7.png", seven_png(), "image/png"),
                                       "checkpoint": ("c.pt", b"not a model", "application/octet-stream")})
    assert r.status_code == 400  # one file per request
    assert client.get("/model").json() == described
    assert set(client.get("/openapi.json").json()["paths"]) == PATHS
    for path in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd",
                 "/static/..%2f..%2f..%2fetc%2fpasswd", f"/static/{MODEL}"):
        r = client.get(path)
        assert r.status_code == 404 and "root:" not in r.text, path


def test_serve_refuses_a_malicious_checkpoint_before_listening(tmp_path, capsys):
    import torch

    from test_checkpoint import _Evil

    evil = _Evil()
    evil.target = str(tmp_path / "pwned")
    torch.save({"format": "digits-checkpoint", "meta": {}, "payload": evil}, tmp_path / "evil.pt")
    assert main(["serve", str(tmp_path / "evil.pt"), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "evil.pt" in err and "refused" in err and "\n" not in err.strip()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("flags", [["--max-upload-mb", "inf"], ["--max-upload-mb", "nan"], ["--max-upload-mb", "0"],
                                   ["--max-pixels", "-1"], ["--max-concurrent", "0"], ["--port", "70000"],
                                   ["--port", "-1"]], ids=" ".join)
def test_serve_refuses_impossible_limits_in_one_line(flags, capsys):
    assert main(["serve", str(MODEL), *flags]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("digits: error: ") and "\n" not in err.strip() and flags[0] in err
    assert "serving" not in out


def test_serve_on_a_port_in_use_or_an_unknown_host_is_one_line_and_exit_2(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for flags, why in ((["--port", str(port)], "in use"), (["--host", "999.1.1.1", "--port", "0"], "999.1.1.1")):
            assert main(["serve", str(MODEL), *flags]) == 2, flags
            out, err = capsys.readouterr()
            assert err.startswith("digits: error: ") and "\n" not in err.strip() and why in err, err
            assert "serving" not in out  # said only once it listens


@pytest.mark.slow
def test_serve_says_where_it_listens_answers_and_stops_cleanly_on_ctrl_c():
    """The real command: the line it prints names the port it bound (--port 0: a free one)."""
    import os
    import select
    import signal
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "digits", "serve", str(MODEL), "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 60)[0], "digits serve printed nothing in 60 s"
        line = proc.stdout.readline()
        assert line.startswith("digits: serving ") and "http://127.0.0.1:" in line, line
        url = line.split(" on ")[1].split()[0].rstrip("/")  # ... on http://127.0.0.1:PORT/ (Ctrl-C stops it)
        assert json.loads(urllib.request.urlopen(url + "/health", timeout=10).read())["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0 and proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait()
