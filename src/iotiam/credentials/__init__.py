"""Credentials other than certificates (PSKs), and one lifecycle view over all of them."""
