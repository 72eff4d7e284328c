"""The one decoder of outside JSON refuses hostile documents with InvalidInput."""

import json

import pytest

from iotiam.errors import InvalidInput, PayloadTooLarge
from iotiam.untrusted import MalformedDocument, check_depth, compose_yaml, load_json


@pytest.mark.parametrize(("text", "reason"), [
    ("[" * 1000 + "]" * 1000, "nested"),
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ('{"id": "dupA", "id": "dupB"}', "twice"),
    ('{"state": "active", "state": "decommissioned"}', "twice"),
    ('{"n": NaN}', "NaN"),
    ('{"n": -Infinity}', "Infinity"),
    ("[1,", "not valid JSON"),
    (b"\"\xc3\x28\"", "UTF-8"),
    ('{"vendor": "a\\ud800b"}', r"lone surrogate \(\\ud800\)"),
    (b'{"vendor": "a\\uDC00"}', r"lone surrogate \(\\udc00\)"),
    ('{"x\\udbff": 1}', "lone surrogate"),
    ('[["\\\\", "\\ude00\\ud83d"]]', "lone surrogate"),
    ('{"vendor": "a\ud800b"}', "lone surrogate"),
    (b'{"vendor": "a\xed\xa0\x80b"}', "UTF-8"),
], ids=["fail/deep-1000", "fail/deep-100k", "fail/duplicate-id", "fail/duplicate-state",
        "fail/nan", "fail/infinity", "fail/truncated", "fail/not-utf8",
        "fail/escaped-lone-surrogate", "fail/escaped-lone-low-surrogate",
        "fail/lone-surrogate-in-a-key", "fail/pair-in-the-wrong-order",
        "fail/raw-lone-surrogate", "fail/utf8-encoded-surrogate"])
def test_refused(text: str | bytes, reason: str) -> None:
    with pytest.raises(MalformedDocument, match=reason) as caught:
        load_json(text, what="the body")
    assert isinstance(caught.value, InvalidInput)
    assert str(caught.value).startswith("the body ")


@pytest.mark.parametrize(("text", "value"), [
    (b'{"vendor": "\\ud83d\\ude00"}', {"vendor": "\U0001f600"}),
    (b'{"path": "C:\\\\ud800"}', {"path": "C:\\ud800"}),
], ids=["ok/surrogate-pair", "ok/escaped-backslash-before-u"])
def test_ok_surrogate_escapes_that_make_text(text: bytes, value: object) -> None:
    """A pair decodes to one character; ``\\\\ud800`` is a backslash and five letters."""
    assert load_json(text) == value


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


# -- YAML --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "reason"), [
    ("[" * 1000 + "]" * 1000, "nested more than 32 deep"),
    ("a: " + "[" * 100_000 + "]" * 100_000, "nested more than 32 deep"),
    ("".join(f"{'  ' * i}k:\n" for i in range(40)) + "  " * 40 + "k: 1\n",
     "nested more than 32 deep"),
    ("a: &x [1, 2]\nb: *x\n", "anchors or aliases"),
    ("a: &x 1\n", "anchors or aliases"),
    ("b: *x\n", "anchors or aliases"),
    ("a: 1\nb: 2\na: 3\n", "the key 'a' twice"),
    ("a: [1,\n", "not valid YAML"),
    ("a: 1\n---\nb: 2\n", "not valid YAML"),
    ("name: pol\x13icy\n", "not valid YAML: unacceptable character #x0013"),
], ids=["fail/deep-flow", "fail/deep-flow-100k", "fail/deep-block", "fail/alias",
        "fail/anchor", "fail/undefined-alias", "fail/duplicate-key", "fail/unclosed",
        "fail/two-documents", "fail/control-character"])
def test_yaml_refused(text: str, reason: str) -> None:
    with pytest.raises(MalformedDocument, match=reason) as caught:
        compose_yaml(text, what="the policy")
    assert str(caught.value).startswith("the policy ")


def test_yaml_refused_names_the_line() -> None:
    with pytest.raises(MalformedDocument) as caught:
        compose_yaml("a: 1\nb: 2\na: 3\n")
    assert caught.value.line == 3


def test_yaml_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        compose_yaml("a: " + "x" * 100, max_bytes=64)


def test_yaml_ok_at_the_depth_limit() -> None:
    node = compose_yaml("[" * 32 + "]" * 32)
    for _ in range(31):
        assert node is not None
        node = node.value[0]
    assert node is not None and node.value == []
    assert compose_yaml("") is None


def test_json_error_names_line_and_column() -> None:
    with pytest.raises(MalformedDocument, match=r"line 2 column 5") as caught:
        load_json('{"a":\n  1,,}')
    assert caught.value.line == 2


@pytest.mark.parametrize("document", [
    '{"a":1}', ' {"a":1}', '{"a":1} ', '{"a":1}\n', '{}', '{"a":[1,{"b":"}"}]}',
    '{"a":1} {"b":2}', '{"a":1}}', '{"a":1}x', '{"a":', '{"a":1', '{ }', '{"a":1}\n\n{',
    b'{"a":1}', b'\xef\xbb\xbf{"a":1}', '{"a":1}'.encode("utf-16-le"),
    '{"a":1}'.encode("utf-16-be"), '{"a":1}'.encode("utf-32-le"), b'{"a":"\xc3\xa9"}',
    # a value missing inside the object: the C scanner says so with StopIteration
    '{"a":[}', '{"a": }', '{"a":[1,]}', '{"a":{"b":}}',
], ids=lambda d: repr(d)[:30])
def test_ok_same_answer_as_json_loads(document: str | bytes) -> None:
    # the object fast path (no white space around it, UTF-8 at once) answers as json does
    try:
        expected = json.loads(document)
    except json.JSONDecodeError as e:
        with pytest.raises(MalformedDocument) as caught:
            load_json(document)
        assert f"{e.msg} (line {e.lineno} column {e.colno})" in caught.value.detail
    else:
        assert load_json(document) == expected
