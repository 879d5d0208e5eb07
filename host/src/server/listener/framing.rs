//! HTTP/1.1 framing, checked on the raw bytes before hyper parses them.
//!
//! hyper refuses most malformed request heads by itself (400 or 431, then
//! it closes the connection), but it accepts a few forms that RFC 9112 lets
//! a server accept and that a gateway must not, because an upstream or
//! another proxy may frame them differently:
//!
//! - `Content-Length` together with `Transfer-Encoding`: hyper drops the
//!   `Content-Length` and reads the body as chunked;
//! - a `Transfer-Encoding` list that ends in `chunked` (`gzip, chunked`,
//!   `chunked, chunked`), or one split over several fields;
//! - the same `Content-Length` repeated;
//! - a bare LF as a line end, which turns `x-a: 1\nx-b: 2` into two fields.
//!
//! By the time a request reaches a service the evidence is gone (the
//! `Content-Length` is removed), so [`Inspected`] sees the bytes hyper reads,
//! in the same order, follows the message framing exactly as hyper does
//! (head, `Content-Length` body, chunked body with trailers) and checks
//! every request head. The first violation is kept in the connection's
//! [`Verdict`]; the listener's service then refuses every request of that
//! connection, before anything is routed or forwarded, with 400 (431 for
//! size) and `Connection: close`. The checks are a superset of hyper's, so
//! a malformed head is refused even where hyper would accept it. After a
//! violation the connection is closed gracefully: the gateway's half is
//! shut down and what the client still sends is read and discarded for a
//! short while, so the client reads the response instead of a reset.
//!
//! HTTP/2 connections (the client preface) are not inspected.
//!
//! This module holds the [`Scanner`], which follows and checks the bytes,
//! and the [`Verdict`]; the I/O wrapper [`Inspected`] and the graceful close
//! are in the private `inspected` submodule, re-exported here.

use std::sync::atomic::{AtomicU8, Ordering};

use http::StatusCode;

use crate::config::Http1Config;

mod inspected;

pub(super) use inspected::Inspected;

/// `SM\r\n\r\n`, the HTTP/2 client preface after its request-like line.
const PREFACE_TAIL: usize = 6;

/// A framing violation in a request head or chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Violation {
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthWithTransferEncoding = 1,
    /// More than one `Content-Length` field, equal or not.
    RepeatedContentLength,
    /// A `Content-Length` that is not a plain decimal number.
    InvalidContentLength,
    /// A `Transfer-Encoding` other than exactly `chunked` (a list, another
    /// coding, or a repeated field).
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 request.
    TransferEncodingInHttp10,
    /// A field line starting with a space or tab (obs-fold).
    ObsFold,
    /// NUL or another control character in the request line, a field
    /// value or a trailer.
    ControlCharacter,
    /// A CR not followed by LF.
    BareCr,
    /// An LF not preceded by CR.
    BareLf,
    /// A field line without a colon or with an invalid name.
    InvalidFieldName,
    /// A request head larger than `server.http1.max_request_head_bytes`.
    HeadTooLarge,
    /// More fields than `server.http1.max_headers`.
    TooManyHeaders,
    /// A malformed chunk size line or chunk end.
    InvalidChunk,
}

const VIOLATIONS: [Violation; 13] = [
    Violation::ContentLengthWithTransferEncoding,
    Violation::RepeatedContentLength,
    Violation::InvalidContentLength,
    Violation::UnsupportedTransferEncoding,
    Violation::TransferEncodingInHttp10,
    Violation::ObsFold,
    Violation::ControlCharacter,
    Violation::BareCr,
    Violation::BareLf,
    Violation::InvalidFieldName,
    Violation::HeadTooLarge,
    Violation::TooManyHeaders,
    Violation::InvalidChunk,
];

impl Violation {
    /// The status the request is refused with.
    pub(super) fn status(self) -> StatusCode {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A short reason, for the log.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::ContentLengthWithTransferEncoding => "both Content-Length and Transfer-Encoding",
            Self::RepeatedContentLength => "more than one Content-Length",
            Self::InvalidContentLength => "invalid Content-Length",
            Self::UnsupportedTransferEncoding => "Transfer-Encoding other than a single chunked",
            Self::TransferEncodingInHttp10 => "Transfer-Encoding in HTTP/1.0",
            Self::ObsFold => "obs-fold (folded header line)",
            Self::ControlCharacter => "control character in the request line or a header value",
            Self::BareCr => "CR not followed by LF",
            Self::BareLf => "LF not preceded by CR",
            Self::InvalidFieldName => "invalid header line or name",
            Self::HeadTooLarge => "request head too large",
            Self::TooManyHeaders => "too many header fields",
            Self::InvalidChunk => "malformed chunked body",
        }
    }
}

