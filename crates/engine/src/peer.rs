//! One peer connection: handshake, then a loop that reads messages, keeps the
//! request pipeline full, serves the peer's requests and forwards commands
//! from the torrent.
//!
//! The loop never blocks on a write: outgoing messages collect in a buffer
//! that a `select!` branch drains as the socket accepts them, so reading goes
//! on while a slow peer takes its data (two peers sending to each other at
//! full speed cannot deadlock), and serving stops adding blocks while the
//! buffer is above 1 MiB. Blocks to serve come from the torrent's
//! read cache, or from one positioned read of their 256 KiB chunk on the
//! blocking pool (one read in flight per connection).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use rivulet_wire::{
    piece_header, Bitfield, BlockRequest, ExtendedHandshake, Handshake, Limits, Message,
    MessageDecoder, Reserved,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use crate::cache::{ChunkKey, ReadCache, CHUNK_LEN};
use crate::picker::{Block, PeerKey, Received};
use crate::stats::io_reason;
use crate::storage::StorageError;
use crate::torrent::{PeerCommand, PeerCounters, RegisterRefusal, Shared, TorrentError};

/// Requests kept in flight at first, before the peer's rate is known.
const INITIAL_QUEUE: usize = 32;
/// Fewest requests in flight.
const MIN_QUEUE: usize = 4;
/// Most requests in flight when the peer does not say (`reqq`); libtorrent
/// advertises 500 by default.
const DEFAULT_REQQ: usize = 250;
/// Never more than this many in flight to one peer.
const MAX_QUEUE: usize = 1000;
/// Seconds of transfer to keep requested: enough to cover the round trip and
/// the time the peer takes to serve a request.
const QUEUE_SECONDS: f64 = 2.0;

/// How long a block a peer rejected is not asked of it again.
const REJECT_AVOID: Duration = Duration::from_secs(1);
/// How long a peer keeps its connection when neither side wants anything
/// from the other.
const USELESS_TIMEOUT: Duration = Duration::from_secs(60);

/// Requests from the peer we queue (advertised as `reqq`, as libtorrent does).
pub const SERVE_QUEUE: usize = 500;
/// Requests beyond the queue, or that we cannot honour (pieces we lack, while
/// the peer is choked), tolerated before the peer is dropped as a flooder.
/// Generous: a peer that we just choked may have a full queue's worth in
/// flight, legitimately.
const FLOOD_LIMIT: usize = 2 * SERVE_QUEUE;
/// Requests we could not take that are forgiven each second.
const UNWANTED_FORGIVEN_PER_SECOND: usize = 50;
/// Largest block we serve. BEP 3: "All current implementations use 2^14
/// (16 kiB), and close connections which request an amount greater than
/// that."
const MAX_REQUEST_LEN: u32 = 16 * 1024;
/// Blocks are added to the outgoing buffer while it holds less than this.
const OUT_HIGH_WATER: usize = 1024 * 1024;
/// A peer that takes none of our data for this long is dropped.
const WRITE_STALL: Duration = Duration::from_secs(60);
/// Allowed-fast pieces (BEP 6) offered to a peer that has fewer pieces than
/// this.
const ALLOWED_FAST: usize = 10;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Connecting or reading or writing failed.
    #[error("i/o: {0}")]
    Io(std::io::Error),
    /// The peer did not answer in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Wire(rivulet_wire::WireError),
    /// The peer closed the connection before its handshake was complete.
    #[error("connection closed during the handshake")]
    ClosedInHandshake,
    /// The socket took no more bytes: the peer closed the connection while
    /// we were sending.
    #[error("connection closed while sending")]
    ClosedWhileSending,
    /// The peer's handshake names another torrent.
    #[error("peer is for another torrent")]
    WrongTorrent,
    /// The peer's handshake carries our own peer id: we connected to
    /// ourselves (a tracker handed us our own address).
    #[error("connected to ourselves")]
    OurOwnConnection,
    /// We already have a connection to this peer id (the one kept when two
    /// peers connect to each other at once).
    #[error("already connected to this peer")]
    Duplicate,
    /// We refused the peer.
    #[error("{0}")]
    Refused(Refusal),
    /// The torrent is shutting down and takes no new peers.
    #[error("shutting down")]
    ShuttingDown,
    /// Neither side wanted anything from the other for a while: the
    /// connection slot is freed for a peer that does.
    #[error("nothing to exchange with this peer")]
    NothingToExchange,
    /// The peer has every piece and so do we.
    #[error("both sides are seeds")]
    BothSeeds,
    /// Data we have could not be read to serve the peer; the torrent stops
    /// with the storage error ([`crate::torrent::TorrentError::Read`]).
    #[error("cannot read our own data (piece {piece})")]
    Storage {
        /// The piece being read.
        piece: u32,
    },
    /// The disk read task for this connection failed (it panicked: a bug).
    #[error("internal error: the disk read task failed: {0}")]
    Internal(tokio::task::JoinError),
    /// The peer misbehaved in a way the codec cannot see.
    #[error("misbehaving peer: {0}")]
    Misbehaving(&'static str),
}

