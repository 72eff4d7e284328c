"""Two imports at once on the database: one at a time (the advisory lock on PostgreSQL,
the writer lock on SQLite), so the same things seen twice make one asset each."""

from __future__ import annotations

import io
import json
import threading

from conftest import Installation
from iotiam.discovery.models import SourceContext
from iotiam.kernel import SYSTEM


def test_concurrent_imports_ok_one_asset_per_thing(sql_installation: Installation) -> None:
    discovery = sql_installation.services.discovery
    things = 400

    def lines(source: str) -> bytes:
        # each import sees every thing, under another source (so no line is a duplicate)
        return b"".join(json.dumps({
            "seen_at": 1772359200 + n, "source": source, "mac": f"02:00:00:00:{n >> 8:02x}:"
            f"{n & 255:02x}"}).encode() + b"\n" for n in range(things))

    reports = []

    def run(source: str) -> None:
        reports.append(discovery.import_stream(SYSTEM, "jsonl", io.BytesIO(lines(source)),
                                               SourceContext()))

    threads = [threading.Thread(target=run, args=(s,)) for s in ("arp", "dhcpd")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(r.new_assets for r in reports) == [0, things]
    assert sum(r.added for r in reports) == 2 * things
    assert discovery.count_assets(SYSTEM) == things
    assert {a.sources for a in discovery.assets(SYSTEM, limit=1000)} == {("arp", "dhcpd")}
