//! One fake BitTorrent peer for every test: a [`FakePeer`] that listens
//! and runs each accepted connection by a behaviour of the test's, or a
//! [`Conn`] that connects out ([`Conn::connect`]); both speak the wire
//! protocol through `rivulet_wire` (`Handshake`, `Message`,
//! `MessageDecoder`) over tokio.
//!
//! A connection handshakes with the reserved bits, info-hash and peer id the
//! test chooses, sends any message, serves the blocks of a [`Fixture`]
//! (honestly, corruptly, slowly, not at all, or as a policy closure says, see
//! [`Conn::seed`] and [`Act`]) and records everything in an [`EventLog`]:
//! the other side's handshake, each message it sent, each message and block
//! sent to it, each rule it broke, and when it closed the connection. Tests
//! wait on that log ([`EventLog::wait`]) under timeouts that only fail the
//! test; no sleep is used as synchronisation.
//!
//! [`blocking`] runs the same peer on a runtime of its own, for tests that
//! are not async (the CLI's interop tests).

pub mod blocking;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rivulet_core::{InfoHash, PeerId};
use rivulet_wire::{BlockRequest, Handshake, Message, MessageDecoder, Reserved};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::addr::next_loopback;
use crate::fixture::{bitfield, within, Fixture};

/// How long [`FakePeer::wait`] and [`Conn`]'s waits give something that
/// should happen at once, unless told otherwise ([`Conn::connect_within`]).
pub const PROMPT: Duration = Duration::from_secs(5);

/// How long [`tcp_from`] may take to connect on loopback (generous: a
/// loaded machine must not fail a test here).
pub const CONNECT: Duration = Duration::from_secs(10);

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

// ---------------------------------------------------------------------------
// Reading a log

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

/// The request a piece message answers.
pub fn answered(m: &Message) -> Option<BlockRequest> {
    match m {
        Message::Piece {
            piece,
            offset,
            data,
        } => Some(BlockRequest {
            piece: *piece,
            offset: *offset,
            length: data.len() as u32,
        }),
        _ => None,
    }
}

/// Asserts a piece message carries `fx`'s bytes; returns the request it
/// answers.
pub fn check_piece(fx: &Fixture, m: &Message) -> BlockRequest {
    let r = answered(m).expect("a piece message");
    let Message::Piece { data, .. } = m else {
        unreachable!()
    };
    let want = fx
        .range(&r)
        .unwrap_or_else(|| panic!("block outside the torrent: {r:?}"));
    assert!(data[..] == want[..], "wrong bytes for {r:?}");
    r
}

/// `msgs`, encoded one after the other.
pub fn encode(msgs: impl IntoIterator<Item = Message>) -> BytesMut {
    let mut buf = BytesMut::new();
    for m in msgs {
        m.encode(&mut buf);
    }
    buf
}