/// The first framing violation seen on one connection, shared between the
/// connection's I/O and its service.
#[derive(Debug, Default)]
pub(super) struct Verdict(AtomicU8);

impl Verdict {
    fn set(&self, v: Violation) {
        let _ = self.0.compare_exchange(0, v as u8, Ordering::Release, Ordering::Relaxed);
    }

    /// The first violation, if any.
    pub(super) fn get(&self) -> Option<Violation> {
        let n = self.0.load(Ordering::Acquire);
        VIOLATIONS.get(usize::from(n).checked_sub(1)?).copied()
    }
}

/// Where the scanner is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages, where empty lines are skipped (as httparse does).
    Idle,
    /// Inside a request head, collected in `Scanner::head`.
    Head,
    /// `Content-Length` body bytes still to come.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// The rest of the HTTP/2 client preface (`SM\r\n\r\n`), bytes still to
    /// come; not inspected, but the preface counts as a head only once whole.
    Preface(usize),
    /// Not inspected: the connection speaks HTTP/2, or a violation was seen.
    Off,
}

/// The chunked-body states of hyper's decoder (`proto/h1/decode.rs`), with
/// the chunk size where one is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    SizeStart,
    Size(u64),
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// The HTTP/2 client preface.
    Http2,
}

/// Follows the HTTP/1.1 framing of one connection and checks every head.
#[derive(Debug)]
pub(super) struct Scanner {
    state: State,
    head: Vec<u8>,
    max_head: usize,
    max_headers: usize,
    first: bool,
    /// Request heads completed (the HTTP/2 preface counts as one).
    heads: u64,
    http2: bool,
}

impl Scanner {
    pub(super) fn new(limits: &Http1Config) -> Self {
        Self {
            state: State::Idle,
            head: Vec::new(),
            max_head: limits.max_request_head_bytes,
            max_headers: limits.max_headers,
            first: true,
            heads: 0,
            http2: false,
        }
    }

    /// Whether the scanner is inside a request head (or the HTTP/2 client
    /// preface).
    pub(super) fn in_head(&self) -> bool {
        matches!(self.state, State::Head | State::Preface(_))
    }

    /// Request heads completed so far (the HTTP/2 preface counts as one).
    pub(super) fn heads(&self) -> u64 {
        self.heads
    }

    /// Whether the connection turned out to speak HTTP/2.
    pub(super) fn is_http2(&self) -> bool {
        self.http2
    }

    /// Takes the next bytes of the connection; the first violation stops
    /// the inspection.
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<(), Violation> {
        let result = self.feed_inner(data);
        if result.is_err() {
            self.state = State::Off;
            self.head = Vec::new();
        }
        result
    }

    fn feed_inner(&mut self, mut data: &[u8]) -> Result<(), Violation> {
        while let Some(&byte) = data.first() {
            match self.state {
                State::Off => return Ok(()),
                State::Idle => {
                    let skip = data.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
                    data = &data[skip..];
                    if !data.is_empty() {
                        self.state = State::Head;
                    }
                }
                State::Head => {
                    let Some(used) = self.collect_head(data)? else { return Ok(()) };
                    data = &data[used..];
                    let framing = self.check_head()?;
                    self.first = false;
                    if framing == Framing::Http2 {
                        self.http2 = true;
                    } else {
                        self.heads += 1;
                    }
                    if self.head.capacity() > 16 * 1024 {
                        self.head = Vec::new();
                    } else {
                        self.head.clear();
                    }
                    self.state = match framing {
                        Framing::Empty | Framing::Length(0) => State::Idle,
                        Framing::Length(n) => State::Body(n),
                        Framing::Chunked => State::Chunked(Chunk::SizeStart),
                        Framing::Http2 => State::Preface(PREFACE_TAIL),
                    };
                }
                State::Preface(left) => {
                    let n = data.len().min(left);
                    data = &data[n..];
                    self.state = if n == left {
                        self.heads += 1;
                        State::Off
                    } else {
                        State::Preface(left - n)
                    };
                }
                State::Body(left) => {
                    let (rest, left) = skip(data, left);
                    data = rest;
                    self.state = if left == 0 { State::Idle } else { State::Body(left) };
                }
                State::Chunked(Chunk::Data(left)) => {
                    let (rest, left) = skip(data, left);
                    data = rest;
                    self.state = State::Chunked(if left == 0 { Chunk::DataCr } else { Chunk::Data(left) });
                }
                State::Chunked(chunk) => {
                    data = &data[1..];
                    self.state = chunk_step(chunk, byte)?;
                }
            }
        }
        Ok(())
    }

