use super::*;

fn scan(chunks: &[&[u8]]) -> Result<State, Violation> {
    let mut s = Scanner::new(&Http1Config { max_request_head_bytes: 8192, max_headers: 5, ..Http1Config::default() });
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