// By hand rather than `#[from]`, which would also make the inner error the
// `source` and print it twice in error chains.
impl From<std::io::Error> for PeerError {
    fn from(e: std::io::Error) -> Self {
        PeerError::Io(e)
    }
}

impl From<rivulet_wire::WireError> for PeerError {
    fn from(e: rivulet_wire::WireError) -> Self {
        PeerError::Wire(e)
    }
}

/// Why we refused a peer whose handshake was fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its address is banned for sending bad data.
    #[error("banned")]
    Banned,
    /// No room for another incoming connection.
    #[error("too many connections")]
    Full,
}

impl From<RegisterRefusal> for PeerError {
    fn from(why: RegisterRefusal) -> Self {
        match why {
            RegisterRefusal::Duplicate => PeerError::Duplicate,
            RegisterRefusal::Banned => PeerError::Refused(Refusal::Banned),
            RegisterRefusal::Full => PeerError::Refused(Refusal::Full),
            RegisterRefusal::Closing => PeerError::ShuttingDown,
        }
    }
}

/// Connects to `addr` (from the configured local address, if any) and runs the
/// connection until it ends. Returns whether data moved either way (so the
/// caller can reset its reconnect backoff).
pub(crate) async fn connect_and_run(shared: Arc<Shared>, addr: SocketAddr) -> bool {
    let connect = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = shared.config.bind {
            if ip.is_ipv4() != addr.is_ipv4() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "bound to an address of the other family",
                ));
            }
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        socket.connect(addr).await
    };
    let stream = match timeout(shared.config.connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "connect failed");
            shared.stats.connect_failed(addr, io_reason(&e));
            return false;
        }
        Err(_) => {
            tracing::debug!(%addr, "connect timed out");
            shared
                .stats
                .connect_failed(addr, "no answer (timed out)".into());
            return false;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::new(Arc::clone(&shared), addr, false);
    let result = conn.run(stream, BytesMut::with_capacity(64 * 1024)).await;
    conn.log_end(&result);
    if let (Err(e), None) = (&result, conn.key) {
        // Connected, but never became a peer: as unreachable to the user.
        let reason = match e {
            PeerError::Io(io) => io_reason(io),
            other => other.to_string(),
        };
        shared.stats.connect_failed(addr, reason);
    }
    conn.useful
}

/// Runs a connection the peer opened, once the listener has read the start of
/// its handshake (in `rbuf`, not consumed) and found the torrent.
pub(crate) async fn accept_and_run(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    rbuf: BytesMut,
) {
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::new(shared, addr, true);
    let result = conn.run(stream, rbuf).await;
    conn.log_end(&result);
}

/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 128;

/// Writes what the socket takes of `segments` then `tail`, in one vectored
/// write. Cancel-safe: a write that has not completed wrote nothing.
async fn write_some(
    writer: &mut OwnedWriteHalf,
    segments: &VecDeque<Bytes>,
    tail: &BytesMut,
) -> std::io::Result<usize> {
    let mut slices: Vec<std::io::IoSlice<'_>> = segments
        .iter()
        .take(MAX_IOV)
        .map(|s| std::io::IoSlice::new(s))
        .collect();
    if slices.len() < MAX_IOV && !tail.is_empty() {
        slices.push(std::io::IoSlice::new(tail));
    }
    writer.write_vectored(&slices).await
}

/// A finished read of piece data for the peer.
struct ReadDone {
    /// The chunk read (cached), or `None` for a request that straddles two
    /// chunks, read on its own.
    chunk: Option<ChunkKey>,
    block: Block,
    data: Result<Bytes, StorageError>,
}

struct Connection {
    shared: Arc<Shared>,
    addr: SocketAddr,
    incoming: bool,
    key: Option<PeerKey>,
    counters: Arc<PeerCounters>,
    bits: Bitfield,
    seed: bool,
    fast: bool,
    extended: bool,
    peer_choking: bool,
    am_interested: bool,
    reqq: usize,
    /// Our requests not yet answered, oldest first.
    outstanding: VecDeque<Block>,
    last_data: Instant,
    /// The peer already told us what it has (bitfield, have-all, have-none or
    /// a have): a bitfield after that would count its pieces twice.
    pieces_known: bool,
    /// Request timeouts in a row without any data in between.
    snubs: u32,
    /// Blocks this peer rejected or let time out, not to be asked of it again
    /// before the given instant: other peers get the chance to take them.
    avoid: HashMap<Block, Instant>,
    /// Since when neither side has wanted anything from the other.
    useless_since: Option<Instant>,
    /// Bytes of blocks received since `rate_since`, for the pipeline depth.
    rate_bytes: u64,
    rate_since: Instant,
    rate: f64,
    useful: bool,
    // Serving.
    am_choking: bool,
    peer_interested: bool,
    /// The peer's requests we will serve, oldest first.
    to_serve: VecDeque<Block>,
    /// Pieces this peer may ask for while choked (BEP 6), that we have.
    allowed_fast: Vec<u32>,
    /// Pieces the peer lets us ask for while it chokes us.
    peer_allowed_fast: Vec<u32>,
    /// Requests we could not take (queue full, piece missing, choked).
    unwanted_requests: usize,
    served_any: bool,
    /// Outgoing bytes not yet taken by the socket: `segments` first (blocks
    /// shared with the read cache, and the messages encoded before each), then
    /// `out` (messages encoded since). Blocks are never copied: the socket
    /// gets them by vectored writes.
    segments: VecDeque<Bytes>,
    segment_bytes: usize,
    out: BytesMut,
    /// When the socket last took some of `out`.
    last_write: Instant,
}

