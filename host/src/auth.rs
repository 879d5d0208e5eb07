//! Authentication: OIDC providers, JWKS caching, JWT verification, sandbox secret.
