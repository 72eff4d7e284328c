"""Discovery sources: one module per kind of input, each a ``ports.SightingSource``.

Each turns one input (an nmap XML, a leases file, a Zeek log, JSON lines ...) into
sightings, a record at a time, and is listed by name in ``discovery/catalog.py``.
"""
