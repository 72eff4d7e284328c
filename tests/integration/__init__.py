"""Integration tests: a real ``iotiam serve`` driven by the CLI, openssl, curl and pkilint."""
