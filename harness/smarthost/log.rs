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
//! The packing is private to the process: nothing here is written to a file.

use std::collections::HashMap;
use std::sync::Arc;

use crate::escape::unescape;
use crate::proto::etrn::rebuild_etrn_record;
use crate::proto::event::{CommandLine, EtrnFlag, Event};
use crate::wire::Verb;

use crate::proto::recording::TimedEvent;

/// Distinct replies shared at most; past this a reply is packed inline, so a server whose
/// replies never repeat (queue ids, say) cannot grow the table without bound.
const MAX_SHARED_REPLIES: usize = 4096;

/// Reply texts shared by every session of one recorder.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<Arc<[String]>, u32>,
    texts: Vec<Arc<[String]>>,
}

impl Interner {
    /// The id of `lines`, adding them when there is room.
    fn id(&mut self, lines: &[String]) -> Option<u32> {
        if let Some(id) = self.ids.get(lines) {
            return Some(*id);
        }
        if self.texts.len() >= MAX_SHARED_REPLIES {
            return None;
        }
        let id = u32::try_from(self.texts.len()).ok()?;
        let shared: Arc<[String]> = lines.into();
        self.ids.insert(Arc::clone(&shared), id);
        self.texts.push(shared);
        Some(id)
    }

    fn lines(&self, id: u32) -> Option<&[String]> {
        self.texts.get(usize::try_from(id).ok()?).map(|a| &a[..])
    }
}

const COMMAND: u8 = 0;
const REPLY_SHARED: u8 = 1;
const REPLY_INLINE: u8 = 2;
const ETRN: u8 = 3;
const WHOLE: u8 = 4;
/// A line the client sent without waiting: one per pipelined command, so packed too.
const UNAWAITED: u8 = 5;

const FLAG_BARE_LF: u8 = 1;
const FLAG_REDACTED: u8 = 2;

/// One session's events, packed.
#[derive(Debug, Default, Clone)]
pub(crate) struct EventLog {
    bytes: Vec<u8>,
    /// Events kept as they are (referred to by index from `bytes`).
    whole: Vec<Event>,
    count: usize,
}

impl EventLog {
    /// Appends an event.
    pub(crate) fn push(&mut self, at_us: u64, event: Event, interner: &mut Interner) {
        self.count += 1;
        let b = &mut self.bytes;
        match event {
            Event::Command(c) => {
                b.push(COMMAND);
                varint(b, at_us);
                bytes(b, &c.raw);
                bytes(b, c.verb.as_str().as_bytes());
                let flags = if c.bare_lf { FLAG_BARE_LF } else { 0 }
                    | if c.redacted { FLAG_REDACTED } else { 0 };
                b.push(flags);
            }
            Event::Reply { code, lines } => match interner.id(&lines) {
                Some(id) => {
                    b.push(REPLY_SHARED);
                    varint(b, at_us);
                    varint(b, u64::from(code));
                    varint(b, u64::from(id));
                }
                None => {
                    b.push(REPLY_INLINE);
                    varint(b, at_us);
                    varint(b, u64::from(code));
                    varint(b, lines.len() as u64);
                    for l in &lines {
                        bytes(b, l.as_bytes());
                    }
                }
            },
            Event::Etrn(record) => {
                // Packed as the argument, the reply and the flags, when those rebuild it exactly.
                let argument = unescape(&record.raw).ok();
                let rebuilt = argument
                    .as_ref()
                    .map(|a| rebuild_etrn_record(a, record.reply, record.flags.clone()));
                match (argument, rebuilt) {
                    (Some(argument), Some(rebuilt)) if rebuilt == *record => {
                        b.push(ETRN);
                        varint(b, at_us);
                        bytes(b, &argument);
                        varint(b, record.reply.map_or(0, |c| u64::from(c) + 1));
                        b.push(u8::try_from(record.flags.len()).unwrap_or(u8::MAX));
                        for f in record.flags.iter().take(usize::from(u8::MAX)) {
                            b.push(flag_id(*f));
                        }
                    }
                    _ => self.push_whole(at_us, Event::Etrn(record)),
                }
            }
            Event::Unawaited { raw } => {
                b.push(UNAWAITED);
                varint(b, at_us);
                bytes(b, &raw);
            }
            other => self.push_whole(at_us, other),
        }
    }

    fn push_whole(&mut self, at_us: u64, event: Event) {
        self.bytes.push(WHOLE);
        varint(&mut self.bytes, at_us);
        varint(&mut self.bytes, self.whole.len() as u64);
        self.whole.push(event);
    }

    /// Gives back what growing reserved: the log of a closed session grows no more.
    pub(crate) fn shrink(&mut self) {
        self.bytes.shrink_to_fit();
        self.whole.shrink_to_fit();
    }

    /// The events, as they went in.
    pub(crate) fn events(&self, interner: &Interner) -> Vec<TimedEvent> {
        let mut out = Vec::with_capacity(self.count);
        let mut r = Reader {
            bytes: &self.bytes,
            at: 0,
        };
        while let Some(tag) = r.byte() {
            let at_us = r.varint();
            let event = match tag {
                COMMAND => {
                    let raw = r.bytes().to_vec();
                    let verb = Verb::parse(r.bytes());
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
                        .map(|_| String::from_utf8_lossy(r.bytes()).into_owned())
                        .collect();
                    Event::Reply { code, lines }
                }
                ETRN => {
                    let argument = r.bytes().to_vec();
                    let reply = r
                        .varint()
                        .checked_sub(1)
                        .and_then(|c| u16::try_from(c).ok());
                    let n = r.byte().unwrap_or(0);
                    let flags = (0..n).filter_map(|_| flag_of(r.byte()?)).collect();
                    Event::Etrn(Box::new(rebuild_etrn_record(&argument, reply, flags)))
                }
                UNAWAITED => Event::Unawaited {
                    raw: r.bytes().to_vec(),
                },
                _ => {
                    let index = usize::try_from(r.varint()).unwrap_or(usize::MAX);
                    match self.whole.get(index) {
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
fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
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

    fn bytes(&mut self) -> &'a [u8] {
        let len = usize::try_from(self.varint()).unwrap_or(usize::MAX);
        let end = self.at.saturating_add(len).min(self.bytes.len());
        let b = &self.bytes[self.at..end];
        self.at = end;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etrn::{Greeted, read_etrn};
    use crate::proto::event::MessageRecord;
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
                raw: b"ehlo c\n".to_vec(),
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
            Event::Command(CommandLine {
                raw: b"[redacted]\r\n".to_vec(),
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
        assert_eq!(log.count, events.len());
        assert_eq!(log.whole.len(), 1, "only the message is kept whole");
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
