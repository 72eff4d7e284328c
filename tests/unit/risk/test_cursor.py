"""A page cursor (``score.id``) is read back only as the register wrote it: anything
else is a 400 before it reaches a query."""

from __future__ import annotations

import pytest

from iotiam.errors import InvalidInput
from iotiam.risk.models import RiskEntry, Subject, Weighting, entry_id, is_entry_id
from iotiam.risk.scoring import MAX_SCORE
from iotiam.risk.service import decode_cursor, encode_cursor

ID = entry_id(Subject.PSK, "d2")


def entry(score: int, subject: Subject = Subject.PSK) -> RiskEntry:
    return RiskEntry(entry_id(subject, "d2"), subject, "d2", "/root/", None, None, score,
                     (), (), Weighting())


@pytest.mark.parametrize("score", [0, 7, MAX_SCORE])
@pytest.mark.parametrize("subject", list(Subject))
def test_ok_every_cursor_the_register_writes_reads_back(score: int, subject: Subject) -> None:
    written = entry(score, subject)
    assert decode_cursor(encode_cursor(written)) == (score, written.id)


def test_ok_no_cursor_is_the_first_page() -> None:
    assert decode_cursor(None) is None and decode_cursor("") is None


@pytest.mark.parametrize("text", [
    f"{MAX_SCORE + 1}.{ID}", f"99999999999999999999.{ID}", f"9223372036854775808.{ID}",
    f"-1.{ID}", f"+1.{ID}", f"01.{ID}", f"\u0661.{ID}", f" 1.{ID}", f"1.5.{ID}", "1.x",
    "1.", ".psk-" + "0" * 20, ID, f"1.{ID.upper()}", f"1.{ID}\n", f"1.{ID}0",
    f"1.{ID[:-1]}", "1.cat-" + "0" * 20, f"1.{ID} "],
    ids=["fail/above-max-score", "fail/huge-score", "fail/int64-overflow",
         "fail/negative", "fail/plus-sign", "fail/leading-zero", "fail/arabic-digit",
         "fail/space-before", "fail/two-dots", "fail/not-an-id", "fail/no-id",
         "fail/no-score", "fail/no-dot", "fail/upper-case", "fail/newline",
         "fail/long-digest", "fail/short-digest", "fail/unknown-subject",
         "fail/space-after"])
def test_fail_cursor_the_register_never_wrote(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a cursor this API returned"):
        decode_cursor(text)


def test_ok_entry_id_shape() -> None:
    assert all(is_entry_id(entry_id(s, "anything/at all")) for s in Subject)
    assert not is_entry_id("device-" + "g" * 20)
