"""Performance benchmarks of iotiam against the targets of the issue (not tests).

Run everything with ``make bench`` (``.venv/bin/python -m benchmarks``); a smoke run
with ``--quick``; one benchmark with ``--only NAME``. Each run works in a throw-away
data directory on SQLite (``--database-url`` for PostgreSQL) and loads only 127.0.0.1.
Every load loop stops at a count or a time cap, whichever comes first.

Profiling a benchmark:

    .venv/bin/python -m cProfile -o issuance.pstats -m benchmarks --only issuance
    py-spy record --subprocesses -o api.svg -- .venv/bin/python -m benchmarks --only api-issuance

(``--subprocesses`` follows into the ``iotiam serve`` process the API benchmarks start.)
"""
