//! One peer connection: handshake, then a loop that reads messages, keeps the
//! request pipeline full and forwards commands from the torrent.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rivulet_wire::{
    Bitfield, BlockRequest, ExtendedHandshake, Handshake, Limits, Message, MessageDecoder, Reserved,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use crate::picker::{Block, PeerKey, Received};
use crate::torrent::{PeerCommand, Shared};

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
/// How long a peer we want nothing from keeps its connection.
const USELESS_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Connecting or reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not answer in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Wire(#[from] rivulet_wire::WireError),
    /// The peer is for another torrent, or is ourselves.
    #[error("{0}")]
    Refused(&'static str),
    /// The peer misbehaved in a way the codec cannot see.
    #[error("misbehaving peer: {0}")]
    Misbehaving(&'static str),
}

/// Connects to `addr` and runs the connection until it ends. Returns whether
/// the peer gave us any data (so the caller can reset its reconnect backoff).
pub(crate) async fn connect_and_run(shared: Arc<Shared>, addr: SocketAddr) -> bool {
    let stream = match timeout(shared.config.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "connect failed");
            return false;
        }
        Err(_) => {
            tracing::debug!(%addr, "connect timed out");
            return false;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::new(shared, addr);
    match conn.run(stream).await {
        Ok(()) => tracing::debug!(%addr, "peer closed"),
        Err(e) => tracing::debug!(%addr, error = %e, "peer dropped"),
    }
    conn.useful
}

struct Connection {
    shared: Arc<Shared>,
    addr: SocketAddr,
    key: Option<PeerKey>,
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
    /// Since when we have wanted nothing from this peer.
    useless_since: Option<Instant>,
    /// Bytes of blocks received since `rate_since`, for the pipeline depth.
    rate_bytes: u64,
    rate_since: Instant,
    rate: f64,
    useful: bool,
    out: BytesMut,
}

impl Connection {
    fn new(shared: Arc<Shared>, addr: SocketAddr) -> Self {
        let n = shared.info.num_pieces();
        Connection {
            shared,
            addr,
            key: None,
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
            out: BytesMut::with_capacity(4096),
        }
    }

    async fn run(&mut self, mut stream: TcpStream) -> Result<(), PeerError> {
        let shared = Arc::clone(&self.shared);
        // Handshake.
        let ours = Handshake::new(shared.info_hash, shared.config.peer_id);
        stream.write_all(&ours.to_bytes()).await?;
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let theirs = timeout(shared.config.handshake_timeout, async {
            loop {
                if let Some(h) = Handshake::decode(&mut rbuf)? {
                    return Ok::<_, PeerError>(h);
                }
                if stream.read_buf(&mut rbuf).await? == 0 {
                    return Err(PeerError::Refused("closed during handshake"));
                }
            }
        })
        .await
        .map_err(|_| PeerError::Timeout("waiting for handshake"))??;
        if theirs.info_hash != shared.info_hash {
            return Err(PeerError::Refused("peer is for another torrent"));
        }
        if theirs.peer_id == shared.config.peer_id {
            return Err(PeerError::Refused("connected to ourselves"));
        }
        self.fast = theirs.reserved.contains(Reserved::FAST);
        self.extended = theirs.reserved.contains(Reserved::EXTENSION_PROTOCOL);

        tracing::debug!(addr = %self.addr, client = ?theirs.peer_id.client().map(|c| c.to_string()), fast = self.fast, "handshake done");
        let (key, mut commands) = shared.register(self.addr);
        self.key = Some(key);
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
                reqq: Some(500),
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
        self.flush(&mut writer).await?;

        // The peer's first messages may have arrived with its handshake.
        while let Some(msg) = decoder.decode(&mut rbuf)? {
            self.handle(msg)?;
        }
        self.fill_pipeline();
        self.flush(&mut writer).await?;

        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_sent = Instant::now();
        loop {
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
                cmd = commands.recv() => match cmd {
                    Some(PeerCommand::Have(piece)) => {
                        Message::Have { piece }.encode(&mut self.out);
                        self.update_interest_after_have();
                    }
                    Some(PeerCommand::Cancel(b)) => {
                        if let Some(i) = self.outstanding.iter().position(|x| *x == b) {
                            self.outstanding.remove(i);
                            Message::Cancel(request(b)).encode(&mut self.out);
                        }
                    }
                    Some(PeerCommand::Disconnect) | None => return Ok(()),
                },
                _ = tick.tick() => self.on_tick(&mut last_sent)?,
            }
            self.fill_pipeline();
            if !self.out.is_empty() {
                last_sent = Instant::now();
                self.flush(&mut writer).await?;
            }
        }
    }

    async fn flush(&mut self, writer: &mut OwnedWriteHalf) -> Result<(), PeerError> {
        writer.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
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
        // A peer with nothing we need holds a connection slot for nothing
        // (rivulet does not serve yet): let it go after a while; the connector
        // tries it again later, when it may have new pieces.
        if self.am_interested {
            self.useless_since = None;
        } else if let Some(since) = self.useless_since {
            if now.duration_since(since) > USELESS_TIMEOUT {
                return Err(PeerError::Refused("nothing to exchange with this peer"));
            }
        } else {
            self.useless_since = Some(now);
        }
        if now.duration_since(*last_sent) > Duration::from_secs(90) {
            Message::KeepAlive.encode(&mut self.out);
        }
        self.avoid.retain(|_, until| *until > now);
        Ok(())
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
                return Err(PeerError::Misbehaving(
                    "bitfield after the start of the session",
                ));
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
                drop(state);
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
                if interesting {
                    self.set_interested(true);
                }
            }
            Message::HaveNone => {}
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
                let b = Block {
                    piece: r.piece,
                    begin: r.offset,
                    len: r.length,
                };
                if let Some(i) = self.outstanding.iter().position(|x| *x == b) {
                    self.outstanding.remove(i);
                    self.avoid_block(b, Instant::now() + REJECT_AVOID);
                    if let Some(key) = self.key {
                        self.shared.lock().picker.on_request_dropped(b, key);
                    }
                }
            }
            Message::Request(r) => {
                // Serving comes with seeding; until then every peer stays choked
                // and, with the fast extension, is told so.
                if self.fast {
                    Message::RejectRequest(r).encode(&mut self.out);
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
            | Message::Interested
            | Message::NotInterested
            | Message::Cancel(_)
            | Message::Port(_)
            | Message::SuggestPiece { .. }
            | Message::AllowedFast { .. }
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
        if self.peer_choking || !self.am_interested {
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
        // Ask for extra blocks to make up for any this peer should not get
        // (recently rejected or timed out); those go straight back.
        let extra = self.avoid.len().min(MAX_QUEUE);
        let picked = state.picker.pick(
            key,
            |p| seed || bits.get(p as usize),
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

fn request(b: Block) -> BlockRequest {
    BlockRequest {
        piece: b.piece,
        offset: b.begin,
        length: b.len,
    }
}
