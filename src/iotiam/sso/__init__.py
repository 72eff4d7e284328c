"""Console single sign-on through an OpenID Connect provider (authorization code + PKCE)."""