impl Connection {
    fn new(shared: Arc<Shared>, addr: SocketAddr, incoming: bool) -> Self {
        let n = shared.info.num_pieces();
        Connection {
            shared,
            addr,
            incoming,
            key: None,
            counters: Arc::new(PeerCounters::default()),
            bits: Bitfield::new(n),
            seed: false,
            fast: false,
            extended: false,
            peer_choking: true,
            am_interested: false,
            reqq: DEFAULT_REQQ,
            outstanding: VecDeque::new(),
            last_data: Instant::now(),
            pieces_known: false,
            snubs: 0,
            avoid: HashMap::new(),
            useless_since: None,
            rate_bytes: 0,
            rate_since: Instant::now(),
            rate: 0.0,
            useful: false,
            am_choking: true,
            peer_interested: false,
            to_serve: VecDeque::new(),
            allowed_fast: Vec::new(),
            peer_allowed_fast: Vec::new(),
            unwanted_requests: 0,
            served_any: false,
            segments: VecDeque::new(),
            segment_bytes: 0,
            out: BytesMut::with_capacity(64 * 1024),
            last_write: Instant::now(),
        }
    }

    /// Exchanges handshakes (ours first when we connected; after reading the
    /// start of theirs when they did), then runs the session.
    async fn run(&mut self, mut stream: TcpStream, mut rbuf: BytesMut) -> Result<(), PeerError> {
        let shared = Arc::clone(&self.shared);
        let ours = Handshake::new(shared.info_hash, shared.config.peer_id);
        stream.write_all(&ours.to_bytes()).await?;
        let theirs = timeout(shared.config.handshake_timeout, async {
            loop {
                if let Some(h) = Handshake::decode(&mut rbuf)? {
                    return Ok::<_, PeerError>(h);
                }
                if stream.read_buf(&mut rbuf).await? == 0 {
                    return Err(PeerError::ClosedInHandshake);
                }
            }
        })
        .await
        .map_err(|_| PeerError::Timeout("waiting for handshake"))??;
        if theirs.info_hash != shared.info_hash {
            return Err(PeerError::WrongTorrent);
        }
        if theirs.peer_id == shared.config.peer_id {
            return Err(PeerError::OurOwnConnection);
        }
        self.fast = theirs.reserved.contains(Reserved::FAST);
        self.extended = theirs.reserved.contains(Reserved::EXTENSION_PROTOCOL);

        tracing::debug!(addr = %self.addr, incoming = self.incoming, client = ?theirs.peer_id.client().map(|c| c.to_string()), fast = self.fast, "handshake done");
        let (key, mut commands, counters) = shared
            .register(self.addr, theirs.peer_id, self.incoming)
            .map_err(PeerError::from)?;
        self.key = Some(key);
        self.counters = counters;
        let result = self.session(stream, rbuf, &mut commands).await;
        shared.unregister(key, Some(&self.bits), self.seed);
        result
    }

