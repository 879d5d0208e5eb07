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

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::connections::Activity;
use crate::config::Http1Config;

/// How long, and how many bytes, a refused connection is read and
/// discarded after the response, so the client sees the response.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;
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

/// A connection's I/O as hyper sees it, with every byte read also fed to a
/// [`Scanner`]; violations go to the shared [`Verdict`] before hyper gets
/// the bytes.
#[derive(Debug)]
pub(super) struct Inspected<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// Always `Some` until dropped.
    io: Option<T>,
    scanner: Scanner,
    verdict: Arc<Verdict>,
    /// Told about every read, for the connection's timeouts.
    activity: Option<Arc<Activity>>,
    heads: u64,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Inspected<T> {
    pub(super) fn new(io: T, limits: &Http1Config, verdict: Arc<Verdict>) -> Self {
        Self { io: Some(io), scanner: Scanner::new(limits), verdict, activity: None, heads: 0 }
    }

    /// Reports reads, head starts and completions to `activity`.
    pub(super) fn with_activity(mut self, activity: Arc<Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    fn io(&mut self) -> io::Result<&mut T> {
        self.io.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Inspected<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(this.io()?).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if let Err(v) = this.scanner.feed(read) {
            this.verdict.set(v);
        }
        if let Some(activity) = &this.activity
            && !read.is_empty()
        {
            let heads = this.scanner.heads();
            activity.read(this.scanner.in_head(), heads != this.heads, this.scanner.is_http2());
            this.heads = heads;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Inspected<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().io()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().io()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().io()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().io()?).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Inspected<T> {
    fn drop(&mut self) {
        if self.verdict.get().is_some()
            && let Some(io) = self.io.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(linger(io));
        }
    }
}

/// Closes a refused connection gracefully: shut down the gateway's half,
/// then read and discard what the client still sends (bounded in time and
/// bytes), so that closing does not reset the connection before the client
/// has read the response.
async fn linger<T: AsyncRead + AsyncWrite + Unpin>(mut io: T) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        let _ = io.shutdown().await;
        let mut buf = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Result<State, Violation> {
        let mut s =
            Scanner::new(&Http1Config { max_request_head_bytes: 8192, max_headers: 5, ..Http1Config::default() });
        for c in chunks {
            s.feed(c)?;
        }
        Ok(s.state)
    }

    fn one(bytes: &[u8]) -> Result<State, Violation> {
        scan(&[bytes])
    }

    #[test]
    fn well_framed_requests_pass_in_any_split() {
        let stream: &[u8] = b"\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n0 \r\nx-trailer: 1\r\n\r\n\
            GET /c HTTP/1.0\r\n\r\n";
        assert_eq!(one(stream), Ok(State::Idle));
        // Byte by byte: the same verdict whatever the reads look like.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(scan(&bytes), Ok(State::Idle));
        for cut in 0..stream.len() {
            assert_eq!(scan(&[&stream[..cut], &stream[cut..]]), Ok(State::Idle), "split at {cut}");
        }
    }

    #[test]
    fn a_body_that_looks_like_a_bad_head_is_only_a_body() {
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut req = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        req.extend_from_slice(body);
        assert_eq!(one(&req), Ok(State::Idle));
        let mut chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        chunked.extend_from_slice(body);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(one(&chunked), Ok(State::Idle));
    }

    #[test]
    fn smuggling_forms_are_violations() {
        let cases: &[(&[u8], Violation)] = &[
            (
                b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                Violation::ContentLengthWithTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                Violation::ContentLengthWithTransferEncoding,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", Violation::RepeatedContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 4\r\ncontent-length: 4\r\n\r\n", Violation::RepeatedContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\n", Violation::InvalidContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n", Violation::InvalidContentLength),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Violation::UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Violation::UnsupportedTransferEncoding),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                Violation::UnsupportedTransferEncoding,
            ),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", Violation::UnsupportedTransferEncoding),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Violation::TransferEncodingInHttp10),
            (b"GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", Violation::ObsFold),
            (b"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", Violation::ControlCharacter),
            (b"GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n", Violation::ControlCharacter),
            (b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", Violation::BareCr),
            (b"GET / HTTP/1.1\r\nX-A: a\nX-B: b\r\n\r\n", Violation::BareLf),
            (b"GET / HTTP/1.1\nHost: x\n\n", Violation::BareLf),
            (b"GET / HTTP/1.1\r\nX-A : 1\r\n\r\n", Violation::InvalidFieldName),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", Violation::InvalidFieldName),
            (b"GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\nf: 1\r\n\r\n", Violation::TooManyHeaders),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", Violation::InvalidChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello", Violation::InvalidChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc", Violation::InvalidChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx: 1\n\r\n", Violation::BareLf),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", Violation::InvalidChunk),
        ];
        for (bytes, want) in cases {
            assert_eq!(one(bytes), Err(*want), "{}", String::from_utf8_lossy(bytes).escape_debug());
            assert_eq!(want.status(), if *want == Violation::TooManyHeaders { 431 } else { 400 });
        }
        // Second request of a keep-alive connection, after a chunked body.
        let pipelined = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
            POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(one(pipelined), Err(Violation::ContentLengthWithTransferEncoding));
    }

    #[test]
    fn oversized_heads_are_431_and_the_preface_turns_inspection_off() {
        let mut big = b"GET /".to_vec();
        big.resize(9000, b'a');
        assert_eq!(one(&big), Err(Violation::HeadTooLarge));
        assert_eq!(Violation::HeadTooLarge.status(), 431);
        assert_eq!(one(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0"), Ok(State::Off));
        // Only as the connection's first bytes.
        let late = b"GET / HTTP/1.1\r\n\r\nPRI * HTTP/2.0\r\n\r\n";
        assert_eq!(one(late), Ok(State::Idle));
    }

    #[test]
    fn heads_and_the_preface_are_counted_for_the_connection_timeouts() {
        let limits = Http1Config::default();
        let mut s = Scanner::new(&limits);
        s.feed(b"GET / HTTP/1.1\r\nHost: a\r\n").expect("part of a head");
        assert!(s.in_head() && s.heads() == 0);
        s.feed(b"Content-Length: 3\r\n\r\nab").expect("the rest and a body");
        assert!(!s.in_head() && s.heads() == 1);
        s.feed(b"c\r\n").expect("the body's end and an empty line");
        assert!(!s.in_head() && s.heads() == 1, "empty lines between requests are no head");
        let mut s = Scanner::new(&limits);
        s.feed(b"PRI * HTTP/2.0\r\n\r\nSM").expect("most of the preface");
        assert!(s.in_head() && s.is_http2() && s.heads() == 0, "the preface is a head only once whole");
        s.feed(b"\r\n\r\n\0\0\0\x04").expect("the preface's end and a frame");
        assert!(!s.in_head() && s.heads() == 1 && s.state == State::Off);
    }

    #[test]
    fn the_verdict_keeps_the_first_violation() {
        let v = Verdict::default();
        assert_eq!(v.get(), None);
        v.set(Violation::BareLf);
        v.set(Violation::HeadTooLarge);
        assert_eq!(v.get(), Some(Violation::BareLf));
        for (i, v) in VIOLATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1, "VIOLATIONS is in discriminant order");
        }
    }
}
