//! A raw BitTorrent peer over blocking TCP, for peers that misbehave on
//! purpose (floods of requests, blocks out of range).
//!
//! [`RawPeer::connect`] connects from a chosen address (so that each such
//! peer has its own 127.0.0.x, like every other peer in these tests),
//! handshakes with the fast (BEP 6) and extension (BEP 10) bits set and
//! sends an extended handshake and `have none`. A reader thread then drains and decodes
//! everything the other side sends, so a peer that writes without reading
//! never stalls on a full receive buffer, and it notes when the other side
//! closes the connection ([`RawState::closed`]).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::bencode::{self, Read as _, Value};
use super::poll_until;

/// Message ids (BEP 3, BEP 6, BEP 10).
pub mod id {
    /// choke
    pub const CHOKE: u8 = 0;
    /// unchoke
    pub const UNCHOKE: u8 = 1;
    /// interested
    pub const INTERESTED: u8 = 2;
    /// not interested
    pub const NOT_INTERESTED: u8 = 3;
    /// have
    pub const HAVE: u8 = 4;
    /// bitfield
    pub const BITFIELD: u8 = 5;
    /// request
    pub const REQUEST: u8 = 6;
    /// piece
    pub const PIECE: u8 = 7;
    /// cancel
    pub const CANCEL: u8 = 8;
    /// have all (BEP 6)
    pub const HAVE_ALL: u8 = 14;
    /// have none (BEP 6)
    pub const HAVE_NONE: u8 = 15;
    /// reject request (BEP 6)
    pub const REJECT: u8 = 16;
    /// allowed fast (BEP 6)
    pub const ALLOWED_FAST: u8 = 17;
    /// extended (BEP 10)
    pub const EXTENDED: u8 = 20;
}

/// What the other side has sent so far, and whether it closed.
#[derive(Debug, Clone, Default)]
pub struct RawState {
    /// Its peer id, from the handshake.
    pub peer_id: Vec<u8>,
    /// Its reserved bytes, from the handshake.
    pub reserved: [u8; 8],
    /// It unchoked us (and has not choked us since).
    pub unchoked: bool,
    /// It sent `have all`.
    pub have_all: bool,
    /// Its bitfield, if it sent one.
    pub bitfield: Option<Vec<u8>>,
    /// Its extended handshake (the bencoded dictionary), if it sent one.
    pub extended_handshake: Option<Value>,
    /// Pieces it allowed us while choked (BEP 6).
    pub allowed_fast: Vec<u32>,
    /// Messages received (keep-alives not counted).
    pub messages: u64,
    /// `piece` messages received, and their block bytes.
    pub pieces: u64,
    /// Block bytes received in `piece` messages.
    pub piece_bytes: u64,
    /// The (piece, offset, length) of each `piece` message, in order.
    pub blocks: Vec<(u32, u32, u32)>,
    /// `reject request` messages received.
    pub rejects: u64,
    /// When and how the connection ended (EOF, reset, decode error), as
    /// seen by the reader.
    pub closed: Option<(Instant, String)>,
}

impl RawState {
    /// Whether it claims to have piece `index` (have all, or its bitfield).
    pub fn has_piece(&self, index: u32) -> bool {
        self.have_all
            || self.bitfield.as_ref().is_some_and(|b| {
                b.get(index as usize / 8)
                    .is_some_and(|byte| byte & (0x80 >> (index % 8)) != 0)
            })
    }

    /// `reqq` from its extended handshake.
    pub fn reqq(&self) -> Option<i64> {
        self.extended_handshake
            .as_ref()
            .and_then(|h| h.get(b"reqq"))
            .and_then(Value::int)
    }
}

/// A connected raw peer. Dropping it closes the connection.
pub struct RawPeer {
    name: String,
    stream: TcpStream,
    state: Arc<Mutex<RawState>>,
    reader: Option<JoinHandle<()>>,
    writers: Vec<JoinHandle<io::Result<()>>>,
}

