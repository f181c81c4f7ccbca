//! The sans-IO peer core: everything one connection does once the
//! handshakes are exchanged, with no socket, no clock and no lock.
//!
//! [`PeerState`] takes bytes (or decoded messages), commands from the
//! torrent, and the time `now`; it answers with bytes to send (its outgoing
//! buffer), blocks to read from disk for serving ([`PeerState::next_read`]),
//! and the instant it next wants to be woken ([`PeerState::next_timeout`]).
//! It reaches the torrent only through [`TorrentAccess`]. The tokio driver
//! (`super::driver`) only moves bytes between it and the socket and the disk;
//! tests pair two cores in memory with a virtual clock.
//!
//! A connection may start before the torrent's info is known (a magnet link
//! waiting for its metadata): then the peer's bitfield and haves are kept
//! aside, nothing is requested and no request is served, until
//! [`PeerState::set_piece_count`].

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rivulet_wire::{
    metadata_piece_count, metadata_piece_len, piece_header, Bitfield, BlockRequest,
    ExtendedHandshake, Limits, Message, MessageDecoder, MetadataMessage, PexMessage,
    METADATA_PIECE_LEN, UT_METADATA, UT_PEX,
};

use super::access::{Accepted, TorrentAccess};
use super::PeerError;
use crate::metadata::UT_METADATA_ID;

/// Our id for `ut_pex` messages (BEP 11) in the extended handshake.
pub const UT_PEX_ID: u8 = 1;
/// BEP 11: at most one PEX message a minute, each way.
const PEX_INTERVAL: Duration = Duration::from_secs(60);
/// The first PEX message to a peer goes this long after its extended
/// handshake: soon enough to help a new peer find others.
const PEX_FIRST: Duration = Duration::from_secs(5);
/// Most peers added, and most dropped, in one PEX message we send, and
/// most added taken from one we receive (BEP 11 asks for 50 at most).
const PEX_MAX: usize = 50;
use crate::picker::{Block, BLOCK_LEN};
use crate::torrent::PeerCommand;

/// Requests kept in flight at first, before the peer's rate is known.
const INITIAL_QUEUE: usize = 32;
/// Fewest requests in flight.
const MIN_QUEUE: usize = 4;
/// Most requests in flight when the peer does not say (`reqq`); libtorrent
/// advertises 500 by default.
const DEFAULT_REQQ: usize = 250;
/// Never more than this many in flight to one peer.
pub(crate) const MAX_QUEUE: usize = 1000;
/// Seconds of transfer to keep requested: enough to cover the round trip and
/// the time the peer takes to serve a request.
const QUEUE_SECONDS: f64 = 2.0;

/// How long a block a peer rejected is not asked of it again.
const REJECT_AVOID: Duration = Duration::from_secs(1);
/// How long a peer keeps its connection when neither side wants anything
/// from the other.
const USELESS_TIMEOUT: Duration = Duration::from_secs(60);
/// A keep-alive goes out after this long without sending anything.
const KEEP_ALIVE: Duration = Duration::from_secs(90);
/// The core's periodic work (rate estimate, timeouts) runs this often.
const TICK: Duration = Duration::from_secs(1);

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
/// Haves kept from a peer before the torrent's info is known (a peer that
/// sends more is sending nonsense; the rest are dropped).
const MAX_EARLY_HAVES: usize = 4096;

/// What a connection is, as fixed by its handshakes.
#[derive(Debug, Clone)]
pub struct PeerParams {
    /// The peer's address (allowed-fast pieces are derived from it).
    pub ip: IpAddr,
    /// The torrent's info-hash.
    pub info_hash: [u8; 20],
    /// The torrent's piece count; `None` while its info is not known.
    pub piece_count: Option<usize>,
    /// Both sides support the fast extension (BEP 6).
    pub fast: bool,
    /// Both sides support the extension protocol (BEP 10).
    pub extended: bool,
    /// Both sides run the DHT: our node's UDP port, sent to the peer in a
    /// BEP 5 `PORT` message.
    pub dht_port: Option<u16>,
    /// A peer with requests outstanding that sends nothing for this long has
    /// them given to others.
    pub request_timeout: Duration,
}

/// Whether a connection goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Close the connection; nothing went wrong (told to, or two seeds).
    Close,
}

