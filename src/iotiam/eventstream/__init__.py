"""Detection events through NATS JetStream: publishers and partition-owning workers.

An adapter, like ``iotiam.broker``: the detection domain declares what it needs
(``detection.ports.EventPublisher``, ``detection.partitions``) and this package does it
over NATS. How it works and what it guarantees: ``docs/event-stream.md``.
"""