    async fn session(
        &mut self,
        stream: TcpStream,
        mut rbuf: BytesMut,
        commands: &mut mpsc::UnboundedReceiver<PeerCommand>,
    ) -> Result<(), PeerError> {
        let shared = Arc::clone(&self.shared);
        let (mut reader, mut writer): (OwnedReadHalf, OwnedWriteHalf) = stream.into_split();
        let limits = Limits::default().with_piece_count(shared.info.num_pieces() as u32);
        let mut decoder = MessageDecoder::with_limits(limits);

        // What we have, then our extended handshake.
        if self.extended {
            let hs = ExtendedHandshake {
                v: Some(format!("rivulet {}", env!("CARGO_PKG_VERSION"))),
                reqq: Some(SERVE_QUEUE as u32),
                ..ExtendedHandshake::default()
            };
            hs.to_message().encode(&mut self.out);
        }
        {
            let state = shared.lock();
            let count = state.have.count_ones();
            if self.fast && count == 0 {
                Message::HaveNone.encode(&mut self.out);
            } else if self.fast && state.have.all() {
                Message::HaveAll.encode(&mut self.out);
            } else if count > 0 {
                Message::bitfield(&state.have).encode(&mut self.out);
            }
        }

        // The peer's first messages may have arrived with its handshake.
        while let Some(msg) = decoder.decode(&mut rbuf)? {
            self.handle(msg)?;
        }
        let mut read: Option<JoinHandle<ReadDone>> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_sent = Instant::now();
        self.last_write = Instant::now();
        loop {
            self.fill_pipeline();
            self.serve(&mut read);
            tokio::select! {
                read = reader.read_buf(&mut rbuf) => {
                    if read? == 0 {
                        return Ok(());
                    }
                    while let Some(msg) = decoder.decode(&mut rbuf)? {
                        self.handle(msg)?;
                    }
                    // Make room without reallocating on every read.
                    if rbuf.capacity() - rbuf.len() < 32 * 1024 {
                        rbuf.reserve(64 * 1024);
                    }
                }
                written = write_some(&mut writer, &self.segments, &self.out), if self.unsent() > 0 => {
                    let n = written?;
                    if n == 0 {
                        return Err(PeerError::ClosedWhileSending);
                    }
                    self.consume(n);
                    last_sent = Instant::now();
                    self.last_write = last_sent;
                }
                done = async { match read.as_mut() { Some(h) => h.await, None => std::future::pending().await } } => {
                    read = None;
                    let done = done.map_err(PeerError::Internal)?;
                    self.on_read(done)?;
                }
                cmd = commands.recv() => match cmd {
                    Some(PeerCommand::Have(piece)) => {
                        Message::Have { piece }.encode(&mut self.out);
                        self.update_interest_after_have();
                        if self.seed && self.shared.is_complete() {
                            // Two seeds have nothing to say to each other.
                            return Ok(());
                        }
                    }
                    Some(PeerCommand::Cancel(b)) => {
                        if let Some(i) = self.outstanding.iter().position(|x| *x == b) {
                            self.outstanding.remove(i);
                            Message::Cancel(request(b)).encode(&mut self.out);
                        }
                    }
                    Some(PeerCommand::Choke) => self.choke(),
                    Some(PeerCommand::Unchoke) => self.unchoke(),
                    Some(PeerCommand::Disconnect) | None => return Ok(()),
                },
                _ = tick.tick() => self.on_tick(&mut last_sent)?,
            }
        }
    }

    /// Takes the peer's pieces out of the availability counts.
    fn forget_pieces(&mut self) {
        let mut state = self.shared.lock();
        if self.seed {
            state.picker.remove_seed();
        } else {
            state
                .picker
                .remove_peer_pieces(self.bits.ones().map(|p| p as u32));
        }
        drop(state);
        self.seed = false;
        self.bits = Bitfield::new(self.shared.info.num_pieces());
    }

    /// One line per connection that ends, with what it moved each way.
    fn log_end(&self, result: &Result<(), PeerError>) {
        let up = self.counters.up.load(Ordering::Relaxed);
        let down = self.counters.down.load(Ordering::Relaxed);
        match result {
            Ok(()) => {
                tracing::debug!(addr = %self.addr, incoming = self.incoming, up, down, "peer closed")
            }
            Err(e) => {
                tracing::debug!(addr = %self.addr, incoming = self.incoming, up, down, error = %e, "peer dropped")
            }
        }
    }

