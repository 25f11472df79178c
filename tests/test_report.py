"""The run folder's written results (report.py): JSON that strict parsers read."""
import json
import math

import pytest

from digits.report import write_json


def _strict(text: str):
    """json.loads as JavaScript's JSON.parse or jq reads: NaN and Infinity are not JSON (RFC 8259)."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_write_json_writes_a_non_finite_float_as_null_and_keeps_every_other_value(tmp_path):
    value = {"std": float("nan"), "rows": [{"ci95": float("inf"), "mean": 0.1 + 0.2}, (-math.inf, 3)],
             "n": 1, "ok": True, "none": None, "name": "nan"}
    written = _strict(write_json(tmp_path / "x.json", value).read_text())
    assert written == {"std": None, "rows": [{"ci95": None, "mean": 0.1 + 0.2}, [None, 3]], "n": 1, "ok": True,
                       "none": None, "name": "nan"}
    assert math.isnan(value["std"])  # the caller's value is left as it was


def test_write_json_leaves_finite_values_as_json_dumps_writes_them(tmp_path):
    value = {"a": [1, 2.5, 1e-300, 1.7976931348623157e308], "b": {"c": "d", "e": [[0, 1], [1, 0]]}}
    assert (write_json(tmp_path / "y.json", value).read_text()) == json.dumps(value, indent=2) + "\n"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_strict_reading_refuses_what_json_dumps_writes_by_default(bad):
    with pytest.raises(ValueError, match="not JSON"):  # the check above could fail
        _strict(json.dumps({"v": bad}))
