"""OAuth2 for machines: clients, client authentication, access tokens and their lifecycle.

``iotiam.tokens.verify`` is the helper Python resource servers use to accept tokens.
"""
