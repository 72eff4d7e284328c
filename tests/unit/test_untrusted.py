"""The one decoder of outside JSON refuses hostile documents with InvalidInput."""

import pytest

from iotiam.errors import InvalidInput, PayloadTooLarge
from iotiam.untrusted import MalformedDocument, check_depth, load_json


@pytest.mark.parametrize(("text", "reason"), [
    ("[" * 1000 + "]" * 1000, "nested"),
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ('{"id": "dupA", "id": "dupB"}', "twice"),
    ('{"state": "active", "state": "decommissioned"}', "twice"),
    ('{"n": NaN}', "NaN"),
    ('{"n": -Infinity}', "Infinity"),
    ("[1,", "not valid JSON"),
    (b"\"\xc3\x28\"", "UTF-8"),
], ids=["fail/deep-1000", "fail/deep-100k", "fail/duplicate-id", "fail/duplicate-state",
        "fail/nan", "fail/infinity", "fail/truncated", "fail/not-utf8"])
def test_refused(text: str | bytes, reason: str) -> None:
    with pytest.raises(MalformedDocument, match=reason) as caught:
        load_json(text, what="the body")
    assert isinstance(caught.value, InvalidInput)
    assert str(caught.value).startswith("the body ")


def test_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        load_json("[" + "1," * 100 + "1]", max_bytes=64)


def test_ok_at_the_depth_limit() -> None:
    deep = load_json("[" * 32 + "]" * 32)
    for _ in range(31):
        deep = deep[0]
    assert deep == []


def test_ok_nested_objects() -> None:
    assert load_json('{"a": {"b": [1, 2, {"c": null}]}}') == {"a": {"b": [1, 2, {"c": None}]}}


def test_check_depth_on_decoded_value() -> None:
    value: list[object] = []
    node = value
    for _ in range(40):
        child: list[object] = []
        node.append(child)
        node = child
    with pytest.raises(MalformedDocument):
        check_depth(value, max_depth=32)
    check_depth(value, max_depth=41)
