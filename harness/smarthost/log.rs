//! How the recorder keeps a session's events in memory: packed, with what repeats shared.
//!
//! A smart host under test answers thousands of sessions with the same few replies (the greeting,
//! the EHLO keywords, `250 Queuing started`, `221 Bye`). Kept as [`Event`]s, every one of them
//! costs a vector and a string per line, for every session. The [`EventLog`] instead packs a
//! session's events into one byte buffer, with each distinct reply stored once in an
//! [`Interner`] the whole recorder shares; an event that does not pack (a rare kind, or an ETRN
//! record that cannot be rebuilt from its argument) is kept whole beside the buffer. Reading the
//! log gives back exactly the events that went in.
//!
//! What a pipelined command records repeats itself: the line arrives unawaited, is read as the
//! same command line, and an ETRN's argument is a piece of that line. So a time is the
//! difference from the event before (one byte within a batch), a command that repeats the
//! unawaited line just before it refers back to it, and an ETRN whose argument is in the last
//! command line refers to that piece: a pipelined ETRN costs its line once and a few bytes more.
//!
//! The packing is private to the process: nothing here is written to a file.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::escape::unescape;
use crate::proto::etrn::rebuild_etrn_record;
use crate::proto::event::{CommandLine, EtrnFlag, EtrnRecord, Event, LineBytes, MessageRecord};
use crate::proto::recordable::{EtrnCommandLine, PlainEtrn, QuotedReply};
use crate::wire::Verb;

use crate::proto::recording::TimedEvent;

/// Distinct replies shared at most; past this a reply is packed inline, so a server whose
/// replies never repeat (queue ids, say) cannot grow the table without bound.
const MAX_SHARED_REPLIES: usize = 4096;

/// Distinct command lines shared at most, for the same reason.
const MAX_SHARED_COMMANDS: usize = 4096;

/// The longest command line shared (RFC 5321 §4.5.3.1.4's limit): so the shared lines pin at
/// most 2 MiB, whatever a profile's line limit.
const MAX_SHARED_COMMAND_OCTETS: usize = 512;

/// The room a log takes with its first event: a mail session's whole log (some 130 octets), so
/// it is not grown from eight octets by doubling (three reallocations). Given back at the close
/// ([`EventLog::shrink`]).
const FIRST_ROOM: usize = 192;

/// The longest log [`EventLog::shrink`] copies rather than shrinks in place.
const COPIED_WHEN_SHRUNK: usize = 4096;

/// Reply texts and command lines shared by every session of one recorder.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<Arc<[String]>, u32, foldhash::fast::RandomState>,
    texts: Vec<Arc<[String]>>,
    /// Command lines not sent unawaited (`EHLO client.example`, `QUIT`): sent alike by every
    /// session of a client, and each the biggest part of a short session's log were it kept
    /// there.
    command_ids: HashMap<Arc<[u8]>, u32, foldhash::fast::RandomState>,
    commands: Vec<Arc<[u8]>>,
    /// The id given last: a run of the same reply (every pipelined ETRN's) is found by one
    /// comparison, without hashing its lines.
    last: Option<u32>,
    /// The id given last for lines of each [`shape`]: a session's replies (greeting, EHLO,
    /// MAIL's, ... QUIT's) come round again in the next session, each found by one comparison
    /// of its lines rather than by hashing them.
    by_shape: [Option<u32>; SHAPES],
    /// The id of the reply around an argument given last (see [`Interner::template_around`]).
    last_template: Option<u32>,
    /// The parts of a [`QuotedReply`] given last, as the session shares them, and their id: a
    /// run of them (every pipelined ETRN's reply) is found by comparing a pointer.
    last_quoted: Option<(Arc<[String]>, u32)>,
}

impl Interner {
    /// The id of `lines`, adding them when there is room.
    fn id(&mut self, lines: &[String]) -> Option<u32> {
        if let Some(last) = self.last
            && self.lines(last) == Some(lines)
        {
            return Some(last);
        }
        let slot = shape(lines);
        if let Some(id) = self.by_shape[slot]
            && self.lines(id) == Some(lines)
        {
            self.last = Some(id);
            return Some(id);
        }
        let id = match self.ids.get(lines) {
            Some(id) => *id,
            None => {
                if self.texts.len() >= MAX_SHARED_REPLIES {
                    return None;
                }
                let id = u32::try_from(self.texts.len()).ok()?;
                let shared: Arc<[String]> = lines.into();
                self.ids.insert(Arc::clone(&shared), id);
                self.texts.push(shared);
                id
            }
        };
        self.last = Some(id);
        self.by_shape[slot] = Some(id);
        Some(id)
    }

    /// The id of one-line `reply` as a template around `argument` (what comes before it and
    /// after it, kept as two lines), if the reply quotes it.
    fn template_around(&mut self, reply: &str, argument: &[u8]) -> Option<u32> {
        // The template given last fits a run of replies to pipelined commands: three
        // comparisons, no search for the argument. (Its text before and after are whole
        // characters, so the argument between them is too.)
        if let Some(last) = self.last_template
            && let Some([before, after]) = self.lines(last)
            && reply.len() == before.len() + argument.len() + after.len()
            && reply.starts_with(before.as_str())
            && reply.ends_with(after.as_str())
            && reply
                .as_bytes()
                .get(before.len()..reply.len() - after.len())
                == Some(argument)
        {
            return Some(last);
        }
        let at = quoted_at(reply.as_bytes(), argument)?;
        // Cut on character boundaries only: so the argument is whole characters.
        let before = reply.get(..at)?;
        let after = reply.get(at + argument.len()..)?;
        let id = self.id(&[before.to_owned(), after.to_owned()])?;
        self.last_template = Some(id);
        Some(id)
    }

    /// The id of a [`QuotedReply`]'s text around its argument (what [`Interner::template_around`]
    /// keeps for the line it makes), adding it when there is room.
    fn quoted_id(&mut self, around: &Arc<[String]>) -> Option<u32> {
        let id = match &self.last_quoted {
            Some((last, id)) if Arc::ptr_eq(last, around) => *id,
            _ => {
                let id = self.id(around)?;
                self.last_quoted = Some((Arc::clone(around), id));
                id
            }
        };
        self.last_template = Some(id);
        Some(id)
    }

    fn lines(&self, id: u32) -> Option<&[String]> {
        self.texts.get(usize::try_from(id).ok()?).map(|a| &a[..])
    }

