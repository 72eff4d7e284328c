"""``ParsedRows`` saves parsing only: a row read with any other value is built anew."""

from __future__ import annotations

from iotiam.storage.raw import ParsedRows


def test_ok_the_same_row_is_built_once_and_a_changed_row_again() -> None:
    built: list[tuple[object, ...]] = []
    rows: ParsedRows[dict[str, object]] = ParsedRows(limit=2)

    def build(row: tuple[object, ...]) -> dict[str, object]:
        built.append(row)
        return {"id": row[0], "state": row[1]}

    active = rows.get(("d1", "active"), build)
    assert rows.get(("d1", "active"), build) is active
    # the device was quarantined: its row differs, so the old object is never served
    quarantined = rows.get(("d1", "quarantined"), build)
    assert quarantined == {"id": "d1", "state": "quarantined"}
    assert built == [("d1", "active"), ("d1", "quarantined")]
    rows.get(("d2", "active"), build)  # beyond the limit: the oldest is forgotten
    assert rows.get(("d1", "active"), build) is not active
    assert len(built) == 4
