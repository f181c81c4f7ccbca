//! The log of a fake peer ([`EventLog`] of [`Event`]s) and what tests
//! read from it.

use std::sync::Arc;
use std::time::Duration;

use rivulet_wire::{BlockRequest, Handshake, Message};
use tokio::sync::watch;
use tokio::time::Instant;

/// What a fake peer saw and did, in order, over all its connections
/// (numbered from 0 in the order they were accepted or made).
#[derive(Debug, Clone)]
pub enum Event {
    /// Connection n was accepted (or made, for one that connected out).
    Accepted(usize),
    /// The other side's handshake.
    Hello(usize, Handshake),
    /// A message from the other side.
    Got(usize, Message),
    /// A message the fake peer sent (blocks from the fixture are `Served`).
    Sent(usize, Message),
    /// The fake peer sent this block of its fixture (`true`: the right data).
    Served(usize, BlockRequest, bool),
    /// Something the other side must never do (a request while choked, an
    /// undecodable message, ...). After an undecodable message the
    /// connection reads no more.
    Violation(usize, String),
    /// The other side closed the connection (end of stream, or a reset: the
    /// text says which), at this time.
    Eof(usize, Instant, String),
}

/// The events of a fake peer, shared by its connections; a `watch` so that
/// tests can wait for what they expect.
#[derive(Debug, Clone)]
pub struct EventLog(Arc<watch::Sender<Vec<Event>>>);

impl Default for EventLog {
    fn default() -> Self {
        EventLog(Arc::new(watch::channel(Vec::new()).0))
    }
}

impl EventLog {
    /// An empty log.
    pub fn new() -> EventLog {
        EventLog::default()
    }

    /// Appends `e`, waking whoever waits.
    pub fn record(&self, e: Event) {
        self.0.send_modify(|l| l.push(e));
    }

    /// What `f` makes of the log so far (no copy of it).
    pub fn read<R>(&self, f: impl FnOnce(&[Event]) -> R) -> R {
        f(&self.0.borrow())
    }

    /// Everything logged so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.borrow().clone()
    }

    /// A receiver that sees each change (`wait_for` on it to wait for an
    /// event inside another future).
    pub fn subscribe(&self) -> watch::Receiver<Vec<Event>> {
        self.0.subscribe()
    }

    /// Waits until the log satisfies `pred`; fails the test after `limit`,
    /// showing `who`, `what` and a summary of the log.
    pub async fn wait(
        &self,
        limit: Duration,
        who: &str,
        what: &str,
        pred: impl Fn(&[Event]) -> bool,
    ) {
        let mut rx = self.subscribe();
        let waited = tokio::time::timeout(limit, async {
            // The sender lives as long as `self`: this cannot fail.
            let _ = rx.wait_for(|l| pred(l)).await;
        })
        .await;
        if waited.is_err() {
            panic!(
                "{who}: not within {limit:?}: {what}\nlog: {:#?}",
                summary(&self.events())
            );
        }
    }
}

/// Requests the other side sent, with the connection they came on.
pub fn requests(log: &[Event]) -> Vec<(usize, BlockRequest)> {
    log.iter()
        .filter_map(|e| match e {
            Event::Got(c, Message::Request(r)) => Some((*c, *r)),
            _ => None,
        })
        .collect()
}

/// Cancels the other side sent.
pub fn cancels(log: &[Event]) -> Vec<BlockRequest> {
    log.iter()
        .filter_map(|e| match e {
            Event::Got(_, Message::Cancel(r)) => Some(*r),
            _ => None,
        })
        .collect()
}

/// Blocks the fake peer served from its fixture.
pub fn served(log: &[Event]) -> Vec<BlockRequest> {
    log.iter()
        .filter_map(|e| match e {
            Event::Served(_, r, _) => Some(*r),
            _ => None,
        })
        .collect()
}

/// Whether the other side closed connection `conn`.
pub fn eof(log: &[Event], conn: usize) -> bool {
    log.iter()
        .any(|e| matches!(e, Event::Eof(c, ..) if *c == conn))
}

/// How many connections were accepted (or made).
pub fn accepts(log: &[Event]) -> usize {
    log.iter()
        .filter(|e| matches!(e, Event::Accepted(_)))
        .count()
}

/// Position in the log of the first event matching `pred`.
pub fn position(log: &[Event], pred: impl Fn(&Event) -> bool) -> Option<usize> {
    log.iter().position(pred)
}

/// The messages received on connection `conn`, in order.
pub fn got(log: &[Event], conn: usize) -> Vec<Message> {
    log.iter()
        .filter_map(|e| match e {
            Event::Got(c, m) if *c == conn => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// A message, without block payloads, for failure messages.
pub fn show(m: &Message) -> String {
    match m {
        Message::Piece {
            piece,
            offset,
            data,
        } => format!("Piece {piece} {offset} +{}", data.len()),
        Message::Bitfield(_) => "Bitfield".into(),
        Message::Extended { id, .. } => format!("Extended {id}"),
        other => format!("{other:?}"),
    }
}

/// The last 30 messages of `msgs`, for failure messages.
pub fn tail(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .skip(msgs.len().saturating_sub(30))
        .map(show)
        .collect()
}

/// The log without block payloads, for failure messages: its first and
/// last 30 events.
pub fn summary(log: &[Event]) -> Vec<String> {
    let one = |e: &Event| match e {
        Event::Got(c, m) => format!("Got({c}, {})", show(m)),
        Event::Sent(c, m) => format!("Sent({c}, {})", show(m)),
        other => format!("{other:?}"),
    };
    if log.len() <= 60 {
        return log.iter().map(one).collect();
    }
    let mut out: Vec<String> = log[..30].iter().map(one).collect();
    out.push(format!("... {} more ...", log.len() - 60));
    out.extend(log[log.len() - 30..].iter().map(one));
    out
}