    /// The id of command `line`, adding it when there is room.
    fn command_id(&mut self, line: &[u8]) -> Option<u32> {
        if let Some(id) = self.command_ids.get(line) {
            return Some(*id);
        }
        // A long line is rarely sent twice, and kept for the recorder's life it would pin its
        // octets: only lines up to a command's usual limit are shared.
        if self.commands.len() >= MAX_SHARED_COMMANDS || line.len() > MAX_SHARED_COMMAND_OCTETS {
            return None;
        }
        let id = u32::try_from(self.commands.len()).ok()?;
        let shared: Arc<[u8]> = line.into();
        self.command_ids.insert(Arc::clone(&shared), id);
        self.commands.push(shared);
        Some(id)
    }

    fn command(&self, id: u32) -> Option<&Arc<[u8]>> {
        self.commands.get(usize::try_from(id).ok()?)
    }
}

/// Slots of [`Interner`]'s ids by [`shape`]: a power of two, so that a slot is the top bits of
/// a product.
const SHAPES: usize = 16;
const _: () = assert!(SHAPES.is_power_of_two() && SHAPES > 1);

/// A slot for `lines`, from how many there are and the first one's length and first eight
/// octets: cheap to take, and replies that differ in any of those (`2.1.0 Ok`, `2.1.5 Ok`)
/// mostly take different slots. Two that share one only take turns in it.
fn shape(lines: &[String]) -> usize {
    let first = lines.first().map_or(&[][..], |line| line.as_bytes());
    let mut head = [0u8; 8];
    let n = first.len().min(8);
    head[..n].copy_from_slice(&first[..n]);
    let mixed = (u64::from_le_bytes(head) ^ ((first.len() as u64) << 48) ^ lines.len() as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // The top bits, which the multiplication mixed most: always below SHAPES.
    (mixed >> (u64::BITS - SHAPES.trailing_zeros())) as usize
}

const COMMAND: u8 = 0;
const REPLY_SHARED: u8 = 1;
const REPLY_INLINE: u8 = 2;
const ETRN: u8 = 3;
const WHOLE: u8 = 4;
/// A line the client sent without waiting: one per pipelined command, so packed too.
const UNAWAITED: u8 = 5;
/// A command whose line is the unawaited line just before it (a pipelined command, read).
const COMMAND_AS_UNAWAITED: u8 = 6;
/// An ETRN whose argument is a piece of the last command line: its offset and length there.
const ETRN_IN_COMMAND: u8 = 7;
/// A one-line reply that quotes the last command's argument (`250 OK, queuing for node
/// d1.example started`): the text around it shared, the argument a piece of the command line.
const REPLY_AROUND_ARGUMENT: u8 = 8;

/// A mail transaction: one per message a sink takes, so packed rather than kept whole.
const MESSAGE: u8 = 9;
/// A command whose line is a shared one: its id.
const COMMAND_SHARED: u8 = 10;

const FLAG_BARE_LF: u8 = 1;
const FLAG_REDACTED: u8 = 2;

/// A verb the id table has no place for: its text follows.
const VERB_TEXT: u8 = u8::MAX;

/// The verbs packed as one byte: their place in [`Verb::KNOWN`].
const KNOWN_VERBS: [Verb; 20] = Verb::KNOWN;

/// Where the packing stands after an event: what the next one is packed against. The writer
/// and the reader keep one each and move it alike, so a reference means the same to both.
#[derive(Debug, Default, Clone)]
struct Position {
    /// The time of the event before.
    at_us: u64,
    /// The line the next event may refer back to.
    line: Option<LastLine>,
}

/// A line an event may refer back to: the unawaited line just before a command (the same line,
/// pipelined), or the last command's line (an ETRN's argument, a reply quoting it). One of them
/// only, so every session's log keeps 12 octets for it: a command right after an unawaited line
/// (how a pipelined line is recorded) needs no command before it.
#[derive(Debug, Clone, Copy)]
enum LastLine {
    /// The event before was an unawaited line, here in the bytes.
    Unawaited(Span),
    /// The last command's line, here in the bytes.
    Command(Span),
    /// The last command's line, a shared one.
    SharedCommand(u32),
}

/// Where a line is in a log's bytes, in half the room of a `Range<usize>`. A line past the first
/// 4 GiB of a log has none: what follows it packs its own copy rather than referring back,
/// alike for the writer and the reader.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(range: Range<usize>) -> Option<Span> {
        Some(Span {
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok()?,
        })
    }

    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl Position {
    /// The unawaited line just before, taken: the event after it is the only one that may refer
    /// to it.
    fn take_unawaited(&mut self) -> Option<Span> {
        match self.line {
            Some(LastLine::Unawaited(span)) => {
                self.line = None;
                Some(span)
            }
            _ => None,
        }
    }

    /// The last command's line, from `bytes` or the shared ones.
    fn command<'a>(&self, bytes: &'a [u8], interner: &'a Interner) -> Option<&'a [u8]> {
        match self.line? {
            LastLine::Command(span) => bytes.get(span.range()),
            LastLine::SharedCommand(id) => interner.command(id).map(|line| &line[..]),
            LastLine::Unawaited(_) => None,
        }
    }

    /// The difference from the time before, signed (zig-zag), so a time earlier than the one
    /// before costs a little more but still reads back exactly.
    fn delta(&mut self, at_us: u64) -> u64 {
        let d = at_us.wrapping_sub(self.at_us) as i64;
        self.at_us = at_us;
        ((d << 1) ^ (d >> 63)) as u64
    }

    fn undelta(&mut self, zigzag: u64) -> u64 {
        let d = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        self.at_us = self.at_us.wrapping_add(d as u64);
        self.at_us
    }
}

/// One session's events, packed.
#[derive(Debug, Default, Clone)]
pub(crate) struct EventLog {
    bytes: Vec<u8>,
    /// Events kept as they are (referred to by index from `bytes`): rare, so boxed, and no room
    /// taken in the many logs without any.
    // One pointer in every log, where a `Vec` would take three: the box is the point.
    #[allow(clippy::box_collection)]
    whole: Option<Box<Vec<Event>>>,
    /// Where the writer stands.
    at: Position,
}

