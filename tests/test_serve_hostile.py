"""The HTTP API against hostile clients: any body with any content type gets a 2xx or a 4xx with a
JSON message (never a 5xx or a stack trace), and no request can make the server read another model
or another file."""
import json

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
