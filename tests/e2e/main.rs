//! End-to-end tests: the real wasmgate binary, a real JWKS server, the real sandbox driver.