/// The handshake: protocol, reserved bits (fast, extension), hash, id.
pub fn handshake(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    let mut reserved = [0u8; 8];
    reserved[5] |= 0x10; // BEP 10 extension protocol
    reserved[7] |= 0x04; // BEP 6 fast extension
    hs.extend_from_slice(&reserved);
    hs.extend_from_slice(info_hash);
    hs.extend_from_slice(peer_id);
    hs
}

/// A message: length prefix, id, payload.
pub fn message(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    m
}

/// `request(index, begin, length)`.
pub fn request(index: u32, begin: u32, length: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&index.to_be_bytes());
    p.extend_from_slice(&begin.to_be_bytes());
    p.extend_from_slice(&length.to_be_bytes());
    message(id::REQUEST, &p)
}

impl RawPeer {
    /// Connects from `from` (port chosen by the system) to `to`, exchanges
    /// handshakes for `info_hash`, and sends an extended handshake. Fails
    /// the test if the other side does not answer with the same info-hash.
    pub fn connect(from: Ipv4Addr, to: SocketAddr, info_hash: [u8; 20]) -> RawPeer {
        let name = format!("raw peer {from} → {to}");
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .unwrap_or_else(|e| panic!("{name}: socket: {e}"));
        socket
            .bind(&SockAddr::from(SocketAddr::from((from, 0))))
            .unwrap_or_else(|e| panic!("{name}: bind: {e}"));
        socket
            .connect_timeout(&SockAddr::from(to), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        let mut stream = TcpStream::from(socket);
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut peer_id = *b"-XR0001-rawpeer00000";
        let port = stream.local_addr().unwrap().port().to_be_bytes();
        peer_id[18..].copy_from_slice(&port);
        stream
            .write_all(&handshake(&info_hash, &peer_id))
            .unwrap_or_else(|e| panic!("{name}: send handshake: {e}"));
        let mut theirs = [0u8; 68];
        stream
            .read_exact(&mut theirs)
            .unwrap_or_else(|e| panic!("{name}: no handshake back: {e}"));
        assert_eq!(&theirs[..20], b"\x13BitTorrent protocol", "{name}");
        assert_eq!(theirs[28..48], info_hash, "{name}: other info-hash");
        let mut state = RawState {
            peer_id: theirs[48..68].to_vec(),
            ..RawState::default()
        };
        state.reserved.copy_from_slice(&theirs[20..28]);
        // Our extended handshake: no extensions, a small queue of our own.
        let mut ext = vec![0u8];
        ext.extend_from_slice(b"d1:md4:reqqi250ee1:v7:rawpeere");
        stream.write_all(&message(id::EXTENDED, &ext)).unwrap();
        // A fast-extension peer must say what it has: nothing.
        stream.write_all(&message(id::HAVE_NONE, &[])).unwrap();

        let state = Arc::new(Mutex::new(state));
        let mut reading = stream.try_clone().unwrap();
        // Short timeouts so the reader notices a drop; a quiet peer is fine.
        reading
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let st = Arc::clone(&state);
        let reader = thread::spawn(move || read_loop(&mut reading, &st));
        RawPeer {
            name,
            stream,
            state,
            reader: Some(reader),
            writers: Vec::new(),
        }
    }

    /// A name for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the other side has sent so far.
    pub fn state(&self) -> RawState {
        self.state.lock().unwrap().clone()
    }

    /// Sends `bytes` (whole messages), blocking until written.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `bytes` from a thread of its own, so that the test goes on
    /// even if the other side stops reading; see [`RawPeer::writers_finished`].
    pub fn send_in_background(&mut self, bytes: Vec<u8>) {
        let mut s = self.stream.try_clone().unwrap();
        s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
        self.writers.push(thread::spawn(move || {
            s.write_all(&bytes).and_then(|_| s.flush())
        }));
    }

    /// Whether every background write has ended (written, or failed).
    pub fn writers_finished(&self) -> bool {
        self.writers.iter().all(|w| w.is_finished())
    }

    /// Sends `interested`.
    pub fn interested(&mut self) {
        let m = message(id::INTERESTED, &[]);
        self.send(&m)
            .unwrap_or_else(|e| panic!("{}: send interested: {e}", self.name));
    }

    /// Waits until the other side has unchoked us; fails the test if it
    /// closes the connection first or after `timeout`.
    pub fn wait_unchoked(&self, timeout: Duration) -> RawState {
        self.wait_for("unchoke", timeout, |s| s.unchoked)
    }

    /// Waits until `pred` holds for what the other side sent; fails the test
    /// if the connection closes first or after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&RawState) -> bool,
    ) -> RawState {
        poll_until(&format!("{}: {what}", self.name), timeout, || {
            let s = self.state();
            if pred(&s) {
                return Ok(s);
            }
            if let Some((_, how)) = &s.closed {
                panic!(
                    "{}: closed ({how}) while waiting for {what}: {s:?}",
                    self.name
                );
            }
            Err(format!("{s:?}"))
        })
    }

