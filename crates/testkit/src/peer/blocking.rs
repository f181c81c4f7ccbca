//! The fake peer for tests that are not async: [`block_on`] runs a future
//! (say [`FakePeer::start`](super::FakePeer::start)) on a runtime that
//! lives as long as the test process, so the tasks it spawns go on after
//! it returns; [`BlockingPeer`] is a connection out whose reading and
//! writing happen on that runtime while the test thread waits on its log.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rivulet_core::{InfoHash, PeerId};
use rivulet_wire::{Bitfield, ExtendedHandshake, Handshake, Message, Reserved};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{encode, summary, Conn, Event, EventLog};

/// The runtime of every blocking fake peer: two worker threads, so that a
/// peer's reader and writer go on while the test thread blocks.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testkit-peer")
            .enable_all()
            .build()
            .expect("a tokio runtime for fake peers")
    })
}

/// Runs `f` to completion on [`runtime`]; what it spawns keeps running.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// What the other side of a [`BlockingPeer`] has sent so far, and whether it
/// closed: a view of the log.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Its peer id, from the handshake.
    pub peer_id: Option<PeerId>,
    /// Its reserved bytes, from the handshake.
    pub reserved: [u8; 8],
    /// It unchoked us (and has not choked us since).
    pub unchoked: bool,
    /// It sent `have all`.
    pub have_all: bool,
    /// Its bitfield (with its `have`s), if it sent one or a `have`.
    pub bitfield: Option<Vec<u8>>,
    /// Its extended handshake, if it sent one that decodes.
    pub extended_handshake: Option<ExtendedHandshake>,
    /// Pieces it allowed us while choked (BEP 6).
    pub allowed_fast: Vec<u32>,
    /// Messages received (keep-alives not counted).
    pub messages: u64,
    /// `piece` messages received.
    pub pieces: u64,
    /// Block bytes received in `piece` messages.
    pub piece_bytes: u64,
    /// The (piece, offset, length) of each `piece` message, in order.
    pub blocks: Vec<(u32, u32, u32)>,
    /// `reject request` messages received.
    pub rejects: u64,
    /// When and how the connection ended (end of stream, reset, or a
    /// message that does not decode, after which nothing more is read).
    pub closed: Option<(Instant, String)>,
}

impl Seen {
    /// What the log of connection 0 says.
    pub fn from_log(log: &[Event]) -> Seen {
        let mut s = Seen::default();
        for e in log {
            match e {
                Event::Hello(0, h) => {
                    s.peer_id = Some(h.peer_id);
                    s.reserved = h.reserved.to_bytes();
                }
                Event::Got(0, m) => s.note(m),
                Event::Eof(0, at, how) if s.closed.is_none() => {
                    s.closed = Some((at.into_std(), how.clone()));
                }
                Event::Violation(0, what) if s.closed.is_none() => {
                    s.closed = Some((Instant::now(), what.clone()));
                }
                _ => {}
            }
        }
        s
    }

    fn note(&mut self, m: &Message) {
        if *m == Message::KeepAlive {
            return;
        }
        self.messages += 1;
        match m {
            Message::Choke => self.unchoked = false,
            Message::Unchoke => self.unchoked = true,
            Message::HaveAll => self.have_all = true,
            Message::Bitfield(b) => self.bitfield = Some(b.to_vec()),
            Message::Have { piece } => {
                let bits = self.bitfield.get_or_insert_with(Vec::new);
                let byte = *piece as usize / 8;
                if bits.len() <= byte {
                    bits.resize(byte + 1, 0);
                }
                bits[byte] |= 0x80 >> (piece % 8);
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                self.pieces += 1;
                self.piece_bytes += data.len() as u64;
                self.blocks.push((*piece, *offset, data.len() as u32));
            }
            Message::RejectRequest(_) => self.rejects += 1,
            Message::AllowedFast { piece } => self.allowed_fast.push(*piece),
            Message::Extended { id: 0, payload } => {
                self.extended_handshake = ExtendedHandshake::decode(payload).ok();
            }
            _ => {}
        }
    }

    /// Whether it claims to have piece `index` (have all, or its bitfield).
    pub fn has_piece(&self, index: u32) -> bool {
        self.have_all
            || self.bitfield.as_ref().is_some_and(|b| {
                let len = b.len() * 8;
                Bitfield::from_bytes(b, len).is_ok_and(|bits| bits.get(index as usize))
            })
    }

    /// `reqq` from its extended handshake.
    pub fn reqq(&self) -> Option<i64> {
        self.extended_handshake
            .as_ref()
            .and_then(|h| h.reqq)
            .map(i64::from)
    }
}

/// A write for the writer task, and where to say how it went.
type Write = (bytes::BytesMut, Option<oneshot::Sender<io::Result<()>>>);

