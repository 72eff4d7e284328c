"""Discovery: what is seen on the network, reconciled with what is registered."""