    /// Waits until the other side closes the connection, and returns how
    /// long after `since` that was. Fails the test after `timeout`.
    pub fn wait_closed(&self, since: Instant, timeout: Duration) -> (Duration, RawState) {
        let s = poll_until(
            &format!("{} to be disconnected", self.name),
            timeout,
            || {
                let s = self.state();
                if s.closed.is_some() {
                    Ok(s)
                } else {
                    Err(format!(
                        "still connected: {} messages, {} pieces, {} rejects received",
                        s.messages, s.pieces, s.rejects
                    ))
                }
            },
        );
        let (at, _) = s.closed.clone().unwrap();
        (at.saturating_duration_since(since), s)
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Reads and decodes messages into `state` until the connection ends.
fn read_loop(s: &mut TcpStream, state: &Mutex<RawState>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    let end = |why: String| {
        let mut st = state.lock().unwrap();
        if st.closed.is_none() {
            st.closed = Some((Instant::now(), why));
        }
    };
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return end("end of stream".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(e) => return end(format!("read error: {e}")),
        }
        let mut used = 0;
        while buf.len() - used >= 4 {
            let len = u32::from_be_bytes(buf[used..used + 4].try_into().unwrap()) as usize;
            if len > (1 << 20) {
                return end(format!("absurd message length {len}"));
            }
            if buf.len() - used < 4 + len {
                break;
            }
            let body = &buf[used + 4..used + 4 + len];
            used += 4 + len;
            if len == 0 {
                continue; // keep-alive
            }
            note(state, body);
        }
        buf.drain(..used);
    }
}

fn note(state: &Mutex<RawState>, body: &[u8]) {
    let mut st = state.lock().unwrap();
    st.messages += 1;
    let field = |i: usize| {
        body.get(i..i + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
            .unwrap_or(u32::MAX)
    };
    match body[0] {
        id::CHOKE => st.unchoked = false,
        id::UNCHOKE => st.unchoked = true,
        id::HAVE_ALL => st.have_all = true,
        id::BITFIELD => st.bitfield = Some(body[1..].to_vec()),
        id::HAVE => {
            let index = field(1);
            let bits = st.bitfield.get_or_insert_with(Vec::new);
            let byte = index as usize / 8;
            if bits.len() <= byte {
                bits.resize(byte + 1, 0);
            }
            bits[byte] |= 0x80 >> (index % 8);
        }
        id::PIECE => {
            st.pieces += 1;
            let len = body.len().saturating_sub(9) as u32;
            st.piece_bytes += u64::from(len);
            let (index, begin) = (field(1), field(5));
            st.blocks.push((index, begin, len));
        }
        id::REJECT => st.rejects += 1,
        id::ALLOWED_FAST => {
            let index = field(1);
            st.allowed_fast.push(index);
        }
        id::EXTENDED if body.get(1) == Some(&0) => {
            st.extended_handshake = bencode::decode(&body[2..]);
        }
        _ => {}
    }
}