/// One peer connection's protocol state. See the module documentation.
pub struct PeerState {
    params: PeerParams,
    decoder: MessageDecoder,
    /// The peer's bitfield and haves received before the piece count was
    /// known.
    early_bitfield: Option<Bytes>,
    early_haves: Vec<u32>,
    // What the peer has.
    bits: Bitfield,
    seed: bool,
    /// The peer already told us what it has (bitfield, have-all, have-none or
    /// a have): a bitfield after that would count its pieces twice.
    pieces_known: bool,
    // Downloading.
    peer_choking: bool,
    am_interested: bool,
    /// A piece the peer has that we lacked when last checked: where the
    /// next check of our interest starts.
    wanted_hint: u32,
    reqq: usize,
    /// Our requests not yet answered, oldest first.
    outstanding: VecDeque<Block>,
    last_data: Instant,
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
    /// Pieces the peer lets us ask for while it chokes us.
    peer_allowed_fast: Vec<u32>,
    // Serving.
    am_choking: bool,
    peer_interested: bool,
    /// The peer's requests we will serve, oldest first.
    to_serve: VecDeque<Block>,
    /// The block being read from disk for the peer (one at a time).
    reading: Option<Block>,
    /// Pieces this peer may ask for while choked (BEP 6), that we have.
    allowed_fast: Vec<u32>,
    /// Requests we could not take (queue full, piece missing, choked).
    unwanted_requests: usize,
    served_any: bool,
    /// The peer's id for `ut_metadata` messages (BEP 9), if it takes them.
    their_ut_metadata: Option<u8>,
    /// Metadata pieces sent to the peer (bounded: a peer asking for the same
    /// pieces over and over is rejected).
    metadata_sent: usize,
    /// The peer's id for `ut_pex` messages, if we exchange peers with it.
    their_ut_pex: Option<u8>,
    /// The peers this peer was told of through PEX (added, not dropped
    /// since).
    pex_told: std::collections::HashSet<std::net::SocketAddr>,
    /// When the next PEX message to the peer is due.
    pex_due: Option<Instant>,
    /// When the peer last sent a PEX message we took (one a minute at most).
    pex_heard: Option<Instant>,
    // Sending.
    /// Outgoing bytes not yet taken by the socket: `segments` first (blocks
    /// shared with the read cache, and the messages encoded before each), then
    /// `out` (messages encoded since). Blocks are never copied: the socket
    /// gets them by vectored writes.
    segments: VecDeque<Bytes>,
    segment_bytes: usize,
    out: BytesMut,
    /// When the socket last took some bytes (or the buffer was empty).
    last_write: Instant,
    /// When the socket last took some bytes (for keep-alives).
    last_sent: Instant,
    next_tick: Instant,
}

impl std::fmt::Debug for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerState")
            .field("ip", &self.params.ip)
            .field("am_choking", &self.am_choking)
            .field("peer_choking", &self.peer_choking)
            .field("am_interested", &self.am_interested)
            .field("peer_interested", &self.peer_interested)
            .field("outstanding", &self.outstanding.len())
            .field("to_serve", &self.to_serve.len())
            .finish_non_exhaustive()
    }
}

impl PeerState {
    /// A connection whose handshakes were exchanged at `now`. Nothing is
    /// queued until [`PeerState::start`].
    pub fn new(params: PeerParams, now: Instant) -> Self {
        let n = params.piece_count.unwrap_or(0);
        let mut limits = Limits::default();
        if let Some(n) = params.piece_count {
            limits = limits.with_piece_count(u32::try_from(n).unwrap_or(u32::MAX));
        }
        PeerState {
            decoder: MessageDecoder::with_limits(limits),
            params,
            early_bitfield: None,
            early_haves: Vec::new(),
            bits: Bitfield::new(n),
            seed: false,
            pieces_known: false,
            peer_choking: true,
            am_interested: false,
            wanted_hint: 0,
            reqq: DEFAULT_REQQ,
            outstanding: VecDeque::new(),
            last_data: now,
            snubs: 0,
            avoid: HashMap::new(),
            useless_since: None,
            rate_bytes: 0,
            rate_since: now,
            rate: 0.0,
            useful: false,
            peer_allowed_fast: Vec::new(),
            am_choking: true,
            peer_interested: false,
            to_serve: VecDeque::new(),
            reading: None,
            allowed_fast: Vec::new(),
            unwanted_requests: 0,
            served_any: false,
            their_ut_metadata: None,
            metadata_sent: 0,
            their_ut_pex: None,
            pex_told: std::collections::HashSet::new(),
            pex_due: None,
            pex_heard: None,
            segments: VecDeque::new(),
            segment_bytes: 0,
            out: BytesMut::with_capacity(64 * 1024),
            last_write: now,
            last_sent: now,
            next_tick: now + TICK,
        }
    }

