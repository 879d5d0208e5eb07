use super::*;

const T: Timeouts = Timeouts { first_byte: 10_000, head: 30_000, idle_http1: 30_000, idle_http2: 300_000 };

fn fresh(at: u64) -> Snapshot {
    Snapshot { in_flight: 0, bytes_seen: false, http_start: at, head_since: Some(at), last_active: at, http2: false }
}

#[test]
fn a_new_connection_has_the_first_byte_then_the_head_timeout_from_its_start() {
    let s = fresh(1000);
    assert_eq!(deadline(&s, &T, 1000), Deadline::At(11_000, Reason::FirstByte));
    // A first byte at 9 s: the whole head is still due 30 s after the start.
    let s = Snapshot { bytes_seen: true, ..s };
    assert_eq!(deadline(&s, &T, 10_000), Deadline::At(31_000, Reason::Header));
    // A first-byte timeout longer than the head timeout: the head's wins.
    let long = Timeouts { first_byte: 60_000, ..T };
    assert_eq!(deadline(&fresh(0), &long, 0), Deadline::At(30_000, Reason::Header));
}

#[test]
fn idle_connections_time_out_by_protocol_and_busy_ones_recheck() {
    let idle = Snapshot { bytes_seen: true, head_since: None, last_active: 5000, ..fresh(0) };
    assert_eq!(deadline(&idle, &T, 6000), Deadline::At(35_000, Reason::Idle));
    let h2 = Snapshot { http2: true, ..idle };
    assert_eq!(deadline(&h2, &T, 6000), Deadline::At(305_000, Reason::Idle));
    let busy = Snapshot { in_flight: 2, ..h2 };
    assert_eq!(deadline(&busy, &T, 6000), Deadline::Busy(16_000));
    // A later head counts from its first byte, or from the end of the
    // request it was pipelined behind.
    let next = Snapshot { head_since: Some(40_000), last_active: 20_000, ..idle };
    assert_eq!(deadline(&next, &T, 41_000), Deadline::At(70_000, Reason::Header));
    let pipelined = Snapshot { head_since: Some(10_000), last_active: 20_000, ..idle };
    assert_eq!(deadline(&pipelined, &T, 21_000), Deadline::At(50_000, Reason::Header));
}

#[test]
fn the_io_moves_a_connection_between_head_and_idle() {
    let a = Activity::new(Instant::now(), &T);
    assert_eq!(a.snapshot().head_since, Some(0), "the first head is timed from the start");
    a.read(true, false, false);
    assert_eq!(a.snapshot().head_since, Some(0), "bytes of the first head keep its start");
    assert!(a.snapshot().bytes_seen);
    a.read(false, true, false);
    assert_eq!(a.snapshot().head_since, None, "head complete");
    // CRLFs between requests are not a head; bytes of the next one are.
    a.read(false, false, false);
    assert_eq!(a.snapshot().head_since, None);
    a.read(true, false, false);
    assert!(a.snapshot().head_since.is_some());
    a.read(true, true, false);
    assert!(a.snapshot().head_since.is_some(), "a head done and the next one started in one read");
    a.read(false, true, true);
    assert!(a.is_http2());
}

#[test]
fn requests_are_in_flight_until_their_response_body_is_dropped() {
    let a = Arc::new(Activity::new(Instant::now(), &T));
    let one = a.begin();
    let two = a.begin();
    assert_eq!(a.snapshot().in_flight, 2);
    drop(one);
    let body = Tracked::new(Body::empty(), two);
    assert_eq!(a.snapshot().in_flight, 1);
    drop(body);
    assert_eq!(a.snapshot().in_flight, 0);
}

#[tokio::test]
async fn a_deadline_that_moves_earlier_wakes_the_task() {
    let short = Timeouts { idle_http1: 2000, ..T };
    let a = Arc::new(Activity::new(Instant::now(), &short));
    let (_, reason) = a.next(&short);
    assert_eq!(reason, Some(Reason::FirstByte), "armed 10 s out");
    a.read(false, true, false);
    drop(a.begin());
    // The 2 s idle deadline comes before the armed 10 s one: poked.
    tokio::time::timeout(Duration::from_secs(1), a.poked()).await.expect("poked");
    let (_, reason) = a.next(&short);
    assert_eq!(reason, Some(Reason::Idle));
    // A later request's end moves the deadline later: no wake.
    drop(a.begin());
    assert!(tokio::time::timeout(Duration::from_millis(50), a.poked()).await.is_err());
}

#[test]
fn at_the_limit_the_longest_idle_connection_makes_room_or_the_new_one_is_refused() {
    let conns = Connections::new(3, T);
    let admit = |c: &Arc<Connections>| match c.admit() {
        Admission::Admitted(s) => ("admitted", Some(s)),
        Admission::Evicted(s) => ("evicted", Some(s)),
        Admission::Refused => ("refused", None),
    };
    let (kind, a) = admit(&conns);
    assert_eq!(kind, "admitted");
    let (_, b) = admit(&conns);
    let (_, c) = admit(&conns);
    let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    // a is busy, b idle since long ago, c idle recently.
    let _busy = a.activity().begin();
    b.activity().last_active.store(0, Ordering::Relaxed);
    c.activity().last_active.store(50, Ordering::Relaxed);
    let (kind, d) = admit(&conns);
    assert_eq!(kind, "evicted");
    assert!(b.activity().is_evicted() && !c.activity().is_evicted() && !a.activity().is_evicted());
    assert_eq!(conns.live(), 3);
    let _busy_c = c.activity().begin();
    let d = d.expect("d");
    let _busy_d = d.activity().begin();
    let (kind, _) = admit(&conns);
    assert_eq!(kind, "refused", "every connection has a request in flight");
    drop(b);
    assert_eq!(conns.lock().closing, 0);
    drop((a, c, d));
    assert_eq!(conns.live(), 0);
    let (kind, _) = admit(&conns);
    assert_eq!(kind, "admitted", "slots are reused");
}