    /// Appends head bytes up to the blank line; `Some(n)` once the head is
    /// complete after `n` bytes of `data`.
    fn collect_head(&mut self, data: &[u8]) -> Result<Option<usize>, Violation> {
        for (i, &b) in data.iter().enumerate() {
            let prev = self.head.last().copied();
            if b == b'\n' && prev != Some(b'\r') {
                return Err(Violation::BareLf);
            }
            if prev == Some(b'\r') && b != b'\n' {
                return Err(Violation::BareCr);
            }
            self.head.push(b);
            if self.head.len() > self.max_head {
                return Err(Violation::HeadTooLarge);
            }
            if b == b'\n' && self.head.ends_with(b"\r\n\r\n") {
                return Ok(Some(i + 1));
            }
        }
        Ok(None)
    }

    /// Checks a complete head (every line end is CRLF by now).
    fn check_head(&self) -> Result<Framing, Violation> {
        let text = &self.head[..self.head.len() - 4];
        let mut lines = text.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let request_line = lines.next().unwrap_or_default();
        if self.first && request_line == b"PRI * HTTP/2.0" {
            return Ok(Framing::Http2);
        }
        if request_line.iter().any(|&b| is_control(b)) {
            return Err(Violation::ControlCharacter);
        }
        let http10 = request_line.ends_with(b" HTTP/1.0");
        let (mut content_length, mut chunked, mut fields) = (None, false, 0usize);
        for line in lines {
            if matches!(line.first(), Some(b' ' | b'\t')) {
                return Err(Violation::ObsFold);
            }
            fields += 1;
            if fields > self.max_headers {
                return Err(Violation::TooManyHeaders);
            }
            let colon = line.iter().position(|&b| b == b':').ok_or(Violation::InvalidFieldName)?;
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(Violation::InvalidFieldName);
            }
            let value = trim_ows(&line[colon + 1..]);
            if value.iter().any(|&b| is_control(b)) {
                return Err(Violation::ControlCharacter);
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                if content_length.is_some() {
                    return Err(Violation::RepeatedContentLength);
                }
                content_length = Some(decimal(value).ok_or(Violation::InvalidContentLength)?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                    return Err(Violation::UnsupportedTransferEncoding);
                }
                chunked = true;
            }
        }
        match (content_length, chunked) {
            (Some(_), true) => Err(Violation::ContentLengthWithTransferEncoding),
            (None, true) if http10 => Err(Violation::TransferEncodingInHttp10),
            (None, true) => Ok(Framing::Chunked),
            (Some(n), false) => Ok(Framing::Length(n)),
            (None, false) => Ok(Framing::Empty),
        }
    }
}

fn skip(data: &[u8], left: u64) -> (&[u8], u64) {
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
    (&data[n..], left - n as u64)
}

/// One byte of a chunked body outside chunk data, as hyper decodes it.
fn chunk_step(chunk: Chunk, b: u8) -> Result<State, Violation> {
    use Chunk::*;
    let bad = Violation::InvalidChunk;
    let next = match (chunk, b) {
        (SizeStart, _) => Size(hex(b).ok_or(bad)?),
        (Size(n) | SizeLws(n), b' ' | b'\t') => SizeLws(n),
        (Size(n) | SizeLws(n), b';') => Extension(n),
        (Size(n) | SizeLws(n) | Extension(n), b'\r') => SizeLf(n),
        (Size(n), _) => Size(n.checked_mul(16).and_then(|n| n.checked_add(hex(b)?)).ok_or(bad)?),
        (SizeLws(_), _) => return Err(bad),
        (Extension(_), b'\n') => return Err(Violation::BareLf),
        (Extension(n), _) => Extension(n),
        (SizeLf(0), b'\n') => EndCr,
        (SizeLf(n), b'\n') => Data(n),
        (SizeLf(_), _) => return Err(Violation::BareCr),
        (Data(_), _) => return Err(bad),
        (DataCr, b'\r') => DataLf,
        (DataLf, b'\n') => SizeStart,
        (DataCr | DataLf, _) => return Err(bad),
        (EndCr, b'\r') => EndLf,
        (EndCr | Trailer, b'\n') => return Err(Violation::BareLf),
        (Trailer, b'\r') => TrailerLf,
        (EndCr | Trailer, _) if is_control(b) => return Err(Violation::ControlCharacter),
        (EndCr | Trailer, _) => Trailer,
        (TrailerLf, b'\n') => EndCr,
        (TrailerLf, _) => return Err(Violation::BareCr),
        (EndLf, b'\n') => return Ok(State::Idle),
        (EndLf, _) => return Err(Violation::BareCr),
    };
    Ok(State::Chunked(next))
}

/// Strips optional whitespace (SP and HTAB) around a field value.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn hex(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// NUL and the other controls but HTAB, and DEL.
fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