    /// Queues our first messages: the extended handshake, then what we have
    /// (bitfield, have-all or have-none; nothing while the info is unknown).
    pub fn start(&mut self, t: &mut impl TorrentAccess) {
        if self.params.extended {
            let mut hs = ExtendedHandshake {
                v: Some(format!("rivulet {}", env!("CARGO_PKG_VERSION"))),
                reqq: Some(SERVE_QUEUE as u32),
                ..ExtendedHandshake::default()
            };
            if t.pex_enabled() {
                hs.m.insert(UT_PEX.to_owned(), UT_PEX_ID);
            }
            hs.p = t.listen_port();
            if let Some(meta) = t.metadata() {
                // We serve the info dictionary (BEP 9), to peers that
                // started from a magnet link.
                hs.m.insert(UT_METADATA.to_owned(), UT_METADATA_ID);
                hs.metadata_size = Some(meta.len() as u64);
            }
            hs.to_message().encode(&mut self.out);
        }
        if let Some(port) = self.params.dht_port {
            Message::Port(port).encode(&mut self.out);
        }
        if self.params.piece_count.is_none() {
            return;
        }
        let have = t.have_pieces();
        let count = have.count_ones();
        let fast = self.params.fast;
        if fast && count == 0 {
            Message::HaveNone.encode(&mut self.out);
        } else if fast && have.all() {
            Message::HaveAll.encode(&mut self.out);
        } else if count > 0 {
            Message::bitfield(&have).encode(&mut self.out);
        }
    }

    /// The torrent's info became known: what the peer said it has so far is
    /// checked and counted, and our pieces are announced (we have none yet,
    /// so only with the fast extension).
    pub fn set_piece_count(
        &mut self,
        n: usize,
        t: &mut impl TorrentAccess,
    ) -> Result<(), PeerError> {
        if self.params.piece_count.is_some() {
            return Ok(());
        }
        self.params.piece_count = Some(n);
        self.decoder.set_limits(
            self.decoder
                .limits()
                .with_piece_count(u32::try_from(n).unwrap_or(u32::MAX)),
        );
        self.bits = Bitfield::new(n);
        if self.seed {
            self.bits = Bitfield::full(n);
            t.add_peer_pieces(&self.bits, true);
            if t.is_interesting(&self.bits, true) {
                self.set_interested(true);
            }
        } else if let Some(bytes) = self.early_bitfield.take() {
            self.on_bitfield(&bytes, t)?;
        }
        for piece in std::mem::take(&mut self.early_haves) {
            self.on_have(piece, t)?;
        }
        let have = t.have_pieces();
        if self.params.fast && have.none() {
            Message::HaveNone.encode(&mut self.out);
        } else if have.count_ones() > 0 {
            Message::bitfield(&have).encode(&mut self.out);
        }
        Ok(())
    }

    /// Decodes and handles every complete message in `buf` (consuming them;
    /// a partial message stays for the next call).
    pub fn receive(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
        t: &mut impl TorrentAccess,
    ) -> Result<(), PeerError> {
        while let Some(msg) = self.decoder.decode(buf)? {
            self.handle(msg, now, t)?;
        }
        Ok(())
    }