/// A fake peer connected out, driven from a test thread: a reader task logs
/// everything the other side sends, a writer task sends in order what the
/// test queues. Dropping it closes the connection.
pub struct BlockingPeer {
    name: String,
    log: EventLog,
    writes: mpsc::UnboundedSender<Write>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for BlockingPeer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl BlockingPeer {
    /// Connects from `from` (port chosen by the system) to `to` and
    /// exchanges handshakes, ours being `ours`. Fails the test if the other
    /// side does not answer with the same info-hash.
    pub fn connect(from: Ipv4Addr, to: SocketAddr, ours: Handshake) -> BlockingPeer {
        let name = format!("fake peer {from} → {to}");
        let conn = block_on(Conn::connect(from, to, ours))
            .unwrap_or_else(|| panic!("{name}: closed before its handshake"));
        let log = conn.log().clone();
        let (writes, mut queue) = mpsc::unbounded_channel::<Write>();
        let _guard = runtime().enter();
        let (mut writer, reader) = conn.split();
        let reader = tokio::spawn(async move {
            let _ = reader.await;
        });
        let writer = tokio::spawn(async move {
            while let Some((bytes, done)) = queue.recv().await {
                let r = writer.write_all(&bytes).await;
                if let Some(done) = done {
                    let _ = done.send(r);
                }
            }
        });
        BlockingPeer {
            name,
            log,
            writes,
            tasks: [reader, writer],
        }
    }

    /// A leecher as a modern client makes one: connects from `from` to `to`
    /// for `info_hash` with the fast (BEP 6) and extension (BEP 10) bits and
    /// a peer id of its own port, then sends an extended handshake (`reqq`
    /// 250, no extensions) and `have none`.
    pub fn leecher(from: Ipv4Addr, to: SocketAddr, info_hash: InfoHash) -> BlockingPeer {
        // A peer id per connection: rivulet refuses a second connection
        // with an id it is already connected to.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut peer_id = *b"-FK0001-000000000000";
        peer_id[8..12].copy_from_slice(&from.octets());
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        peer_id[12..20].copy_from_slice(&n.to_be_bytes());
        let hello = Handshake {
            reserved: Reserved::FAST | Reserved::EXTENSION_PROTOCOL,
            info_hash,
            peer_id: PeerId(peer_id),
        };
        let peer = BlockingPeer::connect(from, to, hello);
        let ext = ExtendedHandshake {
            reqq: Some(250),
            v: Some("rivulet-testkit".into()),
            ..ExtendedHandshake::default()
        };
        peer.send_in_background([ext.to_message(), Message::HaveNone]);
        peer
    }

    /// A name for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything logged so far.
    pub fn log(&self) -> Vec<Event> {
        self.log.events()
    }

    /// What the other side has sent so far.
    pub fn state(&self) -> Seen {
        Seen::from_log(&self.log())
    }

    /// Sends `m` and waits until it is written (after everything queued
    /// before it).
    pub fn send(&self, m: Message) -> io::Result<()> {
        let (done, result) = oneshot::channel();
        self.queue(encode([m.clone()]), Some(done));
        self.log.record(Event::Sent(0, m));
        block_on(result).unwrap_or_else(|_| Err(io::ErrorKind::BrokenPipe.into()))
    }

    /// Queues `msgs` (in one write) and returns at once, so that the test
    /// goes on even if the other side stops reading.
    pub fn send_in_background(&self, msgs: impl IntoIterator<Item = Message>) {
        let msgs: Vec<Message> = msgs.into_iter().collect();
        self.queue(encode(msgs.iter().cloned()), None);
        for m in msgs {
            self.log.record(Event::Sent(0, m));
        }
    }

    fn queue(&self, bytes: bytes::BytesMut, done: Option<oneshot::Sender<io::Result<()>>>) {
        // Fails only once the writer ended, which `done` then reports.
        let _ = self.writes.send((bytes, done));
    }

    /// Sends `interested`.
    pub fn interested(&self) {
        self.send(Message::Interested)
            .unwrap_or_else(|e| panic!("{}: send interested: {e}", self.name));
    }

    /// Waits until the other side has unchoked us; fails the test if it
    /// closes the connection first or after `timeout`.
    pub fn wait_unchoked(&self, timeout: Duration) -> Seen {
        self.wait_for("unchoke", timeout, |s| s.unchoked)
    }

    /// Waits until `pred` holds for what the other side sent; fails the test
    /// if the connection closes first or after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Seen) -> bool) -> Seen {
        let s = self.wait_log(what, timeout, |s| pred(s) || s.closed.is_some());
        if !pred(&s) {
            panic!(
                "{}: closed ({}) while waiting for {what}: {s:?}",
                self.name,
                s.closed.as_ref().map_or("", |c| &c.1)
            );
        }
        s
    }

    /// Waits until the other side closes the connection, and returns how
    /// long after `since` that was. Fails the test after `timeout`.
    pub fn wait_closed(&self, since: Instant, timeout: Duration) -> (Duration, Seen) {
        let s = self.wait_log("the other side to close", timeout, |s| s.closed.is_some());
        let at = s.closed.as_ref().map(|c| c.0).unwrap_or(since);
        (at.saturating_duration_since(since), s)
    }

    /// Waits, on the log, until `pred` holds; fails the test after
    /// `timeout`.
    fn wait_log(&self, what: &str, timeout: Duration, pred: impl Fn(&Seen) -> bool) -> Seen {
        let mut rx = self.log.subscribe();
        let found = block_on(async {
            tokio::time::timeout(timeout, async {
                // The log lives as long as `self`: this cannot fail.
                rx.wait_for(|l| pred(&Seen::from_log(l))).await.is_ok()
            })
            .await
        });
        if found.is_err() {
            let log = self.log();
            panic!(
                "{}: not within {timeout:?}: {what}; seen {:?}\nlog: {:#?}",
                self.name,
                Seen::from_log(&log),
                summary(&log)
            );
        }
        self.state()
    }
}