    fn on_tick(&mut self, last_sent: &mut Instant) -> Result<(), PeerError> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.rate_since).as_secs_f64();
        if elapsed >= 1.0 {
            let sample = self.rate_bytes as f64 / elapsed;
            // Exponential moving average, quick to follow a peer that speeds up.
            self.rate = if self.rate == 0.0 {
                sample
            } else {
                0.5 * self.rate + 0.5 * sample
            };
            self.rate_bytes = 0;
            self.rate_since = now;
        }
        if self.unsent() > 0 && now.duration_since(self.last_write) > WRITE_STALL {
            return Err(PeerError::Misbehaving("takes none of the data we send"));
        }
        if !self.outstanding.is_empty()
            && now.duration_since(self.last_data) > self.shared.config.request_timeout
        {
            // Snubbed: give its requests to others, ask again later (one
            // request at a time); a peer that stalls twice in a row is dropped
            // to free its slot.
            let until = now + self.shared.config.request_timeout;
            let timed_out: Vec<Block> = self.outstanding.iter().copied().collect();
            for b in timed_out {
                self.avoid_block(b, until);
            }
            self.drop_requests();
            self.last_data = now;
            self.snubs += 1;
            if self.snubs >= 2 {
                return Err(PeerError::Misbehaving(
                    "stalled: no data for two request timeouts",
                ));
            }
        }
        // A peer with which nothing is exchanged holds a connection slot for
        // nothing: let it go after a while; the connector tries it again
        // later, when one side may have new pieces.
        if self.am_interested || self.peer_interested {
            self.useless_since = None;
        } else if let Some(since) = self.useless_since {
            if now.duration_since(since) > USELESS_TIMEOUT {
                return Err(PeerError::NothingToExchange);
            }
        } else {
            self.useless_since = Some(now);
        }
        if now.duration_since(*last_sent) > Duration::from_secs(90) && self.unsent() == 0 {
            Message::KeepAlive.encode(&mut self.out);
        }
        self.avoid.retain(|_, until| *until > now);
        // A flood is a burst: requests we could not take are forgiven at a
        // steady pace, so that an honest peer's occasional race with a choke
        // never adds up to a disconnect over a long session.
        self.unwanted_requests = self
            .unwanted_requests
            .saturating_sub(UNWANTED_FORGIVEN_PER_SECOND);
        Ok(())
    }

    // ----- serving -----

    /// A request from the peer: checked, then queued, rejected or dropped.
    fn on_request(&mut self, r: BlockRequest) -> Result<(), PeerError> {
        let n = self.shared.info.num_pieces() as u32;
        if r.piece >= n {
            return Err(PeerError::Misbehaving("request for a piece past the end"));
        }
        let piece_len = self.piece_len(r.piece);
        if r.length == 0
            || r.length > MAX_REQUEST_LEN
            || u64::from(r.offset) + u64::from(r.length) > u64::from(piece_len)
        {
            return Err(PeerError::Misbehaving(
                "request for a block outside its piece",
            ));
        }
        let b = block(r);
        let have = self.shared.lock().have.get(r.piece as usize);
        let allowed = !self.am_choking || self.allowed_fast.contains(&r.piece);
        if !have || !allowed || self.to_serve.len() >= SERVE_QUEUE {
            self.unwanted_requests += 1;
            if self.unwanted_requests > FLOOD_LIMIT {
                return Err(PeerError::Misbehaving(
                    "request flood: far more requests than we can take",
                ));
            }
            if self.fast {
                Message::RejectRequest(r).encode(&mut self.out);
            }
            return Ok(());
        }
        // A duplicate is served twice: cheaper than searching the queue for
        // every request, and bounded by the queue like any other request.
        self.to_serve.push_back(b);
        Ok(())
    }

    fn on_cancel(&mut self, r: BlockRequest) {
        let b = block(r);
        if let Some(i) = self.to_serve.iter().position(|x| *x == b) {
            self.to_serve.remove(i);
            // BEP 6: with the fast extension every request gets an answer,
            // the block or a reject, even a cancelled one.
            if self.fast {
                Message::RejectRequest(r).encode(&mut self.out);
            }
        }
    }

    fn piece_len(&self, piece: u32) -> u32 {
        let info = &self.shared.info;
        let start = u64::from(piece) * info.piece_length;
        let len = info
            .total_length()
            .saturating_sub(start)
            .min(info.piece_length);
        u32::try_from(len).unwrap_or(u32::MAX)
    }

    fn choke(&mut self) {
        if self.am_choking {
            return;
        }
        self.am_choking = true;
        Message::Choke.encode(&mut self.out);
        // Requests are void after a choke (BEP 3); with the fast extension
        // each one is rejected explicitly, except those for allowed-fast pieces.
        let allowed = &self.allowed_fast;
        let (keep, drop): (VecDeque<Block>, VecDeque<Block>) = self
            .to_serve
            .drain(..)
            .partition(|b| allowed.contains(&b.piece));
        if self.fast {
            self.to_serve = keep;
            for b in drop {
                Message::RejectRequest(request(b)).encode(&mut self.out);
            }
        }
    }

    fn unchoke(&mut self) {
        if !self.am_choking {
            return;
        }
        self.am_choking = false;
        self.unwanted_requests = 0;
        Message::Unchoke.encode(&mut self.out);
    }

    /// Moves queued requests into the outgoing buffer, from the cache, until
    /// the buffer is full enough or a block has to be read from disk (then one
    /// read is started; [`Connection::on_read`] continues).
    fn serve(&mut self, read: &mut Option<JoinHandle<ReadDone>>) {
        if read.is_some() {
            return;
        }
        while self.unsent() < OUT_HIGH_WATER {
            let Some(&b) = self.to_serve.front() else {
                return;
            };
            let cached = self
                .shared
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(b.piece, b.begin, b.len);
            match cached {
                Some(data) => {
                    self.to_serve.pop_front();
                    self.send_block(b, &data);
                }
                None => {
                    *read = Some(self.start_read(b));
                    return;
                }
            }
        }
    }

    fn start_read(&self, b: Block) -> JoinHandle<ReadDone> {
        let (key, _) = ReadCache::locate(b.piece, b.begin);
        let chunk_begin = key.1 * CHUNK_LEN;
        let chunk_len = CHUNK_LEN.min(self.piece_len(b.piece).saturating_sub(chunk_begin));
        // A block-aligned request always lies in one chunk; an odd one that
        // straddles two is read on its own.
        let (chunk, begin, len) = if b.begin + b.len <= chunk_begin + chunk_len {
            (Some(key), chunk_begin, chunk_len)
        } else {
            (None, b.begin, b.len)
        };
        let storage = Arc::clone(&self.shared.storage);
        let mut buf = self
            .shared
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .buffer(len as usize);
        tokio::task::spawn_blocking(move || {
            let data = storage
                .read(b.piece, begin, &mut buf)
                .map(|()| buf.freeze());
            ReadDone {
                chunk,
                block: b,
                data,
            }
        })
    }

    fn on_read(&mut self, done: ReadDone) -> Result<(), PeerError> {
        let data = match done.data {
            Ok(d) => d,
            Err(e) => {
                // The data we announced is gone or unreadable: nothing served
                // from this torrent can be trusted to work any more.
                self.shared.fail(TorrentError::Read(e));
                return Err(PeerError::Storage {
                    piece: done.block.piece,
                });
            }
        };
        match done.chunk {
            Some(key) => self
                .shared
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, data),
            None => {
                if let Some(i) = self.to_serve.iter().position(|x| *x == done.block) {
                    self.to_serve.remove(i);
                    self.send_block(done.block, &data);
                }
            }
        }
        Ok(())
    }

    /// Bytes waiting for the socket.
    fn unsent(&self) -> usize {
        self.segment_bytes + self.out.len()
    }

    /// Drops the first `n` bytes waiting for the socket (it took them).
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                self.out.advance(n.min(self.out.len()));
                return;
            };
            let take = n.min(front.len());
            front.advance(take);
            self.segment_bytes -= take;
            n -= take;
            if front.is_empty() {
                self.segments.pop_front();
            }
        }
    }

    fn send_block(&mut self, b: Block, data: &Bytes) {
        self.out
            .extend_from_slice(&piece_header(b.piece, b.begin, b.len));
        let head = self.out.split().freeze();
        self.segment_bytes += head.len() + data.len();
        self.segments.push_back(head);
        self.segments.push_back(data.clone());
        let len = u64::from(b.len);
        self.shared.stats.uploaded.fetch_add(len, Ordering::Relaxed);
        self.counters.up.fetch_add(len, Ordering::Relaxed);
        self.useful = true;
        if !self.served_any {
            self.served_any = true;
            self.shared
                .stats
                .peers_served_total
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// BEP 6: once we know the peer has few pieces, tell it which of ours it
    /// may fetch while choked, so that a new peer has something to trade
    /// before it earns a slot.
    fn offer_allowed_fast(&mut self, peer_pieces: usize) {
        if !self.fast || peer_pieces >= ALLOWED_FAST || !self.allowed_fast.is_empty() {
            return;
        }
        let n = self.shared.info.num_pieces() as u32;
        let set = rivulet_wire::allowed_fast_set(
            self.addr.ip(),
            self.shared.info_hash.as_bytes(),
            n,
            ALLOWED_FAST,
        );
        let state = self.shared.lock();
        let offered: Vec<u32> = set
            .into_iter()
            .filter(|p| state.have.get(*p as usize))
            .collect();
        drop(state);
        for piece in &offered {
            Message::AllowedFast { piece: *piece }.encode(&mut self.out);
        }
        self.allowed_fast = offered;
    }

    /// Remembers not to ask this peer for `b` until `until` (bounded: the set
    /// is cleared rather than grown past a few pipelines' worth).
    fn avoid_block(&mut self, b: Block, until: Instant) {
        if self.avoid.len() >= 4 * MAX_QUEUE {
            self.avoid.clear();
        }
        self.avoid.insert(b, until);
    }

    fn drop_requests(&mut self) {
        if let Some(key) = self.key {
            let mut state = self.shared.lock();
            for b in self.outstanding.drain(..) {
                state.picker.on_request_dropped(b, key);
            }
        }
    }

    fn handle(&mut self, msg: Message) -> Result<(), PeerError> {
        let n = self.shared.info.num_pieces();
        if !matches!(msg, Message::Piece { .. }) {
            tracing::trace!(addr = %self.addr, ?msg, "received");
        }
        if matches!(
            msg,
            Message::Bitfield(_) | Message::HaveAll | Message::HaveNone
        ) {
            if self.pieces_known {
                // BEP 3 puts the bitfield first only, but some clients send
                // one again later (aria2 1.36 does, after have-none and
                // haves): it replaces what we knew, so that nothing counts
                // twice towards availability.
                self.forget_pieces();
            }
            self.pieces_known = true;
        }
        match msg {
            Message::Bitfield(bytes) => {
                let bits = Bitfield::from_bytes(&bytes, n)?;
                let mut state = self.shared.lock();
                if bits.all() {
                    self.seed = true;
                    state.picker.add_seed();
                } else {
                    state.picker.add_peer_pieces(bits.ones().map(|p| p as u32));
                }
                let interesting = if self.seed {
                    !state.picker.is_complete()
                } else {
                    state.picker.is_interesting(|p| bits.get(p as usize))
                };
                let both_seeds = self.seed && state.picker.is_complete();
                drop(state);
                if both_seeds {
                    return Err(PeerError::BothSeeds);
                }
                self.offer_allowed_fast(bits.count_ones());
                self.bits = bits;
                if interesting {
                    self.set_interested(true);
                }
            }
            Message::HaveAll => {
                self.seed = true;
                self.bits = Bitfield::full(n);
                let mut state = self.shared.lock();
                state.picker.add_seed();
                let interesting = !state.picker.is_complete();
                drop(state);
                if !interesting {
                    return Err(PeerError::BothSeeds);
                }
                self.set_interested(true);
            }
            Message::HaveNone => self.offer_allowed_fast(0),
            Message::Have { piece } => {
                if piece as usize >= n {
                    return Err(PeerError::Misbehaving("have for a piece past the end"));
                }
                self.pieces_known = true;
                if !self.seed && self.bits.set(piece as usize) {
                    let mut state = self.shared.lock();
                    state.picker.peer_has(piece);
                    let want = !state.picker.have(piece);
                    drop(state);
                    if want && !self.am_interested {
                        self.set_interested(true);
                    }
                }
            }
            Message::Choke => {
                self.peer_choking = true;
                // Requests are void after a choke (BEP 3). With the fast
                // extension the peer rejects them one by one, but giving them
                // to other peers now costs nothing.
                self.drop_requests();
            }
            Message::Unchoke => {
                self.peer_choking = false;
                self.last_data = Instant::now();
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => self.on_block(piece, offset, &data)?,
            Message::RejectRequest(r) => {
                let b = block(r);
                if let Some(i) = self.outstanding.iter().position(|x| *x == b) {
                    self.outstanding.remove(i);
                    self.avoid_block(b, Instant::now() + REJECT_AVOID);
                    if let Some(key) = self.key {
                        self.shared.lock().picker.on_request_dropped(b, key);
                    }
                }
            }
            Message::Request(r) => self.on_request(r)?,
            Message::AllowedFast { piece } => {
                // Bounded: a peer may not grow this past a handful.
                if (piece as usize) < n
                    && self.peer_allowed_fast.len() < 4 * ALLOWED_FAST
                    && !self.peer_allowed_fast.contains(&piece)
                {
                    self.peer_allowed_fast.push(piece);
                }
            }
            Message::Cancel(r) => self.on_cancel(r),
            Message::Interested => {
                if !self.peer_interested {
                    self.peer_interested = true;
                    self.counters.interested.store(true, Ordering::Relaxed);
                    if let Some(key) = self.key {
                        if self.shared.on_peer_interested(key) {
                            self.unchoke();
                        }
                    }
                }
            }
            Message::NotInterested => {
                if self.peer_interested {
                    self.peer_interested = false;
                    self.counters.interested.store(false, Ordering::Relaxed);
                    if let Some(key) = self.key {
                        if self.shared.on_peer_not_interested(key) {
                            self.choke();
                        }
                    }
                }
            }
            Message::Extended { id: 0, payload } => {
                if let Ok(hs) = ExtendedHandshake::decode(&payload) {
                    if let Some(q) = hs.reqq {
                        self.reqq = (q as usize).clamp(MIN_QUEUE, MAX_QUEUE);
                    }
                }
            }
            Message::KeepAlive
            | Message::Port(_)
            | Message::SuggestPiece { .. }
            | Message::Extended { .. }
            | Message::Unknown { .. } => {}
        }
        Ok(())
    }

    fn on_block(&mut self, piece: u32, offset: u32, data: &[u8]) -> Result<(), PeerError> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let block = Block {
            piece,
            begin: offset,
            len,
        };
        let Some(i) = self.outstanding.iter().position(|x| *x == block) else {
            // Not requested (or cancelled in the meantime): count and drop.
            self.shared
                .stats
                .wasted
                .fetch_add(u64::from(len), Ordering::Relaxed);
            return Ok(());
        };
        self.outstanding.remove(i);
        self.last_data = Instant::now();
        self.snubs = 0;
        self.rate_bytes += u64::from(len);
        let Some(key) = self.key else { return Ok(()) };
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        match state.picker.on_block_received(block, key) {
            Received::New {
                cancel,
                piece_complete,
            } => {
                self.useful = true;
                shared
                    .stats
                    .downloaded
                    .fetch_add(u64::from(len), Ordering::Relaxed);
                self.counters
                    .down
                    .fetch_add(u64::from(len), Ordering::Relaxed);
                Shared::store_block(&mut state, piece, offset, data);
                for other in cancel {
                    if let Some(e) = state.peers.get(&other) {
                        let _ = e.tx.send(PeerCommand::Cancel(block));
                    }
                }
                if piece_complete {
                    if let Some(buf) = state.buffers.remove(&piece) {
                        drop(state);
                        shared.verify_piece(piece, buf);
                    }
                }
            }
            Received::Duplicate => {
                shared
                    .stats
                    .wasted
                    .fetch_add(u64::from(len), Ordering::Relaxed);
            }
            Received::Invalid => return Err(PeerError::Misbehaving("block we never asked for")),
        }
        Ok(())
    }

    fn set_interested(&mut self, yes: bool) {
        if self.am_interested != yes {
            self.am_interested = yes;
            if yes {
                Message::Interested.encode(&mut self.out);
            } else {
                Message::NotInterested.encode(&mut self.out);
            }
        }
    }

    fn update_interest_after_have(&mut self) {
        if !self.am_interested {
            return;
        }
        let state = self.shared.lock();
        let still = !state.picker.is_complete()
            && (self.seed || state.picker.is_interesting(|p| self.bits.get(p as usize)));
        drop(state);
        if !still {
            self.set_interested(false);
        }
    }

    fn queue_target(&self) -> usize {
        if self.snubs > 0 {
            // On probation after a timeout: one request at a time.
            return 1;
        }
        let cap = self.reqq.min(MAX_QUEUE);
        if self.rate == 0.0 {
            return INITIAL_QUEUE.min(cap);
        }
        let blocks = (self.rate * QUEUE_SECONDS / f64::from(crate::picker::BLOCK_LEN)) as usize;
        blocks.clamp(MIN_QUEUE, cap.max(MIN_QUEUE))
    }

    fn fill_pipeline(&mut self) {
        // While choked, only the pieces the peer allows fast (BEP 6) may be
        // asked for.
        let choked_fast = self.peer_choking && !self.peer_allowed_fast.is_empty();
        if (self.peer_choking && !choked_fast) || !self.am_interested {
            return;
        }
        let target = self.queue_target();
        if self.outstanding.len() >= target {
            return;
        }
        let Some(key) = self.key else { return };
        let want = target - self.outstanding.len();
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        let state = &mut *state;
        let bits = &self.bits;
        let seed = self.seed;
        let allowed = &self.peer_allowed_fast;
        // Ask for extra blocks to make up for any this peer should not get
        // (recently rejected or timed out); those go straight back.
        let extra = self.avoid.len().min(MAX_QUEUE);
        let picked = state.picker.pick(
            key,
            |p| (seed || bits.get(p as usize)) && (!choked_fast || allowed.contains(&p)),
            want + extra,
            &mut state.rng,
        );
        if picked.is_empty() && self.outstanding.is_empty() && state.picker.is_complete() {
            self.am_interested = false;
            Message::NotInterested.encode(&mut self.out);
        }
        let now = Instant::now();
        let mut sent = 0;
        for b in picked {
            if sent >= want || self.avoid.get(&b).is_some_and(|until| *until > now) {
                // Back to the pool for another peer to take.
                state.picker.on_request_dropped(b, key);
                continue;
            }
            sent += 1;
            Message::Request(request(b)).encode(&mut self.out);
            self.outstanding.push_back(b);
        }
    }
}

fn block(r: BlockRequest) -> Block {
    Block {
        piece: r.piece,
        begin: r.offset,
        len: r.length,
    }
}

fn request(b: Block) -> BlockRequest {
    BlockRequest {
        piece: b.piece,
        offset: b.begin,
        length: b.len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These messages reach the user: a connection that never became a
    /// peer is shown with its reason ("0 peers reachable: ADDR REASON").
    #[test]
    fn peer_errors_say_what_happened() {
        let cases = [
            (
                PeerError::from(RegisterRefusal::Duplicate),
                "already connected to this peer",
            ),
            (PeerError::from(RegisterRefusal::Banned), "banned"),
            (
                PeerError::from(RegisterRefusal::Full),
                "too many connections",
            ),
            (PeerError::from(RegisterRefusal::Closing), "shutting down"),
            (
                PeerError::ClosedInHandshake,
                "connection closed during the handshake",
            ),
            (PeerError::WrongTorrent, "peer is for another torrent"),
            (PeerError::OurOwnConnection, "connected to ourselves"),
            (
                PeerError::NothingToExchange,
                "nothing to exchange with this peer",
            ),
            (PeerError::BothSeeds, "both sides are seeds"),
            (
                PeerError::Storage { piece: 7 },
                "cannot read our own data (piece 7)",
            ),
            (
                PeerError::Timeout("waiting for handshake"),
                "timed out waiting for handshake",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
        // Only banned and full peers are refusals.
        assert!(matches!(
            PeerError::from(RegisterRefusal::Banned),
            PeerError::Refused(Refusal::Banned)
        ));
        assert!(matches!(
            PeerError::from(RegisterRefusal::Full),
            PeerError::Refused(Refusal::Full)
        ));
        assert!(matches!(
            PeerError::from(RegisterRefusal::Duplicate),
            PeerError::Duplicate
        ));
    }

    /// A wrapped error is shown in the message, so it is not also the
    /// `source` (error chains would print it twice).
    #[test]
    fn wrapped_errors_are_not_sources() {
        let io = PeerError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            io.to_string(),
            format!(
                "i/o: {}",
                std::io::Error::from(std::io::ErrorKind::ConnectionReset)
            )
        );
        assert!(std::error::Error::source(&io).is_none());
        let wire = PeerError::from(rivulet_wire::WireError::BadProtocolString);
        assert!(wire.to_string().starts_with("protocol: "), "{wire}");
        assert!(std::error::Error::source(&wire).is_none());
    }
}