/// A TCP connection to `to` from `ip` (port chosen by the system), so that
/// each fake peer has an address of its own; fails the test if it cannot
/// connect within [`CONNECT`].
pub async fn tcp_from(ip: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
    let stream = within(CONNECT, "connect", socket.connect(to))
        .await
        .unwrap_or_else(|e| panic!("connect from {ip} to {to}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream
}

// ---------------------------------------------------------------------------
// One connection

/// What a seeding connection does with one request ([`Conn::seed`]).
#[derive(Debug, Clone)]
pub enum Act {
    /// Send the block.
    Serve,
    /// Send the block with every byte flipped.
    Corrupt,
    /// Answer with a BEP 6 reject.
    Reject,
    /// Send this message.
    Send(Message),
    /// Wait this long before the next act: a slow peer. (Behaviour, not
    /// synchronisation: a test waits on the log, never on this.)
    Pause(Duration),
    /// From now on, answer nothing (keep reading until the other side
    /// hangs up).
    Hang,
    /// Close the connection now.
    Close,
}

/// One connection of a fake peer, accepted by a [`FakePeer`] or made by
/// [`Conn::connect`]. Dropping it closes the connection.
pub struct Conn {
    id: usize,
    inbox: Inbox,
    writer: OwnedWriteHalf,
    log: EventLog,
    fx: Option<Arc<Fixture>>,
    peer_id: PeerId,
    ip: Ipv4Addr,
    hello: Option<Handshake>,
    /// How long [`Conn::expect`] and [`Conn::closed`] wait.
    patience: Duration,
}

impl Conn {
    fn new(
        id: usize,
        stream: TcpStream,
        log: EventLog,
        fx: Option<Arc<Fixture>>,
        peer_id: PeerId,
    ) -> Conn {
        let ip = match stream.local_addr().map(|a| a.ip()) {
            Ok(IpAddr::V4(ip)) => ip,
            other => panic!("a fake peer lives on IPv4, not {other:?}"),
        };
        // Halves from the start, so that `split` can hand the reading to a
        // task of its own as it is.
        let (half, writer) = stream.into_split();
        Conn {
            id,
            inbox: Inbox {
                id,
                half,
                rbuf: BytesMut::with_capacity(64 * 1024),
                decoder: MessageDecoder::new(),
                log: log.clone(),
            },
            writer,
            log,
            fx,
            peer_id,
            ip,
            hello: None,
            patience: PROMPT,
        }
    }

    /// Connects from `from` to `to`, sends `ours` and reads the other
    /// side's handshake (logged as connection 0 of a log of its own);
    /// `None` if the other side hangs up first. Fails the test if it
    /// answers for another info-hash, or not within [`PROMPT`].
    pub async fn connect(from: Ipv4Addr, to: SocketAddr, ours: Handshake) -> Option<Conn> {
        Conn::connect_within(PROMPT, from, to, ours).await
    }

    /// [`Conn::connect`], waiting `patience` for the handshake and, later,
    /// in [`Conn::expect`] and [`Conn::closed`].
    pub async fn connect_within(
        patience: Duration,
        from: Ipv4Addr,
        to: SocketAddr,
        ours: Handshake,
    ) -> Option<Conn> {
        let stream = tcp_from(from, to).await;
        let log = EventLog::new();
        log.record(Event::Accepted(0));
        let mut conn = Conn::new(0, stream, log, None, ours.peer_id);
        conn.patience = patience;
        conn.write(&ours.to_bytes()).await;
        let theirs = within(
            patience,
            "the other side's handshake",
            conn.read_handshake(),
        )
        .await;
        let Some(theirs) = theirs else {
            if let Some(Event::Violation(_, bad)) = conn.log.events().last() {
                panic!("the other side's handshake: {bad}");
            }
            return None;
        };
        assert_eq!(
            theirs.info_hash, ours.info_hash,
            "the other side's handshake"
        );
        Some(conn)
    }

    /// Serves `fx` from now on ([`Conn::seed`], [`Conn::send_block`]).
    pub fn with_fixture(mut self, fx: Arc<Fixture>) -> Conn {
        self.fx = Some(fx);
        self
    }

    fn fx(&self) -> &Fixture {
        self.fx
            .as_deref()
            .expect("this connection serves no fixture")
    }

    /// This connection's number in the log.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Its local address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The other side's handshake. Panics before it came.
    pub fn hello(&self) -> Handshake {
        self.hello.expect("no handshake yet")
    }

    /// The log this connection writes to.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Every message the other side sent on this connection so far.
    pub fn got(&self) -> Vec<Message> {
        got(&self.log.0.borrow(), self.id)
    }

    /// Logs `e`.
    pub fn record(&self, e: Event) {
        self.log.record(e);
    }

    /// Logs a rule the other side broke.
    pub fn violation(&self, what: String) {
        self.record(Event::Violation(self.id, what));
    }

    /// Reads more bytes; false (and `Eof` logged) once the other side hung
    /// up.
    pub async fn read_more(&mut self) -> bool {
        self.inbox.read_more().await
    }

    /// Writes raw bytes. A failed write means the other side hung up, which
    /// the next read reports.
    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = self.writer.write_all(bytes).await;
    }

    /// The other side's handshake (logged); `None` if it hung up first or
    /// sent no handshake.
    async fn read_handshake(&mut self) -> Option<Handshake> {
        let theirs = self
            .inbox
            .next(|_, buf| Handshake::decode(buf), "bad handshake")
            .await?;
        self.record(Event::Hello(self.id, theirs));
        self.hello = Some(theirs);
        Some(theirs)
    }

    /// Reads the other side's handshake, then answers for `info_hash` with
    /// the extension bits `reserved`. False if it hung up first.
    pub async fn handshake_as(&mut self, reserved: Reserved, info_hash: InfoHash) -> bool {
        let Some(theirs) = self.read_handshake().await else {
            return false;
        };
        if self.fx.is_some() && theirs.info_hash != self.fx().info_hash() {
            self.violation("handshake for another torrent".into());
        }
        let ours = Handshake {
            reserved,
            info_hash,
            peer_id: self.peer_id,
        };
        self.write(&ours.to_bytes()).await;
        true
    }

    /// [`Conn::handshake_as`] for the fixture's info-hash.
    pub async fn handshake(&mut self, reserved: Reserved) -> bool {
        let info_hash = self.fx().info_hash();
        self.handshake_as(reserved, info_hash).await
    }

    /// The next message from the other side, logged; `None` once it hung
    /// up (or sent something undecodable, logged as a violation).
    /// Cancel-safe (bytes read stay in the buffer), so usable in `select!`.
    pub async fn recv(&mut self) -> Option<Message> {
        self.inbox.recv().await
    }

    /// Reads and logs everything until the other side hangs up.
    pub async fn drain(&mut self) {
        while self.recv().await.is_some() {}
    }

    /// Sends `m` (logged).
    pub async fn send(&mut self, m: Message) {
        self.send_all([m]).await;
    }

    /// Sends messages in one write (each logged).
    pub async fn send_all(&mut self, msgs: impl IntoIterator<Item = Message>) {
        let msgs: Vec<Message> = msgs.into_iter().collect();
        self.write(&encode(msgs.iter().cloned())).await;
        for m in msgs {
            self.record(Event::Sent(self.id, m));
        }
    }

    /// Sends the fixture's block asked for by `r`, corrupted or not; nothing
    /// if `r` is not one of its blocks.
    pub async fn send_block(&mut self, r: BlockRequest, corrupt: bool) {
        let Some(block) = self.fx().block(&r) else {
            return;
        };
        let mut data = block.to_vec();
        if corrupt {
            data.iter_mut().for_each(|b| *b = !*b);
        }
        let m = Message::Piece {
            piece: r.piece,
            offset: r.offset,
            data: Bytes::from(data),
        };
        self.write(&encode([m])).await;
        self.record(Event::Served(self.id, r, !corrupt));
    }

    /// Checks a request from the other side: a real block of the fixture,
    /// of a piece announced in `have`, not while `choked`. Logs a violation
    /// and returns false otherwise.
    pub fn check_request(&self, r: &BlockRequest, have: &[bool], choked: bool) -> bool {
        if choked {
            self.violation(format!("request while choked: {r:?}"));
            false
        } else if self.fx().block(r).is_none() {
            self.violation(format!("request that is not a block: {r:?}"));
            false
        } else if !have.get(r.piece as usize).copied().unwrap_or(false) {
            self.violation(format!("request for a piece not announced: {r:?}"));
            false
        } else {
            true
        }
    }

    /// Handshakes with `reserved`, announces `have` in a bitfield, unchokes
    /// once the other side is interested, and answers the n-th valid request
    /// `r` of this connection as `policy(n, r)` says, until the other side
    /// hangs up (or an [`Act::Close`]).
    pub async fn seed(
        mut self,
        have: Vec<bool>,
        reserved: Reserved,
        policy: impl FnMut(usize, &BlockRequest) -> Vec<Act>,
    ) {
        if !self.handshake(reserved).await {
            return;
        }
        self.send(bitfield(&have)).await;
        self.serve(have, false, policy).await;
    }

    /// Whether a whole message from the other side is already buffered.
    pub fn more_buffered(&self) -> bool {
        let inbox = &self.inbox;
        !inbox.rbuf.is_empty() && inbox.decoder.bytes_needed(&inbox.rbuf) == 0
    }

    /// The message loop of [`Conn::seed`], after the bitfield. Unchokes
    /// (if not yet) once the other side says it is interested and every
    /// message it sent with that has been read, so that a request sent
    /// before the unchoke is seen as one.
    pub async fn serve(
        &mut self,
        mut have: Vec<bool>,
        mut unchoked: bool,
        mut policy: impl FnMut(usize, &BlockRequest) -> Vec<Act>,
    ) {
        let mut n = 0;
        let mut interested = false;
        while let Some(m) = self.recv().await {
            match m {
                Message::Interested => interested = true,
                Message::Request(r) => {
                    if !self.check_request(&r, &have, !unchoked) {
                        continue;
                    }
                    let acts = policy(n, &r);
                    n += 1;
                    for act in acts {
                        match act {
                            Act::Serve => self.send_block(r, false).await,
                            Act::Corrupt => self.send_block(r, true).await,
                            Act::Reject => self.send(Message::RejectRequest(r)).await,
                            Act::Send(m) => {
                                if let Message::Have { piece } = m {
                                    have[piece as usize] = true;
                                }
                                self.send(m).await;
                            }
                            Act::Pause(d) => tokio::time::sleep(d).await,
                            Act::Hang => return self.drain().await,
                            Act::Close => return,
                        }
                    }
                }
                _ => {}
            }
            if interested && !unchoked && !self.more_buffered() {
                self.send(Message::Unchoke).await;
                unchoked = true;
            }
        }
    }

    /// Waits for a message matching `pred`; fails the test if the other
    /// side hangs up first or it does not come within its patience
    /// ([`PROMPT`] unless [`Conn::connect_within`] said otherwise).
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Message) -> bool) -> Message {
        let limit = self.patience;
        let found = tokio::time::timeout(limit, async {
            while let Some(m) = self.recv().await {
                if pred(&m) {
                    return Some(m);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(m)) => m,
            Ok(None) => panic!("{what}: hung up; got {:?}", tail(&self.got())),
            Err(_) => panic!("{what}: not within {limit:?}; got {:?}", tail(&self.got())),
        }
    }

    /// Reads until the other side hangs up; returns the messages that came
    /// meanwhile. Fails the test if it does not hang up within its
    /// patience, or sends something undecodable.
    pub async fn closed(&mut self, what: &str) -> Vec<Message> {
        let from = self.got().len();
        let done = tokio::time::timeout(self.patience, async {
            while self.recv().await.is_some() {}
        })
        .await;
        assert!(
            done.is_ok(),
            "{what}: no hang-up; got {:?}",
            tail(&self.got())
        );
        let log = self.log.events();
        assert!(eof(&log, self.id), "{what}: {:?}", summary(&log).last());
        self.got()[from..].to_vec()
    }

    /// Says it is interested and waits to be unchoked.
    pub async fn unchoked(&mut self) {
        self.send(Message::Interested).await;
        self.expect("unchoke after interested", |m| *m == Message::Unchoke)
            .await;
    }

    /// Requests `blocks` of `fx` with `depth` requests in flight, checking
    /// that each is answered once with the right bytes; returns the bytes
    /// received. Fails on a choke, a reject, an unrequested block or a
    /// hang-up.
    pub async fn fetch(&mut self, fx: &Fixture, blocks: &[BlockRequest], depth: usize) -> u64 {
        let mut pending: std::collections::VecDeque<BlockRequest> =
            blocks.iter().copied().collect();
        let mut in_flight = std::collections::HashSet::new();
        let mut bytes = 0;
        while !pending.is_empty() || !in_flight.is_empty() {
            let mut batch = Vec::new();
            while in_flight.len() < depth {
                let Some(r) = pending.pop_front() else { break };
                assert!(in_flight.insert(r), "test requests {r:?} twice");
                batch.push(Message::Request(r));
            }
            self.send_all(batch).await;
            let m = self.recv().await.unwrap_or_else(|| {
                panic!(
                    "hung up with {} requests unanswered; got {:?}",
                    in_flight.len(),
                    tail(&self.got())
                )
            });
            match m {
                Message::Piece { .. } => {
                    let r = check_piece(fx, &m);
                    assert!(
                        in_flight.remove(&r),
                        "block not (or no longer) requested: {r:?}"
                    );
                    bytes += u64::from(r.length);
                }
                Message::Choke | Message::RejectRequest(_) => {
                    panic!("{} while fetching; got {:?}", show(&m), tail(&self.got()))
                }
                _ => {}
            }
        }
        bytes
    }

    /// Splits the connection: a task reads (and logs) everything the other
    /// side sends until it hangs up, and then returns every message of the
    /// connection (or panics, after logging it, if a message does not
    /// decode); the write half is returned for raw writes.
    pub fn split(self) -> (OwnedWriteHalf, JoinHandle<Vec<Message>>) {
        let mut inbox = self.inbox;
        let task = tokio::spawn(async move {
            while inbox.recv().await.is_some() {}
            let log = inbox.log.events();
            if let Some(Event::Violation(_, bad)) = log.last() {
                panic!("connection {}: {bad}", inbox.id);
            }
            got(&log, inbox.id)
        });
        (self.writer, task)
    }
}

/// The reading half of a [`Conn`]: decodes and logs what the other side
/// sends.
struct Inbox {
    id: usize,
    half: OwnedReadHalf,
    rbuf: BytesMut,
    decoder: MessageDecoder,
    log: EventLog,
}

impl Inbox {
    /// Reads more bytes; false (and `Eof` logged) once the other side hung
    /// up.
    async fn read_more(&mut self) -> bool {
        let how = match self.half.read_buf(&mut self.rbuf).await {
            Ok(0) => "end of stream".to_owned(),
            Err(e) => format!("read error: {e}"),
            Ok(_) => return true,
        };
        self.log.record(Event::Eof(self.id, Instant::now(), how));
        false
    }

    /// The next thing `decode` (given the message decoder and the bytes
    /// read) finds in what the other side sends; `None`
    /// once it hung up, or sent what `decode` refuses (logged as a
    /// violation, `bad` saying what it is). Cancel-safe: bytes read stay in
    /// the buffer.
    async fn next<T, E: std::fmt::Display>(
        &mut self,
        mut decode: impl FnMut(&mut MessageDecoder, &mut BytesMut) -> Result<Option<T>, E>,
        bad: &str,
    ) -> Option<T> {
        loop {
            match decode(&mut self.decoder, &mut self.rbuf) {
                Ok(Some(t)) => return Some(t),
                Ok(None) => {}
                Err(e) => {
                    let what = format!("{bad}: {e}");
                    self.log.record(Event::Violation(self.id, what));
                    return None;
                }
            }
            if !self.read_more().await {
                return None;
            }
        }
    }

    /// The next message, logged.
    async fn recv(&mut self) -> Option<Message> {
        let m = self
            .next(MessageDecoder::decode, "undecodable message")
            .await?;
        self.log.record(Event::Got(self.id, m.clone()));
        Some(m)
    }
}

// ---------------------------------------------------------------------------
// A listening fake peer

/// A fake peer: a listener on its own loopback address and the connections
/// it accepted, each run by the test's behaviour. Dropping it closes the
/// listener and every connection.
pub struct FakePeer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw and did.
    pub log: EventLog,
    task: JoinHandle<()>,
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePeer {
    /// A fake peer on a fresh loopback address ([`next_loopback`]) serving
    /// `fx`: each accepted connection is given to `behaviour`.
    pub async fn start<F, Fut>(fx: &Arc<Fixture>, behaviour: F) -> FakePeer
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        FakePeer::start_on(next_loopback(), fx, behaviour).await
    }

    /// [`FakePeer::start`] on `ip`. Each connection has a peer id of its
    /// own (`-FK0001-`, the IP, the connection's number).
    pub async fn start_on<F, Fut>(ip: Ipv4Addr, fx: &Arc<Fixture>, behaviour: F) -> FakePeer
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = EventLog::new();
        let (fx, conn_log) = (Arc::clone(fx), log.clone());
        let task = tokio::spawn(async move {
            // Dropped with the task, which aborts every connection.
            let mut conns = JoinSet::new();
            for id in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conn_log.record(Event::Accepted(id));
                let mut peer_id = *b"-FK0001-000000000000";
                peer_id[8..12].copy_from_slice(&ip.octets());
                peer_id[12..20].copy_from_slice(&(id as u64).to_be_bytes());
                let conn = Conn::new(
                    id,
                    stream,
                    conn_log.clone(),
                    Some(Arc::clone(&fx)),
                    PeerId(peer_id),
                );
                conns.spawn(behaviour(conn));
            }
        });
        FakePeer { addr, log, task }
    }

    /// An honest seeder: every piece, serves every request.
    pub async fn honest(fx: &Arc<Fixture>) -> FakePeer {
        let all = vec![true; fx.num_pieces()];
        FakePeer::start(fx, move |c| {
            c.seed(all.clone(), Reserved::NONE, |_, _| vec![Act::Serve])
        })
        .await
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        match self.addr.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => unreachable!("bound to an IPv4 address"),
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> Vec<Event> {
        self.log.events()
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        accepts(&self.log())
    }

    /// Waits until the log satisfies `pred`; fails the test after
    /// [`PROMPT`].
    pub async fn wait(&self, what: &str, pred: impl Fn(&[Event]) -> bool) {
        let who = format!("fake peer {}", self.addr);
        self.log.wait(PROMPT, &who, what, pred).await;
    }

    /// Asserts the other side never broke the rules this fake peer checks.
    pub fn assert_no_violation(&self) {
        let bad: Vec<_> = self
            .log()
            .into_iter()
            .filter(|e| matches!(e, Event::Violation(..)))
            .collect();
        assert!(bad.is_empty(), "fake peer {}: {bad:?}", self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{all, PIECES};

    /// The two halves of the kit against each other: a leecher `Conn`
    /// fetches every block from an honest `FakePeer`, both logs say so, and
    /// the seeder sees the leecher hang up.
    #[tokio::test]
    async fn a_leecher_fetches_everything_from_an_honest_seeder() {
        let fx = Fixture::single(1);
        let seeder = FakePeer::honest(&fx).await;
        let ours = Handshake::new(fx.info_hash(), PeerId(*b"-LE0001-000000000001"));
        let mut l = Conn::connect(next_loopback(), seeder.addr, ours)
            .await
            .unwrap();
        assert_eq!(l.hello().info_hash, fx.info_hash());
        let m = l
            .expect("bitfield", |m| matches!(m, Message::Bitfield(_)))
            .await;
        assert_eq!(m, bitfield(&all()));
        l.unchoked().await;
        let bytes = l.fetch(&fx, &fx.all_blocks(), 8).await;
        assert_eq!(bytes, fx.data.len() as u64);
        drop(l);
        seeder.wait("the leecher hangs up", |l| eof(l, 0)).await;
        let log = seeder.log();
        assert_eq!(served(&log).len(), fx.all_blocks().len());
        assert_eq!(requests(&log).len(), fx.all_blocks().len());
        assert_eq!(accepts(&log), 1);
        seeder.assert_no_violation();
    }

    /// A policy that rejects, pauses, corrupts and closes: the leecher sees
    /// each, and the seeder logs a request for a piece it never announced
    /// as a violation.
    #[tokio::test]
    async fn policies_and_violations_are_logged() {
        let fx = Fixture::single(2);
        let mut have = all();
        have[PIECES - 1] = false;
        let seeder = FakePeer::start(&fx, move |c| {
            c.seed(have.clone(), Reserved::FAST, |n, _| match n {
                0 => vec![Act::Reject],
                1 => vec![Act::Pause(Duration::from_millis(200)), Act::Corrupt],
                _ => vec![Act::Close],
            })
        })
        .await;
        let ours = Handshake {
            reserved: Reserved::FAST,
            ..Handshake::new(fx.info_hash(), PeerId(*b"-LE0001-000000000002"))
        };
        let mut l = Conn::connect(next_loopback(), seeder.addr, ours)
            .await
            .unwrap();
        l.unchoked().await;
        let (a, b) = (fx.blocks_of(0)[0], fx.blocks_of(0)[1]);
        let missing = fx.blocks_of(PIECES as u32 - 1)[0];
        let started = Instant::now();
        l.send_all([a, missing, b].map(Message::Request)).await;
        l.expect("a reject", |m| *m == Message::RejectRequest(a))
            .await;
        let m = l.expect("a block", |m| answered(m).is_some()).await;
        assert!(started.elapsed() >= Duration::from_millis(200), "no pause");
        let Message::Piece { data, .. } = m else {
            unreachable!()
        };
        assert_ne!(&data[..], fx.block(&b).unwrap(), "not corrupt");
        l.send(Message::Request(fx.blocks_of(1)[0])).await;
        l.closed("the seeder closes").await;
        let log = seeder.log();
        assert_eq!(served(&log), vec![b]);
        assert!(log.iter().any(|e| matches!(
            e,
            Event::Violation(0, what) if what.contains("not announced")
        )));
    }

    /// The blocking facade: a leecher driven from a plain thread, against a
    /// fake seeder on the kit's runtime.
    #[test]
    fn a_blocking_leecher_sees_blocks_and_the_close() {
        let fx = Fixture::single(3);
        let seeder = blocking::block_on(FakePeer::start(&fx, |c| {
            c.seed(all(), Reserved::FAST, |_, _| vec![Act::Serve])
        }));
        let peer = blocking::BlockingPeer::leecher(next_loopback(), seeder.addr, fx.info_hash());
        let st = peer.wait_for("bitfield", PROMPT, |s| s.has_piece(PIECES as u32 - 1));
        assert!(st.reserved[7] & 0x04 != 0, "fast bit: {st:?}");
        peer.interested();
        peer.wait_unchoked(PROMPT);
        let r = fx.blocks_of(2)[1];
        peer.send(Message::Request(r)).unwrap();
        let st = peer.wait_for("the block", PROMPT, |s| s.pieces == 1);
        assert_eq!(st.blocks, vec![(r.piece, r.offset, r.length)]);
        let since = std::time::Instant::now();
        drop(seeder);
        let (_, st) = peer.wait_closed(since, PROMPT);
        assert!(st.closed.is_some());
        let log = peer.log();
        assert!(log
            .iter()
            .any(|e| matches!(e, Event::Sent(0, Message::HaveNone))));
    }
}