impl EventLog {
    /// Appends an event.
    pub(crate) fn push(&mut self, at_us: u64, event: Event, interner: &mut Interner) {
        if self.bytes.capacity() == 0 {
            self.bytes.reserve_exact(FIRST_ROOM);
        }
        if let Event::Unawaited { raw } = &event {
            self.push_unawaited(at_us, raw);
            return;
        }
        let unawaited = self.at.take_unawaited();
        let dt = self.at.delta(at_us);
        match event {
            Event::Command(c) => {
                let repeated =
                    unawaited.filter(|line| self.bytes.get(line.range()) == Some(&c.raw[..]));
                // A line sent unawaited is in the log already; any other is shared if it can be.
                let shared = match repeated {
                    Some(_) => None,
                    None => interner.command_id(&c.raw),
                };
                let b = &mut self.bytes;
                let line = match (repeated, shared) {
                    (Some(line), _) => {
                        b.push(COMMAND_AS_UNAWAITED);
                        varint(b, dt);
                        Some(LastLine::Command(line))
                    }
                    (None, Some(id)) => {
                        b.push(COMMAND_SHARED);
                        varint(b, dt);
                        varint(b, u64::from(id));
                        Some(LastLine::SharedCommand(id))
                    }
                    (None, None) => {
                        b.push(COMMAND);
                        varint(b, dt);
                        Span::of(bytes(b, &c.raw)).map(LastLine::Command)
                    }
                };
                self.at.line = line;
                verb(b, &c.verb);
                let flags = if c.bare_lf { FLAG_BARE_LF } else { 0 }
                    | if c.redacted { FLAG_REDACTED } else { 0 };
                b.push(flags);
            }
            Event::Reply { code, lines } => {
                // A shared line is held by its own count while the interner may take a template.
                let shared = match self.at.line {
                    Some(LastLine::SharedCommand(id)) => interner.command(id).cloned(),
                    _ => None,
                };
                let command = match self.at.line {
                    Some(LastLine::Command(span)) => self.bytes.get(span.range()),
                    _ => shared.as_deref(),
                };
                let around = match (command, lines.as_slice()) {
                    (Some(line), [only]) => {
                        command_argument(line).and_then(|(offset, argument)| {
                            let id = interner.template_around(only, argument)?;
                            Some((id, offset, argument.len()))
                        })
                    }
                    _ => None,
                };
                let b = &mut self.bytes;
                if let Some((id, offset, len)) = around {
                    b.push(REPLY_AROUND_ARGUMENT);
                    varint(b, dt);
                    varint(b, u64::from(code));
                    varint(b, u64::from(id));
                    varint(b, offset as u64);
                    varint(b, len as u64);
                    return;
                }
                match interner.id(&lines) {
                    Some(id) => {
                        b.push(REPLY_SHARED);
                        varint(b, dt);
                        varint(b, u64::from(code));
                        varint(b, u64::from(id));
                    }
                    None => {
                        b.push(REPLY_INLINE);
                        varint(b, dt);
                        varint(b, u64::from(code));
                        varint(b, lines.len() as u64);
                        for l in &lines {
                            bytes(b, l.as_bytes());
                        }
                    }
                }
            }
            Event::Etrn(record) => {
                // Packed as the argument, the reply and the flags, when those rebuild it exactly.
                let Some(argument) = rebuilding_argument(&record) else {
                    self.push_whole(dt, Event::Etrn(record));
                    return;
                };
                self.push_etrn_parts(dt, &argument, record.reply, &record.flags, interner);
            }
            // Packed by `push_unawaited`, above.
            Event::Unawaited { .. } => {}
            Event::Message(m) => {
                let b = &mut self.bytes;
                b.push(MESSAGE);
                varint(b, dt);
                bytes(b, m.from.as_bytes());
                varint(b, m.recipients.len() as u64);
                for r in &m.recipients {
                    bytes(b, r.as_bytes());
                }
                varint(b, m.size as u64);
                varint(b, u64::from(m.reply));
            }
            other => self.push_whole(dt, other),
        }
    }

    /// Appends the ETRN command line `line` stands for: the bytes [`EventLog::push`] packs its
    /// event into, without the event (a sibling of its `Command` arm, which every other line
    /// takes; a property test holds the two equal).
    // Inlined into its one caller, the recorder's batch: the call cost 24 per pipelined ETRN.
    #[inline]
    pub(crate) fn push_etrn_command(
        &mut self,
        at_us: u64,
        line: &EtrnCommandLine,
        interner: &mut Interner,
    ) {
        let unawaited = self.at.take_unawaited();
        let dt = self.at.delta(at_us);
        let raw = line.raw();
        let b = &mut self.bytes;
        // A pipelined ETRN's line is in the log already, sent unawaited.
        self.at.line = match unawaited.filter(|line| b.get(line.range()) == Some(raw)) {
            Some(line) => {
                b.push(COMMAND_AS_UNAWAITED);
                varint(b, dt);
                Some(LastLine::Command(line))
            }
            None => match interner.command_id(raw) {
                Some(id) => {
                    b.push(COMMAND_SHARED);
                    varint(b, dt);
                    varint(b, u64::from(id));
                    Some(LastLine::SharedCommand(id))
                }
                None => {
                    b.push(COMMAND);
                    varint(b, dt);
                    Span::of(bytes(b, raw)).map(LastLine::Command)
                }
            },
        };
        // The verb's id found when compiling: `verb`, called, cost as much as the line's push.
        const ETRN_VERB_ID: u8 = match verb_id(&Verb::Etrn) {
            Some(id) => id,
            None => panic!("ETRN is a known verb"),
        };
        b.push(ETRN_VERB_ID);
        b.push(if line.bare_lf() { FLAG_BARE_LF } else { 0 });
    }

    /// Appends `reply` as the one-line reply it stands for, packed as the text around the last
    /// command's argument, which it quotes; false (and nothing appended) when it does not quote
    /// that argument (or the shared texts are full): then it is to be pushed as its event.
    ///
    /// The same packing [`EventLog::push`] finds for the line by searching it, without the line
    /// (and it reads back as that line).
    pub(crate) fn push_quoted_reply(
        &mut self,
        at_us: u64,
        reply: &QuotedReply,
        interner: &mut Interner,
    ) -> bool {
        let (offset, len) = {
            let Some(line) = self.at.command(&self.bytes, interner) else {
                return false;
            };
            match command_argument(line) {
                Some((offset, argument)) if argument == reply.argument() => {
                    (offset, argument.len())
                }
                _ => return false,
            }
        };
        let Some(id) = interner.quoted_id(reply.around()) else {
            return false;
        };
        // The line before is a command's, not an unawaited one: nothing to take.
        let dt = self.at.delta(at_us);
        let b = &mut self.bytes;
        b.push(REPLY_AROUND_ARGUMENT);
        varint(b, dt);
        varint(b, u64::from(reply.code()));
        varint(b, u64::from(id));
        varint(b, offset as u64);
        varint(b, len as u64);
        true
    }

