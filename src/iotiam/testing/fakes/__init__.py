"""In-memory fakes of every domain's stores, for tests of use cases.

One module per domain (``inventory``, ``pki``, ``enrollment``, ``credentials``,
``response``, ``attestation``, ``tokens``, ``admin``, ``audit``, ``policy``) implements
the store protocols of that domain's ``ports.py`` as the SQL stores behave
(tests/unit/storage/test_store_contracts.py runs the same assertions on both);
``unit_of_work`` holds them all behind ``MemoryDatabase``, ``changes`` answers what the
SQL change log answers, and ``services.memory_services()`` wires the domain services
on them the way ``iotiam.bootstrap`` wires them on the database.
"""
