//! One connection of a fake peer ([`Conn`]), accepted or made, and what a
//! seeding one does with each request ([`Act`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rivulet_core::{InfoHash, PeerId};
use rivulet_wire::{BlockRequest, Handshake, Message, MessageDecoder, Reserved};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::log::{eof, got, show, summary, tail, Event, EventLog};
use super::{CONNECT, PROMPT};
use crate::fixture::{bitfield, within, Fixture};

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

/// One connection of a fake peer, accepted by a [`FakePeer`](super::FakePeer) or made by
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
    pub(super) fn new(
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

    /// Serves `fx` from now on ([`Conn::send_block`], [`Conn::serve`]; on
    /// a connection made by [`Conn::connect`] the handshakes are done, so
    /// send a bitfield and [`Conn::serve`] rather than [`Conn::seed`]).
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
        self.log.read(|l| got(l, self.id))
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