    /// Appends the ETRN `etrn` stands for: packed as [`EventLog::push`] packs its event.
    pub(crate) fn push_plain_etrn(
        &mut self,
        at_us: u64,
        etrn: &PlainEtrn,
        interner: &mut Interner,
    ) {
        self.at.take_unawaited();
        let dt = self.at.delta(at_us);
        self.push_etrn_parts(dt, etrn.argument(), etrn.reply(), etrn.flags(), interner);
    }

    /// An ETRN as the argument that rebuilds it, its reply and its flags.
    fn push_etrn_parts(
        &mut self,
        dt: u64,
        argument: &[u8],
        reply: Option<u16>,
        flags: &[EtrnFlag],
        interner: &Interner,
    ) {
        let in_command = self
            .at
            .command(&self.bytes, interner)
            .and_then(|line| find(line, argument));
        let b = &mut self.bytes;
        match in_command {
            Some(offset) => {
                b.push(ETRN_IN_COMMAND);
                varint(b, dt);
                varint(b, offset as u64);
                varint(b, argument.len() as u64);
            }
            None => {
                b.push(ETRN);
                varint(b, dt);
                bytes(b, argument);
            }
        }
        varint(b, reply.map_or(0, |c| u64::from(c) + 1));
        b.push(u8::try_from(flags.len()).unwrap_or(u8::MAX));
        for f in flags.iter().take(usize::from(u8::MAX)) {
            b.push(flag_id(*f));
        }
    }

    fn push_whole(&mut self, dt: u64, event: Event) {
        let whole = self.whole.get_or_insert_default();
        self.bytes.push(WHOLE);
        varint(&mut self.bytes, dt);
        varint(&mut self.bytes, whole.len() as u64);
        whole.push(event);
    }

    /// Appends an [`Event::Unawaited`] from the borrowed line (the driver's, in its read
    /// buffer): the event need never be made.
    pub(crate) fn push_unawaited(&mut self, at_us: u64, raw: &[u8]) {
        self.at.take_unawaited();
        let dt = self.at.delta(at_us);
        let b = &mut self.bytes;
        b.push(UNAWAITED);
        varint(b, dt);
        self.at.line = Span::of(bytes(b, raw)).map(LastLine::Unawaited);
    }

    /// Gives back what growing reserved: the log of a closed session grows no more.
    pub(crate) fn shrink(&mut self) {
        // A short log (nearly every session's) is copied to its exact size: shrinking in place
        // may leave it in the size class it grew to (the allocator does not split off a
        // remainder that small). A long one shrinks in place, never held twice.
        if self.bytes.len() <= COPIED_WHEN_SHRUNK {
            self.bytes = self.bytes.as_slice().to_vec();
        } else {
            self.bytes.shrink_to_fit();
        }
        if let Some(whole) = self.whole.as_mut() {
            whole.shrink_to_fit();
        }
    }

    /// The events kept whole.
    fn whole(&self) -> &[Event] {
        self.whole.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The events, as they went in.
    pub(crate) fn events(&self, interner: &Interner) -> Vec<TimedEvent> {
        let mut out = Vec::new();
        let mut r = Reader {
            bytes: &self.bytes,
            at: 0,
        };
        let mut at = Position::default();
        while let Some(tag) = r.byte() {
            let unawaited = at.take_unawaited();
            let at_us = at.undelta(r.varint());
            let event = match tag {
                COMMAND | COMMAND_AS_UNAWAITED | COMMAND_SHARED => {
                    let (raw, line) = match (tag, unawaited) {
                        (COMMAND, _) => {
                            let line = r.range();
                            (
                                LineBytes::from(&self.bytes[line.clone()]),
                                Span::of(line).map(LastLine::Command),
                            )
                        }
                        (COMMAND_AS_UNAWAITED, Some(line)) => (
                            LineBytes::from(&self.bytes[line.range()]),
                            Some(LastLine::Command(line)),
                        ),
                        (COMMAND_SHARED, _) => {
                            let id = u32::try_from(r.varint()).unwrap_or(u32::MAX);
                            match interner.command(id) {
                                Some(line) => (
                                    LineBytes::from(&line[..]),
                                    Some(LastLine::SharedCommand(id)),
                                ),
                                None => break,
                            }
                        }
                        _ => break,
                    };
                    at.line = line;
                    let verb = r.verb();
                    let flags = r.byte().unwrap_or(0);
                    Event::Command(CommandLine {
                        raw,
                        verb,
                        bare_lf: flags & FLAG_BARE_LF != 0,
                        redacted: flags & FLAG_REDACTED != 0,
                    })
                }
                REPLY_SHARED => {
                    let code = u16::try_from(r.varint()).unwrap_or(0);
                    let id = u32::try_from(r.varint()).unwrap_or(u32::MAX);
                    Event::Reply {
                        code,
                        lines: interner
                            .lines(id)
                            .map(<[String]>::to_vec)
                            .unwrap_or_default(),
                    }
                }
                REPLY_INLINE => {
                    let code = u16::try_from(r.varint()).unwrap_or(0);
                    let n = r.varint();
                    let lines = (0..n)
                        .map(|_| String::from_utf8_lossy(&self.bytes[r.range()]).into_owned())
                        .collect();
                    Event::Reply { code, lines }
                }
                REPLY_AROUND_ARGUMENT => {
                    let code = u16::try_from(r.varint()).unwrap_or(0);
                    let id = u32::try_from(r.varint()).unwrap_or(u32::MAX);
                    let piece = piece_of(at.command(&self.bytes, interner), r.varint(), r.varint());
                    let (Some([before, after]), Some(piece)) = (interner.lines(id), piece) else {
                        break;
                    };
                    let line = format!("{before}{}{after}", String::from_utf8_lossy(piece));
                    Event::Reply {
                        code,
                        lines: vec![line],
                    }
                }
                ETRN | ETRN_IN_COMMAND => {
                    let argument = if tag == ETRN {
                        self.bytes.get(r.range()).unwrap_or_default()
                    } else {
                        match piece_of(at.command(&self.bytes, interner), r.varint(), r.varint()) {
                            Some(piece) => piece,
                            None => break,
                        }
                    };
                    let reply = r
                        .varint()
                        .checked_sub(1)
                        .and_then(|c| u16::try_from(c).ok());
                    let n = r.byte().unwrap_or(0);
                    let flags = (0..n).filter_map(|_| flag_of(r.byte()?)).collect();
                    Event::Etrn(Box::new(rebuild_etrn_record(argument, reply, flags)))
                }
                MESSAGE => {
                    let text = |r: &mut Reader<'_>| {
                        String::from_utf8_lossy(&self.bytes[r.range()]).into_owned()
                    };
                    let from = text(&mut r);
                    let n = r.varint();
                    let recipients = (0..n).map(|_| text(&mut r)).collect();
                    Event::Message(MessageRecord {
                        from,
                        recipients,
                        size: usize::try_from(r.varint()).unwrap_or(usize::MAX),
                        reply: u16::try_from(r.varint()).unwrap_or(0),
                    })
                }
                UNAWAITED => {
                    let line = r.range();
                    let raw = self.bytes[line.clone()].to_vec();
                    at.line = Span::of(line).map(LastLine::Unawaited);
                    Event::Unawaited { raw }
                }
                _ => {
                    let index = usize::try_from(r.varint()).unwrap_or(usize::MAX);
                    match self.whole().get(index) {
                        Some(e) => e.clone(),
                        None => break,
                    }
                }
            };
            out.push(TimedEvent { at_us, event });
        }
        out
    }
}

