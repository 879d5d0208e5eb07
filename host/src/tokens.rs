//! The gateway's own stateless HMAC tokens.