    /// Handles one message from the peer.
    pub fn handle(
        &mut self,
        msg: Message,
        now: Instant,
        t: &mut impl TorrentAccess,
    ) -> Result<(), PeerError> {
        if !matches!(msg, Message::Piece { .. }) {
            tracing::trace!(ip = %self.params.ip, ?msg, "received");
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
                self.forget_pieces(t);
            }
            self.pieces_known = true;
        }
        match msg {
            Message::Bitfield(bytes) => {
                if self.params.piece_count.is_none() {
                    self.early_bitfield = Some(bytes);
                    self.early_haves.clear();
                    return Ok(());
                }
                self.on_bitfield(&bytes, t)?;
            }
            Message::HaveAll => {
                self.seed = true;
                let Some(n) = self.params.piece_count else {
                    self.early_bitfield = None;
                    self.early_haves.clear();
                    return Ok(());
                };
                self.bits = Bitfield::full(n);
                t.add_peer_pieces(&self.bits, true);
                if !t.is_interesting(&self.bits, true) {
                    return Err(PeerError::BothSeeds);
                }
                self.set_interested(true);
            }
            Message::HaveNone => {
                self.early_bitfield = None;
                self.early_haves.clear();
                if self.params.piece_count.is_some() {
                    self.offer_allowed_fast(0, t);
                }
            }
            Message::Have { piece } => {
                self.pieces_known = true;
                if self.params.piece_count.is_none() {
                    if self.early_haves.len() < MAX_EARLY_HAVES {
                        self.early_haves.push(piece);
                    }
                    return Ok(());
                }
                self.on_have(piece, t)?;
            }
            Message::Choke => {
                self.peer_choking = true;
                // Requests are void after a choke (BEP 3). With the fast
                // extension the peer rejects them one by one, but giving them
                // to other peers now costs nothing.
                self.drop_requests(t);
            }
            Message::Unchoke => {
                self.peer_choking = false;
                self.last_data = now;
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => self.on_block(piece, offset, data, now, t)?,
            Message::RejectRequest(r) => {
                let b = block(r);
                if let Some(i) = self.outstanding.iter().position(|x| *x == b) {
                    self.outstanding.remove(i);
                    self.avoid_block(b, now + REJECT_AVOID);
                    t.requests_dropped(&[b]);
                }
            }
            Message::Request(r) => self.on_request(r, t)?,
            Message::AllowedFast { piece } => {
                // Bounded: a peer may not grow this past a handful.
                let n = self.params.piece_count.unwrap_or(0);
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
                    if t.peer_interested(true) {
                        self.unchoke();
                    }
                }
            }
            Message::NotInterested => {
                if self.peer_interested {
                    self.peer_interested = false;
                    if t.peer_interested(false) {
                        self.choke();
                    }
                }
            }
            Message::Extended { id: 0, payload } => {
                if let Ok(hs) = ExtendedHandshake::decode(&payload) {
                    if let Some(q) = hs.reqq {
                        self.reqq = (q as usize).clamp(MIN_QUEUE, MAX_QUEUE);
                    }
                    self.their_ut_metadata = hs.extension_id(UT_METADATA);
                    if let Some(p) = hs.p.filter(|&p| p != 0) {
                        t.peer_listen_port(p);
                    }
                    if t.pex_enabled() {
                        self.their_ut_pex = hs.extension_id(UT_PEX);
                        if self.their_ut_pex.is_some() && self.pex_due.is_none() {
                            self.pex_due = Some(now + PEX_FIRST);
                        }
                    }
                }
            }
            Message::Extended {
                id: UT_PEX_ID,
                payload,
            } => self.on_pex(&payload, now, t),
            Message::Extended {
                id: UT_METADATA_ID,
                payload,
            } => self.on_metadata_message(&payload, t)?,
            Message::Port(port) => {
                // BEP 5: the peer's DHT node, for ours (if we run one).
                if port != 0 {
                    t.dht_node(std::net::SocketAddr::new(self.params.ip, port));
                }
            }
            Message::KeepAlive
            | Message::SuggestPiece { .. }
            | Message::Extended { .. }
            | Message::Unknown { .. } => {}
        }
        Ok(())
    }

    /// Handles a command from the torrent.
    pub fn command(
        &mut self,
        cmd: PeerCommand,
        t: &mut impl TorrentAccess,
    ) -> Result<Flow, PeerError> {
        match cmd {
            PeerCommand::Have(piece) => {
                Message::Have { piece }.encode(&mut self.out);
                self.update_interest_after_have(t);
                if self.seed && t.is_complete() {
                    // Two seeds have nothing to say to each other.
                    return Ok(Flow::Close);
                }
            }
            PeerCommand::Cancel(b) => {
                if let Some(i) = self.outstanding.iter().position(|x| *x == b) {
                    self.outstanding.remove(i);
                    Message::Cancel(request(b)).encode(&mut self.out);
                }
            }
            PeerCommand::Choke => self.choke(),
            PeerCommand::Unchoke => self.unchoke(),
            PeerCommand::Disconnect => return Ok(Flow::Close),
            PeerCommand::WantedChanged => {
                // Pieces we skipped may be wanted now, or the reverse: look
                // again from the start.
                self.wanted_hint = 0;
                let interesting = self.pieces_known && t.is_interesting(&self.bits, self.seed);
                self.set_interested(interesting);
            }
        }
        Ok(Flow::Continue)
    }

    /// When [`PeerState::on_timeout`] wants to run next.
    pub fn next_timeout(&self) -> Instant {
        self.next_tick
    }

    /// The periodic work: the rate estimate, request timeouts (snubbing),
    /// write stalls, idle connections, keep-alives and flood forgiveness.
    /// Does nothing before [`PeerState::next_timeout`].
    pub fn on_timeout(
        &mut self,
        now: Instant,
        t: &mut impl TorrentAccess,
    ) -> Result<(), PeerError> {
        if now < self.next_tick {
            return Ok(());
        }
        self.next_tick = now + TICK;
        self.send_pex(now, t);
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
        if self.unsent() == 0 {
            self.last_write = now;
        } else if now.duration_since(self.last_write) > WRITE_STALL {
            return Err(PeerError::Misbehaving("takes none of the data we send"));
        }
        if !self.outstanding.is_empty()
            && now.duration_since(self.last_data) > self.params.request_timeout
        {
            // Snubbed: give its requests to others, ask again later (one
            // request at a time); a peer that stalls twice in a row is dropped
            // to free its slot.
            let until = now + self.params.request_timeout;
            let timed_out: Vec<Block> = self.outstanding.iter().copied().collect();
            for b in timed_out {
                self.avoid_block(b, until);
            }
            self.drop_requests(t);
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
        if now.duration_since(self.last_sent) > KEEP_ALIVE && self.unsent() == 0 {
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

    // ----- sending -----

    /// Bytes waiting for the socket.
    pub fn unsent(&self) -> usize {
        self.segment_bytes + self.out.len()
    }

    /// The bytes waiting for the socket, in order, as at most `max` slices
    /// (for one vectored write).
    pub fn transmit(&self, max: usize) -> Vec<IoSlice<'_>> {
        let mut slices: Vec<IoSlice<'_>> = self
            .segments
            .iter()
            .take(max)
            .map(|s| IoSlice::new(s))
            .collect();
        if slices.len() < max && !self.out.is_empty() {
            slices.push(IoSlice::new(&self.out));
        }
        slices
    }

    /// The socket took the first `n` bytes of [`PeerState::transmit`] at `now`.
    pub fn consumed(&mut self, mut n: usize, now: Instant) {
        if n > 0 {
            self.last_write = now;
            self.last_sent = now;
        }
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

    /// Everything waiting for the socket, taken at once (tests and tools that
    /// move bytes in memory).
    pub fn take_transmit(&mut self, now: Instant) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.unsent());
        for s in &self.segments {
            all.extend_from_slice(s);
        }
        all.extend_from_slice(&self.out);
        self.consumed(all.len(), now);
        all
    }

    // ----- downloading -----

    /// Keeps the request pipeline full: as many requests in flight as the
    /// peer's rate calls for (while it lets us ask and we want something).
    pub fn fill_pipeline(&mut self, now: Instant, t: &mut impl TorrentAccess) {
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
        let want = target - self.outstanding.len();
        let bits = &self.bits;
        let seed = self.seed;
        let allowed = &self.peer_allowed_fast;
        // Ask for extra blocks to make up for any this peer should not get
        // (recently rejected or timed out); those go straight back.
        let extra = self.avoid.len().min(MAX_QUEUE);
        let picked = t.pick(
            &|p| (seed || bits.get(p as usize)) && (!choked_fast || allowed.contains(&p)),
            want + extra,
        );
        if picked.is_empty() && self.outstanding.is_empty() && t.is_done() {
            self.set_interested(false);
            return;
        }
        if self.outstanding.is_empty() {
            // The peer's time to answer starts with its first request, not
            // with the last data it sent, maybe long ago.
            self.last_data = now;
        }
        let mut back = Vec::new();
        let mut sent = 0;
        for b in picked {
            if sent >= want || self.avoid.get(&b).is_some_and(|until| *until > now) {
                // Back to the pool for another peer to take.
                back.push(b);
                continue;
            }
            sent += 1;
            Message::Request(request(b)).encode(&mut self.out);
            self.outstanding.push_back(b);
        }
        if !back.is_empty() {
            t.requests_dropped(&back);
        }
    }

    /// How many requests to keep in flight: about two seconds of the
    /// peer's rate, within its `reqq`.
    pub fn queue_target(&self) -> usize {
        if self.snubs > 0 {
            // On probation after a timeout: one request at a time.
            return 1;
        }
        let cap = self.reqq.min(MAX_QUEUE);
        if self.rate == 0.0 {
            return INITIAL_QUEUE.min(cap);
        }
        let blocks = (self.rate * QUEUE_SECONDS / f64::from(BLOCK_LEN)) as usize;
        blocks.clamp(MIN_QUEUE, cap.max(MIN_QUEUE))
    }

    /// A PEX message (BEP 11): the peers it adds go to the connector, at
    /// most [`PEX_MAX`] of them, and only from one message a minute (more
    /// often than that is ignored, not an error: clocks differ). Nothing is
    /// taken for a private torrent, or a peer we did not offer PEX to.
    fn on_pex(&mut self, payload: &[u8], now: Instant, t: &mut impl TorrentAccess) {
        if self.their_ut_pex.is_none() || !t.pex_enabled() {
            return;
        }
        if self
            .pex_heard
            .is_some_and(|at| now.saturating_duration_since(at) < PEX_INTERVAL / 2)
        {
            return;
        }
        let Ok(msg) = PexMessage::decode(payload) else {
            return;
        };
        self.pex_heard = Some(now);
        let added: Vec<rivulet_wire::PexPeer> = msg
            .added
            .iter()
            .copied()
            .filter(|p| {
                let a = p.addr;
                a.port() != 0
                    && !a.ip().is_unspecified()
                    && !a.ip().is_multicast()
                    && a.ip() != self.params.ip
            })
            .take(PEX_MAX)
            .collect();
        if !added.is_empty() {
            t.pex_learned(&added);
        }
    }

    /// Sends the peer the changes in our peers since the last PEX message
    /// (at most [`PEX_MAX`] added and dropped), when one is due.
    fn send_pex(&mut self, now: Instant, t: &impl TorrentAccess) {
        let (Some(id), Some(due)) = (self.their_ut_pex, self.pex_due) else {
            return;
        };
        if now < due {
            return;
        }
        self.pex_due = Some(now + PEX_INTERVAL);
        let current = t.pex_peers();
        let now_addrs: std::collections::HashSet<std::net::SocketAddr> =
            current.iter().map(|p| p.addr).collect();
        let added: Vec<rivulet_wire::PexPeer> = current
            .into_iter()
            .filter(|p| !self.pex_told.contains(&p.addr))
            .take(PEX_MAX)
            .collect();
        let dropped: Vec<std::net::SocketAddr> = self
            .pex_told
            .iter()
            .filter(|a| !now_addrs.contains(a))
            .copied()
            .take(PEX_MAX)
            .collect();
        if added.is_empty() && dropped.is_empty() {
            return;
        }
        for p in &added {
            self.pex_told.insert(p.addr);
        }
        for a in &dropped {
            self.pex_told.remove(a);
        }
        PexMessage { added, dropped }
            .to_message(id)
            .encode(&mut self.out);
    }

    /// A `ut_metadata` message (BEP 9): requests are answered from the info
    /// dictionary, or rejected when we lack it or the peer asked for more
    /// than twice the whole; data and rejects are not for us (we asked for
    /// nothing: the fetch of a magnet link runs its own connections).
    fn on_metadata_message(
        &mut self,
        payload: &Bytes,
        t: &impl TorrentAccess,
    ) -> Result<(), PeerError> {
        let msg = MetadataMessage::decode(payload).map_err(PeerError::Wire)?;
        let (MetadataMessage::Request { piece }, Some(id)) = (msg, self.their_ut_metadata) else {
            return Ok(());
        };
        let reply = t.metadata().and_then(|meta| {
            let size = meta.len() as u64;
            let pieces = usize::try_from(metadata_piece_count(size)).unwrap_or(usize::MAX);
            if self.metadata_sent >= 2 * pieces + 4 {
                return None;
            }
            let len = metadata_piece_len(size, piece)?;
            let start = piece as usize * METADATA_PIECE_LEN;
            let data = meta.get(start..start + len)?;
            Some(MetadataMessage::Data {
                piece,
                total_size: size,
                data: Bytes::copy_from_slice(data),
            })
        });
        match reply {
            Some(data) => {
                self.metadata_sent += 1;
                data.to_message(id).encode(&mut self.out);
            }
            None => MetadataMessage::Reject { piece }
                .to_message(id)
                .encode(&mut self.out),
        }
        Ok(())
    }

    fn on_bitfield(&mut self, bytes: &[u8], t: &mut impl TorrentAccess) -> Result<(), PeerError> {
        let n = self.params.piece_count.unwrap_or(0);
        let bits = Bitfield::from_bytes(bytes, n)?;
        let seed = bits.all();
        t.add_peer_pieces(&bits, seed);
        let interesting = t.is_interesting(&bits, seed);
        if seed {
            self.seed = true;
            if t.is_complete() {
                self.bits = bits;
                return Err(PeerError::BothSeeds);
            }
        }
        self.offer_allowed_fast(bits.count_ones(), t);
        self.bits = bits;
        if interesting {
            self.set_interested(true);
        }
        Ok(())
    }

    fn on_have(&mut self, piece: u32, t: &mut impl TorrentAccess) -> Result<(), PeerError> {
        if piece as usize >= self.params.piece_count.unwrap_or(0) {
            return Err(PeerError::Misbehaving("have for a piece past the end"));
        }
        if !self.seed && self.bits.set(piece as usize) {
            let want = t.peer_has(piece);
            if want {
                self.wanted_hint = piece;
                if !self.am_interested {
                    self.set_interested(true);
                }
            }
        }
        Ok(())
    }

    fn on_block(
        &mut self,
        piece: u32,
        offset: u32,
        data: Bytes,
        now: Instant,
        t: &mut impl TorrentAccess,
    ) -> Result<(), PeerError> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let block = Block {
            piece,
            begin: offset,
            len,
        };
        let Some(i) = self.outstanding.iter().position(|x| *x == block) else {
            // Not requested (or cancelled in the meantime): count and drop.
            t.block_wasted(len);
            return Ok(());
        };
        self.outstanding.remove(i);
        self.last_data = now;
        self.snubs = 0;
        self.rate_bytes += u64::from(len);
        match t.block_received(block, data) {
            Accepted::New => self.useful = true,
            Accepted::Duplicate => {}
            Accepted::Invalid => return Err(PeerError::Misbehaving("block we never asked for")),
        }
        Ok(())
    }

    /// Takes the peer's pieces out of the availability counts.
    fn forget_pieces(&mut self, t: &mut impl TorrentAccess) {
        if let Some(n) = self.params.piece_count {
            t.remove_peer_pieces(&self.bits, self.seed);
            self.bits = Bitfield::new(n);
        }
        self.seed = false;
        self.early_bitfield = None;
        self.early_haves.clear();
    }

    /// Remembers not to ask this peer for `b` until `until` (bounded: the set
    /// is cleared rather than grown past a few pipelines' worth).
    fn avoid_block(&mut self, b: Block, until: Instant) {
        if self.avoid.len() >= 4 * MAX_QUEUE {
            self.avoid.clear();
        }
        self.avoid.insert(b, until);
    }

    fn drop_requests(&mut self, t: &mut impl TorrentAccess) {
        if self.outstanding.is_empty() {
            return;
        }
        let dropped: Vec<Block> = self.outstanding.drain(..).collect();
        t.requests_dropped(&dropped);
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

    fn update_interest_after_have(&mut self, t: &mut impl TorrentAccess) {
        if !self.am_interested {
            return;
        }
        if self.seed {
            if t.is_done() {
                self.set_interested(false);
            }
            return;
        }
        // From the last piece found wanted: O(1) while it still is, and
        // each piece passed over stays unwanted until the peer announces it
        // (which moves the hint there), so the whole run costs one pass
        // over the torrent per peer, not one per piece we get.
        match t.next_wanted(&self.bits, self.wanted_hint) {
            Some(p) => self.wanted_hint = p,
            None => self.set_interested(false),
        }
    }

    // ----- serving -----

    /// A request from the peer: checked, then queued, rejected or dropped.
    fn on_request(&mut self, r: BlockRequest, t: &mut impl TorrentAccess) -> Result<(), PeerError> {
        let Some(n) = self.params.piece_count else {
            // Nothing to serve before we know the torrent.
            return self.unwanted(r);
        };
        if r.piece as usize >= n {
            return Err(PeerError::Misbehaving("request for a piece past the end"));
        }
        let piece_len = t.piece_len(r.piece);
        if r.length == 0
            || r.length > MAX_REQUEST_LEN
            || u64::from(r.offset) + u64::from(r.length) > u64::from(piece_len)
        {
            return Err(PeerError::Misbehaving(
                "request for a block outside its piece",
            ));
        }
        let allowed = !self.am_choking || self.allowed_fast.contains(&r.piece);
        if !allowed || self.to_serve.len() >= SERVE_QUEUE || !t.have(r.piece) {
            return self.unwanted(r);
        }
        // A duplicate is served twice: cheaper than searching the queue for
        // every request, and bounded by the queue like any other request.
        self.to_serve.push_back(block(r));
        Ok(())
    }

    /// A request we cannot take: rejected (fast extension) or ignored, and
    /// counted towards the flood limit.
    fn unwanted(&mut self, r: BlockRequest) -> Result<(), PeerError> {
        self.unwanted_requests += 1;
        if self.unwanted_requests > FLOOD_LIMIT {
            return Err(PeerError::Misbehaving(
                "request flood: far more requests than we can take",
            ));
        }
        if self.params.fast {
            Message::RejectRequest(r).encode(&mut self.out);
        }
        Ok(())
    }

    fn on_cancel(&mut self, r: BlockRequest) {
        let b = block(r);
        if let Some(i) = self.to_serve.iter().position(|x| *x == b) {
            self.to_serve.remove(i);
            // BEP 6: with the fast extension every request gets an answer,
            // the block or a reject, even a cancelled one.
            if self.params.fast {
                Message::RejectRequest(r).encode(&mut self.out);
            }
        }
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
        if self.params.fast {
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

    /// The next queued request to read from disk, while the outgoing buffer
    /// has room and no other read is under way. The caller hands the data to
    /// [`PeerState::block_read`] (at once when it was cached).
    pub fn next_read(&mut self) -> Option<Block> {
        if self.reading.is_some() || self.unsent() >= OUT_HIGH_WATER {
            return None;
        }
        let b = *self.to_serve.front()?;
        self.reading = Some(b);
        Some(b)
    }

    /// The data of a block [`PeerState::next_read`] asked for: sent, unless
    /// the request was cancelled (or choked away) in the meantime.
    pub fn block_read(&mut self, b: Block, data: &Bytes, t: &mut impl TorrentAccess) {
        if self.reading == Some(b) {
            self.reading = None;
        }
        if let Some(i) = self.to_serve.iter().position(|x| *x == b) {
            self.to_serve.remove(i);
            self.send_block(b, data, t);
        }
    }

    fn send_block(&mut self, b: Block, data: &Bytes, t: &mut impl TorrentAccess) {
        // Only the block's own bytes, whatever the caller handed over.
        let data = data.slice(..(b.len as usize).min(data.len()));
        self.out
            .extend_from_slice(&piece_header(b.piece, b.begin, b.len));
        let head = self.out.split().freeze();
        self.segment_bytes += head.len() + data.len();
        self.segments.push_back(head);
        self.segments.push_back(data);
        self.useful = true;
        t.block_sent(b.len, !self.served_any);
        self.served_any = true;
    }

    /// BEP 6: once we know the peer has few pieces, tell it which of ours it
    /// may fetch while choked, so that a new peer has something to trade
    /// before it earns a slot.
    fn offer_allowed_fast(&mut self, peer_pieces: usize, t: &mut impl TorrentAccess) {
        if !self.params.fast || peer_pieces >= ALLOWED_FAST || !self.allowed_fast.is_empty() {
            return;
        }
        let n = u32::try_from(self.params.piece_count.unwrap_or(0)).unwrap_or(u32::MAX);
        let set =
            rivulet_wire::allowed_fast_set(self.params.ip, &self.params.info_hash, n, ALLOWED_FAST);
        let offered: Vec<u32> = set.into_iter().filter(|p| t.have(*p)).collect();
        for piece in &offered {
            Message::AllowedFast { piece: *piece }.encode(&mut self.out);
        }
        self.allowed_fast = offered;
    }

    // ----- what the connection knows -----

    /// What the peer has (all ones for a seed).
    pub fn peer_pieces(&self) -> &Bitfield {
        &self.bits
    }

    /// Whether the peer has every piece.
    pub fn is_seed(&self) -> bool {
        self.seed
    }

    /// Whether data moved either way (the connector resets its backoff).
    pub fn useful(&self) -> bool {
        self.useful
    }

    /// Whether we choke the peer.
    pub fn am_choking(&self) -> bool {
        self.am_choking
    }

    /// Whether the peer chokes us.
    pub fn peer_choking(&self) -> bool {
        self.peer_choking
    }

    /// Whether we told the peer we are interested.
    pub fn am_interested(&self) -> bool {
        self.am_interested
    }

    /// Whether the peer told us it is interested.
    pub fn peer_interested(&self) -> bool {
        self.peer_interested
    }

    /// Our requests to the peer not yet answered, oldest first.
    pub fn outstanding(&self) -> impl Iterator<Item = &Block> {
        self.outstanding.iter()
    }

    /// The peer's requests we will serve, oldest first.
    pub fn queued_for_peer(&self) -> usize {
        self.to_serve.len()
    }

    /// The pieces we let the peer fetch while choked (BEP 6).
    pub fn allowed_fast(&self) -> &[u32] {
        &self.allowed_fast
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