/// The argument bytes that rebuild `record` exactly ([`rebuild_etrn_record`]), if any.
///
/// A record whose text is its parsed argument's (nearly every one: the session made it so when
/// nothing needed escaping) rebuilds from that text: parsing is deterministic, and its domain
/// is the argument's. Only another (an invalid or non-UTF-8 argument, one read back, rare) is
/// rebuilt to be compared.
fn rebuilding_argument(record: &EtrnRecord) -> Option<std::borrow::Cow<'_, [u8]>> {
    if let Some(arg) = record.arg()
        && record.raw_is_the_arguments()
        && record.option == Some(arg.option())
    {
        return Some(std::borrow::Cow::Borrowed(arg.raw().as_bytes()));
    }
    let argument = unescape(record.raw()).ok()?;
    let rebuilt = rebuild_etrn_record(&argument, record.reply, record.flags.clone());
    (rebuilt == *record).then_some(std::borrow::Cow::Owned(argument))
}

/// The piece `offset` octets into the last command `line`, `len` long.
fn piece_of(line: Option<&[u8]>, offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    line?.get(start..end)
}

/// The argument of command `line` (the text after its verb), and where it starts in the line.
///
/// Not checked to be UTF-8: found in a reply (which is), it is whole characters exactly when it
/// starts and ends on character boundaries there, which cutting the reply checks.
fn command_argument(line: &[u8]) -> Option<(usize, &[u8])> {
    let text = line.trim_ascii_end();
    let verb_end = text.iter().position(|b| *b == b' ')?;
    let argument = text[verb_end..].trim_ascii_start();
    Some((text.len() - argument.len(), argument))
}

/// Where a reply quotes `argument`: the last place it stands as a word of its own (nothing
/// alphanumeric on either side), else the first place at all. So an argument that also occurs
/// in the reply's own text (`e` inside `queuing`, or `node` in `for node node started`) is cut
/// out where it is quoted, and every argument shares the one template the reply text makes.
fn quoted_at(reply: &[u8], argument: &[u8]) -> Option<usize> {
    let first = position(reply, argument)?;
    let alone = |at: usize| {
        let before = at.checked_sub(1).and_then(|i| reply.get(i));
        let after = reply.get(at + argument.len());
        !before.is_some_and(u8::is_ascii_alphanumeric)
            && !after.is_some_and(u8::is_ascii_alphanumeric)
    };
    let mut quoted = alone(first).then_some(first);
    let mut from = first + 1;
    while let Some(at) = reply.get(from..).and_then(|rest| position(rest, argument)) {
        if alone(from + at) {
            quoted = Some(from + at);
        }
        from += at + 1;
    }
    Some(quoted.unwrap_or(first))
}

/// Where `needle` first is in `haystack`: a look for its first octet and a comparison there,
/// cheaper for a reply line than setting up `str::find`'s searcher.
fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let last_start = haystack.len().checked_sub(needle.len())?;
    (0..=last_start).find(|&i| haystack[i] == first && haystack[i..].starts_with(needle))
}

/// Where `piece` is in `line`: at the end of its text (an ETRN's argument), or anywhere.
fn find(line: &[u8], piece: &[u8]) -> Option<usize> {
    if piece.is_empty() {
        return None;
    }
    let text = line.trim_ascii_end();
    if text.ends_with(piece) {
        return Some(text.len() - piece.len());
    }
    position(line, piece)
}

fn verb(out: &mut Vec<u8>, verb: &Verb) {
    match verb_id(verb) {
        Some(id) => out.push(id),
        None => {
            out.push(VERB_TEXT);
            bytes(out, verb.as_str().as_bytes());
        }
    }
}

/// A verb's place in [`KNOWN_VERBS`]: one jump, where a search compared up to twenty verbs.
const fn verb_id(verb: &Verb) -> Option<u8> {
    Some(match verb {
        Verb::Helo => 0,
        Verb::Ehlo => 1,
        Verb::Lhlo => 2,
        Verb::Mail => 3,
        Verb::Rcpt => 4,
        Verb::Data => 5,
        Verb::Bdat => 6,
        Verb::Burl => 7,
        Verb::Rset => 8,
        Verb::Noop => 9,
        Verb::Quit => 10,
        Verb::Vrfy => 11,
        Verb::Expn => 12,
        Verb::Help => 13,
        Verb::Etrn => 14,
        Verb::Turn => 15,
        Verb::Atrn => 16,
        Verb::StartTls => 17,
        Verb::Auth => 18,
        Verb::Blank => 19,
        Verb::Other(_) => return None,
    })
}

fn flag_id(f: EtrnFlag) -> u8 {
    EtrnFlag::ALL
        .iter()
        .position(|x| *x == f)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(u8::MAX)
}

fn flag_of(id: u8) -> Option<EtrnFlag> {
    EtrnFlag::ALL.get(usize::from(id)).copied()
}

/// LEB128: seven bits a byte, low first.
#[inline(always)]
fn varint(out: &mut Vec<u8>, n: u64) {
    // Most numbers packed (time steps within a batch, lengths, ids) take one byte, and a reply
    // code (every ETRN's reply) two: no call.
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x4000 {
        // Two bytes (a reply code, a pause between batches of a few ms), no loop: the same
        // bytes `long_varint` writes.
        out.extend_from_slice(&[(n as u8) | 0x80, (n >> 7) as u8]);
    } else {
        long_varint(out, n);
    }
}

fn long_varint(out: &mut Vec<u8>, mut n: u64) {
    // Written on the stack and appended at once: one check of the room, not one per byte.
    let mut packed = [0u8; 10];
    let mut len = 0;
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            packed[len] = low;
            len += 1;
            break;
        }
        packed[len] = low | 0x80;
        len += 1;
    }
    out.extend_from_slice(&packed[..len]);
}

