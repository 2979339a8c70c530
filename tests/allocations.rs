//! What a pipelined ETRN costs the session in allocations (issue #20): counted by a global
//! allocator that counts the allocations of the thread that asks, around a batch of pipelined
//! ETRNs fed, answered, their outputs taken (as the smart host's driver takes them) and dropped,
//! their bytes taken.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use etrn_harness::proto::{
    Accepted, Event, Output, Recordable, Session, SessionLimits, SmartHostScript,
};

/// The system allocator, counting each allocation made on the thread that asks.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator as it came; counting touches only a
// thread-local cell (no allocation, no lock).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System.dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is `System.realloc`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Feeds `lines` as the smart host's driver feeds what one read brought (a line at a time, cut
/// at its end: `receive_cut`), takes every output as the driver does (`poll_recordable`) and
/// the bytes to send, drops the outputs: what the driver and the recorder do with them. How
/// many ETRNs came.
fn serve(session: &mut Session, lines: &[u8], sent: &mut Vec<u8>) -> usize {
    let now = Instant::now();
    let mut etrns = 0;
    // As the smart host's driver: each line handed over cut at its end, its outputs taken
    // before the next; the replies' bytes taken once for the batch.
    for piece in lines.split_inclusive(|b| *b == b'\n') {
        session.receive_cut(piece, now);
        while let Some(output) = session.poll_recordable() {
            if let Recordable::PlainEtrn(_) | Recordable::Output(Output::Event(Event::Etrn(_))) =
                output
            {
                etrns += 1;
            }
        }
    }
    session.poll_transmit(sent);
    etrns
}

/// A pipelined ETRN of the bench's workload makes no allocation in the session: its command
/// line, its record (handed over as its argument, reply and flags, no box), its reply (handed
/// over as the text around the argument, no lines) and its reply's bytes make none, and its
/// parsed domain's text is written into the last one's allocation (eight allocations before,
/// then four, then one).
#[test]
fn a_pipelined_etrn_makes_no_allocation() {
    let script: SmartHostScript = toml::from_str("").expect("the default script");
    let behaviour = Arc::new(script)
        .behaviour()
        .expect("the default profile loads");
    let accepted = Accepted {
        index: 0,
        peer: std::net::Ipv4Addr::LOCALHOST.into(),
        now: Instant::now(),
        wall_clock: std::time::SystemTime::UNIX_EPOCH,
    };
    let mut session = Session::new(Arc::new(behaviour), SessionLimits::default(), &accepted);
    let mut sent = Vec::new();
    serve(&mut session, b"EHLO client.example\r\n", &mut sent);
    const ETRNS: u64 = 64;
    let batch = |first: u64| -> Vec<u8> {
        (first..first + ETRNS)
            .flat_map(|n| format!("ETRN d{n}.bench.example\r\n").into_bytes())
            .collect()
    };
    // One batch of the same size first: the buffers the session keeps grow to their size.
    let warm = batch(100);
    assert_eq!(serve(&mut session, &warm, &mut sent), ETRNS as usize);
    sent.clear();
    let lines = batch(200);
    let before = allocations();
    let etrns = serve(&mut session, &lines, &mut sent);
    let made = allocations() - before;
    assert_eq!(etrns, ETRNS as usize);
    // Every ETRN was answered, in one buffer.
    let reply = b"250 OK, queuing for node d";
    assert_eq!(
        sent.windows(reply.len()).filter(|w| w == reply).count(),
        ETRNS as usize
    );
    assert_eq!(made, 0, "{made} allocations for {ETRNS} pipelined ETRNs");
}

/// A whole mail session as the bench's workload (c) sends it (EHLO, MAIL, RCPT, DATA, a
/// message of 1 KiB in lines of 80 octets, QUIT), from its making to its drop, a line at a time
/// as the smart host's driver feeds it: every allocation the session makes for it, its events'
/// included (the recorder's and the driver's are not counted here).
fn mail_session_allocations(behaviour: &Arc<etrn_harness::proto::ScriptBehaviour>) -> u64 {
    let accepted = Accepted {
        index: 0,
        peer: std::net::Ipv4Addr::LOCALHOST.into(),
        now: Instant::now(),
        wall_clock: std::time::SystemTime::UNIX_EPOCH,
    };
    let mut message = b"Subject: etrn-harness bench\r\n\r\n".to_vec();
    let line =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef\r\n";
    while message.len() + line.len() <= 1024 {
        message.extend_from_slice(line);
    }
    message.extend_from_slice(b".\r\n");
    let mut sent = Vec::with_capacity(4096);
    let before = allocations();
    let mut session = Session::new(behaviour.clone(), SessionLimits::default(), &accepted);
    serve(&mut session, b"EHLO bench.example\r\n", &mut sent);
    serve(
        &mut session,
        b"MAIL FROM:<bench@bench.example>\r\n",
        &mut sent,
    );
    serve(&mut session, b"RCPT TO:<sink@sink.example>\r\n", &mut sent);
    serve(&mut session, b"DATA\r\n", &mut sent);
    serve(&mut session, &message, &mut sent);
    serve(&mut session, b"QUIT\r\n", &mut sent);
    drop(session);
    let made = allocations() - before;
    assert!(
        sent.starts_with(b"220 ") && sent.ends_with(b"\r\n221 2.0.0 Bye\r\n"),
        "{}",
        String::from_utf8_lossy(&sent)
    );
    made
}

/// A mail session (issue #20, workload (c)) makes at most 26 allocations in the session: its
/// replies' lines and events, the command lines recorded, the transaction's addresses. The EHLO
/// reply is built at its size, not a line at a time, the greeting is filled from the one the
/// behaviour lends, not from a copy, and the EHLO keywords are borrowed (34 before, 29 with the
/// first).
#[test]
fn a_mail_session_makes_at_most_twenty_six_allocations() {
    let script: SmartHostScript = toml::from_str("").expect("the default script");
    let behaviour = Arc::new(
        Arc::new(script)
            .behaviour()
            .expect("the default profile loads"),
    );
    // One session first: whatever the behaviour makes once is made.
    mail_session_allocations(&behaviour);
    let made = mail_session_allocations(&behaviour);
    eprintln!("{made} allocations in a mail session");
    assert!(
        made <= 26,
        "{made} allocations in one mail session: more than 26"
    );
}