/// Appends `b` with its length first; where `b` now is.
fn bytes(out: &mut Vec<u8>, b: &[u8]) -> Range<usize> {
    varint(out, b.len() as u64);
    let start = out.len();
    out.extend_from_slice(b);
    start..out.len()
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> u64 {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(b) = self.byte() else {
                break;
            };
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        n
    }

    /// Where the next length-prefixed bytes are, skipping them.
    fn range(&mut self) -> Range<usize> {
        let len = usize::try_from(self.varint()).unwrap_or(usize::MAX);
        let end = self.at.saturating_add(len).min(self.bytes.len());
        let range = self.at..end;
        self.at = end;
        range
    }

    fn verb(&mut self) -> Verb {
        match self.byte() {
            Some(VERB_TEXT) => {
                let text = self.range();
                Verb::parse(&self.bytes[text])
            }
            Some(id) => KNOWN_VERBS
                .get(usize::from(id))
                .cloned()
                .unwrap_or(Verb::Blank),
            None => Verb::Blank,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etrn::{Greeted, read_etrn};
    use crate::wire::Command;

    #[test]
    fn what_goes_in_comes_out() {
        let mut interner = Interner::default();
        let mut log = EventLog::default();
        let events = vec![
            Event::Reply {
                code: 220,
                lines: vec!["mx ESMTP".into()],
            },
            Event::Command(CommandLine {
                raw: b"ehlo c\n".into(),
                verb: Verb::Ehlo,
                bare_lf: true,
                redacted: false,
            }),
            Event::Reply {
                code: 250,
                lines: vec!["mx".into(), "ETRN".into()],
            },
            Event::Etrn(Box::new(
                read_etrn(&Command::parse(b"etrn @b\xffad\n"), Greeted::No, true).record(Some(458)),
            )),
            Event::Etrn(Box::new(
                read_etrn(
                    &Command::parse(b"ETRN a.example\r\n"),
                    Greeted::EtrnAdvertised,
                    false,
                )
                .record(None),
            )),
            Event::Message(MessageRecord {
                from: "a@b".into(),
                recipients: vec!["c@d".into()],
                size: 10,
                reply: 250,
            }),
            Event::Unawaited {
                raw: b"ETRN c\xff.example\r\n".to_vec(),
            },
            Event::StartTls,
            Event::Command(CommandLine {
                raw: b"[redacted]\r\n".into(),
                verb: Verb::Blank,
                bare_lf: false,
                redacted: true,
            }),
            Event::Reply {
                code: 250,
                lines: vec!["mx".into(), "ETRN".into()],
            },
        ];
        for (i, e) in events.iter().enumerate() {
            log.push(i as u64 * 300, e.clone(), &mut interner);
        }
        assert_eq!(interner.texts.len(), 2, "the repeated reply is shared");
        let back: Vec<Event> = log.events(&interner).into_iter().map(|t| t.event).collect();
        assert_eq!(back, events);
        assert_eq!(
            log.whole().len(),
            1,
            "only the rare STARTTLS is kept whole, not the message"
        );
    }

    fn etrn_line(line: &[u8]) -> Event {
        Event::Etrn(Box::new(
            read_etrn(&Command::parse(line), Greeted::EtrnAdvertised, false).record(Some(250)),
        ))
    }

    fn command_line(line: &[u8]) -> Event {
        Event::Command(CommandLine {
            raw: line.into(),
            verb: Command::parse(line).verb().clone(),
            bare_lf: !line.ends_with(b"\r\n"),
            redacted: false,
        })
    }

    fn round_trip(events: &[(u64, Event)]) -> (EventLog, Interner) {
        let mut interner = Interner::default();
        let log = round_trip_sharing(&mut interner, events);
        (log, interner)
    }

    /// Packs `events` into a new log with what `interner` holds, and checks they read back.
    fn round_trip_sharing(interner: &mut Interner, events: &[(u64, Event)]) -> EventLog {
        let mut log = EventLog::default();
        for (at, e) in events {
            log.push(*at, e.clone(), interner);
        }
        let back: Vec<(u64, Event)> = log
            .events(interner)
            .into_iter()
            .map(|t| (t.at_us, t.event))
            .collect();
        assert_eq!(back, events);
        log
    }

    #[test]
    fn a_record_that_does_not_rebuild_is_kept_whole() {
        let Event::Etrn(record) = etrn_line(b"ETRN a.example\r\n") else {
            unreachable!("an ETRN line gives an ETRN record")
        };
        // Read back with a domain that is not its argument's: packing the argument would give
        // another record.
        let mut fields = serde_json::to_value(&record).unwrap();
        fields["domain"] = "b.example".into();
        let record: EtrnRecord = serde_json::from_value(fields).unwrap();
        assert_eq!(record.domain(), Some("b.example"));
        let (log, _) = round_trip(&[(7, Event::Etrn(Box::new(record)))]);
        assert_eq!(log.whole().len(), 1);
    }

    #[test]
    fn a_pipelined_etrn_costs_its_line_and_a_few_bytes() {
        let mut events = Vec::new();
        for n in 0..100u64 {
            let line = format!("ETRN d{n}.bench.example\r\n").into_bytes();
            let reply = Event::Reply {
                code: 250,
                lines: vec![format!("OK, queuing for node d{n}.bench.example started")],
            };
            let at = 1_000_000 + n / 10 * 300;
            events.push((at, Event::Unawaited { raw: line.clone() }));
            events.push((at, command_line(&line)));
            events.push((at, reply));
            events.push((at, etrn_line(&line)));
        }
        let (log, interner) = round_trip(&events);
        assert!(log.whole().is_empty());
        assert_eq!(
            interner.texts.len(),
            1,
            "one reply around the argument, shared"
        );
        // The line (28 or so octets) once, and under 20 more for the four events.
        let per_etrn = log.bytes.len() / 100;
        assert!(per_etrn < 48, "{per_etrn} octets per pipelined ETRN");
    }

    #[test]
    fn times_going_back_and_lines_that_differ_read_back_exactly() {
        let events = vec![
            (
                u64::MAX,
                Event::Unawaited {
                    raw: b"ETRN a\r\n".to_vec(),
                },
            ),
            (0, command_line(b"etrn  a \r\n")),
            (5, etrn_line(b"etrn  a \r\n")),
            (
                3,
                Event::Unawaited {
                    raw: b"NOOP\r\n".to_vec(),
                },
            ),
            (3, command_line(b"NOOP\n")),
            (4, etrn_line(b"ETRN #q\xff\r\n")),
            (9, command_line(b"XYZZY plugh\r\n")),
            (9, etrn_line(b"ETRN @plugh\r\n")),
        ];
        round_trip(&events);
    }

    proptest::proptest! {
        /// `varint`'s one- and two-byte paths write what the general loop writes.
        #[test]
        fn varint_is_leb128(n in proptest::prop_oneof![0..0x4100u64, proptest::num::u64::ANY]) {
            let (mut short, mut long) = (Vec::new(), Vec::new());
            varint(&mut short, n);
            long_varint(&mut long, n);
            proptest::prop_assert_eq!(short, long);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_events_read_back_exactly(
            steps in proptest::collection::vec(
                (0u8..8, 0u64..5_000_000, proptest::sample::select(vec![
                    &b"ETRN a.example\r\n"[..], b"etrn @B.Example.\n", b"ETRN #q1\r\n",
                    b"ETRN\r\n", b"ETRN a b\r\n", b"NOOP\r\n", b"ETRN x\xff\r\n",
                    b"ETRN bu\xc3\xa9cher.example\r\n", b"ETRN a\\b\r\n",
                ])),
                0..40,
            )
        ) {
            let events: Vec<(u64, Event)> = steps
                .iter()
                .map(|(kind, at, line)| {
                    let event = match kind {
                        0 | 1 => Event::Unawaited { raw: line.to_vec() },
                        2 => command_line(line),
                        3 => etrn_line(line),
                        4 => Event::Reply { code: 250, lines: vec![String::from_utf8_lossy(line).into_owned()] },
                        5 => Event::Reply { code: 250, lines: vec![format!("OK {} done", String::from_utf8_lossy(line))] },
                        6 => Event::Message(MessageRecord {
                            from: String::from_utf8_lossy(line).into_owned(),
                            recipients: vec![String::new(); line.len() % 3],
                            size: line.len() * 1000,
                            reply: 552,
                        }),
                        _ => Event::TalkedBeforeGreeting,
                    };
                    (*at, event)
                })
                .collect();
            round_trip(&events);
        }
    }

    proptest::proptest! {
        /// A reply quoting the argument and an ETRN handed over as their parts
        /// ([`EventLog::push_quoted_reply`], [`EventLog::push_plain_etrn`]) read back as their
        /// events pushed whole do, pipelined or not, whatever the reply's text and the argument.
        #[test]
        fn parts_read_back_as_their_events(
            steps in proptest::collection::vec(
                (
                    proptest::bool::ANY,
                    proptest::sample::select(vec![
                        "250 OK, queuing for node {node} started", "250 {arg}", "458 node {node} node",
                        "250 {node}", "250 e{arg}e",
                    ]),
                    proptest::sample::select(vec![
                        &b"a.example"[..], b"@a.example", b"#q", b"node", b"e", b"", b"a b",
                        b"x\xff", b"A.Example.", b"bu\xc3\xa9cher.example",
                    ]),
                ),
                0..24,
            )
        ) {
            use crate::proto::etrn::{Greeted, read_etrn};
            use crate::proto::replies::Placeholders;
            use crate::reply::{Placeholder, Reply};
            use crate::wire::Command;

            let mut whole = (EventLog::default(), Interner::default());
            let mut parts = (EventLog::default(), Interner::default());
            let mut events = Vec::new();
            for (n, (unawaited, text, argument)) in steps.iter().enumerate() {
                let at = n as u64 * 7;
                let mut line = b"ETRN ".to_vec();
                line.extend_from_slice(argument);
                line.extend_from_slice(b"\r\n");
                let command = Command::parse(&line);
                let reply = Reply::parse(text).unwrap();
                let read = read_etrn(&command, Greeted::EtrnAdvertised, false);
                let filled = Placeholders { arg: Some(read.sent()), ..Placeholders::default() }
                    .reply(&reply);
                let quoting = reply.template().and_then(|t| t.quoting()).unwrap();
                let value = match quoting.placeholder {
                    Placeholder::Node => read.sent().node().bytes(),
                    _ => read.sent().bytes(),
                };
                let quoted = QuotedReply::new(quoting, value);
                let plain = read.into_plain(Some(reply.code().get()));
                let record = read_etrn(&command, Greeted::EtrnAdvertised, false)
                    .record(Some(reply.code().get()));
                let reply_event = Event::Reply {
                    code: reply.code().get(),
                    lines: filled.lines().to_vec(),
                };
                if *unawaited {
                    events.push((at, Event::Unawaited { raw: line.clone() }));
                }
                events.push((at, command_line(&line)));
                events.push((at, Event::Etrn(Box::new(record))));
                events.push((at, reply_event.clone()));
                for (event_at, event) in events.iter().skip(whole.0.events(&whole.1).len()) {
                    whole.0.push(*event_at, event.clone(), &mut whole.1);
                }
                let (log, interner) = &mut parts;
                if *unawaited {
                    log.push_unawaited(at, &line);
                }
                log.push(at, command_line(&line), interner);
                match plain {
                    Ok(plain) => log.push_plain_etrn(at, &plain, interner),
                    Err(record) => log.push(at, Event::Etrn(record), interner),
                }
                let packed = quoted.is_some_and(|q| log.push_quoted_reply(at, &q, interner));
                if !packed {
                    log.push(at, reply_event, interner);
                }
            }
            let read_back = |(log, interner): &(EventLog, Interner)| -> Vec<(u64, Event)> {
                log.events(interner).into_iter().map(|t| (t.at_us, t.event)).collect()
            };
            proptest::prop_assert_eq!(read_back(&whole), events.clone());
            proptest::prop_assert_eq!(read_back(&parts), events);
        }
    }

    proptest::proptest! {
        /// An ETRN's line handed over as its parts ([`EventLog::push_etrn_command`]) is packed
        /// into the very bytes its event is, sent unawaited or not, shared or not (a line seen
        /// before, one too long to share), and reads back as its event.
        #[test]
        fn an_etrn_line_as_its_parts_packs_as_its_event(
            steps in proptest::collection::vec(
                (
                    0u8..3,
                    proptest::sample::select(vec![
                        &b"ETRN a.example\r\n"[..], b"etrn @B.Example.\n", b"Etrn\t#q1\r\n",
                        b"ETRN\r\n", b"ETRN a b\r\n", b"NOOP\r\n", b"ETRN x\xff\r\n",
                        b"ETRN d199999.bench.example\r\n", b"AUTH PLAIN dGVzdA==\r\n",
                    ]),
                    proptest::sample::select(vec![0usize, 40, 600]),
                ),
                0..40,
            )
        ) {
            use crate::wire::observer::ObservedCommand;

            let mut whole = (EventLog::default(), Interner::default());
            let mut parts = (EventLog::default(), Interner::default());
            let mut events = Vec::new();
            for (n, (kind, line, padding)) in steps.iter().enumerate() {
                let at = n as u64 * 3;
                let mut line = line.to_vec();
                let end = line.len() - if line.ends_with(b"\r\n") { 2 } else { 1 };
                line.splice(end..end, std::iter::repeat_n(b'z', *padding));
                let observed = ObservedCommand {
                    command: Command::parse(&line),
                    recorded: crate::wire::redact::command(&line),
                    auth_response: false,
                };
                let event = Event::Command(CommandLine::from(&observed));
                let (log, interner) = &mut parts;
                if *kind == 0 {
                    events.push((at, Event::Unawaited { raw: observed.recorded.to_vec() }));
                    log.push_unawaited(at, &observed.recorded);
                }
                events.push((at, event.clone()));
                match EtrnCommandLine::of(&observed) {
                    Some(etrn) => log.push_etrn_command(at, &etrn, interner),
                    None => log.push(at, event, interner),
                }
                if *kind == 2 {
                    let reply = Event::Reply { code: 250, lines: vec!["OK".into()] };
                    events.push((at, reply.clone()));
                    log.push(at, reply, interner);
                }
            }
            for (at, event) in &events {
                whole.0.push(*at, event.clone(), &mut whole.1);
            }
            proptest::prop_assert_eq!(&parts.0.bytes, &whole.0.bytes);
            let read_back: Vec<(u64, Event)> =
                parts.0.events(&parts.1).into_iter().map(|t| (t.at_us, t.event)).collect();
            proptest::prop_assert_eq!(read_back, events);
        }
    }

    #[test]
    fn a_short_argument_inside_the_replys_words_still_shares_one_template() {
        let mut events = Vec::new();
        for (n, argument) in ["e", "u", "n", "node", "a.example"].iter().enumerate() {
            let at = n as u64 * 10;
            events.push((at, command_line(format!("ETRN {argument}\r\n").as_bytes())));
            events.push((
                at,
                Event::Reply {
                    code: 250,
                    lines: vec![format!("OK, queuing for node {argument} started")],
                },
            ));
        }
        let (_, interner) = round_trip(&events);
        assert_eq!(interner.texts.len(), 1, "one template for every argument");
    }

    #[test]
    fn every_known_verb_packs_as_its_place_in_the_table() {
        for (at, known) in KNOWN_VERBS.iter().enumerate() {
            assert_eq!(verb_id(known).map(usize::from), Some(at), "{known:?}");
        }
        assert_eq!(verb_id(&Verb::parse(b"XYZZY")), None);
    }

    #[test]
    fn a_reply_that_fits_the_last_template_but_quotes_elsewhere_reads_back() {
        // The second reply fits the first's template by length and ends, but its middle is not
        // the argument: it must not be packed as that template.
        let exchanges: [(u64, &[u8], &str); 4] = [
            (1, b"ETRN ab\r\n", "OK ab done"),
            (2, b"ETRN cd\r\n", "OK xy done"),
            (3, b"ETRN \xc3\xa9\r\n", "OK \u{e9} done"),
            (4, b"ETRN \xa9\r\n", "OK \u{e9} done"),
        ];
        let events: Vec<(u64, Event)> = exchanges
            .iter()
            .flat_map(|(at, line, reply)| {
                let reply = Event::Reply {
                    code: 250,
                    lines: vec![(*reply).into()],
                };
                [(*at, command_line(line)), (*at, reply)]
            })
            .collect();
        let (_, interner) = round_trip(&events);
        assert_eq!(
            interner.texts.len(),
            3,
            "one template, and the two replies that do not quote their argument whole"
        );
    }

    #[test]
    fn sessions_share_their_command_lines_and_refer_to_them() {
        let mut interner = Interner::default();
        let session = |n: u64| {
            vec![
                (n, command_line(b"EHLO client.example\r\n")),
                (n, command_line(b"ETRN a.example\r\n")),
                (
                    n + 1,
                    Event::Reply {
                        code: 250,
                        lines: vec!["OK, queuing for node a.example started".into()],
                    },
                ),
                (n + 1, etrn_line(b"ETRN a.example\r\n")),
                (n + 2, command_line(b"QUIT\r\n")),
            ]
        };
        for n in 0..3 {
            let log = round_trip_sharing(&mut interner, &session(n * 1000));
            assert!(log.bytes.len() < 40, "{} octets", log.bytes.len());
        }
        assert_eq!(
            interner.commands.len(),
            3,
            "each line once, for every session"
        );
    }

    #[test]
    fn past_the_cap_command_lines_are_packed_inline() {
        let mut events = Vec::new();
        for n in 0..MAX_SHARED_COMMANDS + 3 {
            let line = format!("ETRN d{n}.example\r\n").into_bytes();
            events.push((0, command_line(&line)));
            events.push((0, etrn_line(&line)));
        }
        let (_, interner) = round_trip(&events);
        assert_eq!(interner.commands.len(), MAX_SHARED_COMMANDS);
    }

    #[test]
    fn a_command_line_longer_than_the_usual_limit_is_kept_but_not_shared() {
        let long = format!("NOOP {}\r\n", "x".repeat(MAX_SHARED_COMMAND_OCTETS)).into_bytes();
        let short = b"NOOP\r\n".to_vec();
        let events = [(0, command_line(&long)), (0, command_line(&short))];
        let (_, interner) = round_trip(&events);
        assert_eq!(
            *interner.commands,
            [Arc::<[u8]>::from(short)],
            "only the short one"
        );
    }

    #[test]
    fn past_the_cap_replies_are_packed_inline() {
        let mut interner = Interner::default();
        let mut log = EventLog::default();
        for i in 0..MAX_SHARED_REPLIES + 10 {
            log.push(
                0,
                Event::Reply {
                    code: 250,
                    lines: vec![format!("queued as {i}")],
                },
                &mut interner,
            );
        }
        assert_eq!(interner.texts.len(), MAX_SHARED_REPLIES);
        let last = log.events(&interner).pop().map(|t| t.event);
        assert_eq!(
            last,
            Some(Event::Reply {
                code: 250,
                lines: vec![format!("queued as {}", MAX_SHARED_REPLIES + 9)]
            })
        );
    }
}
