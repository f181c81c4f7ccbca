//! [`UdpTrackerClient`]: the BEP 15 transaction logic for one tracker, sans-IO.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rivulet_core::InfoHash;

use crate::announce::{
    bounded_interval, count, AnnounceRequest, AnnounceResponse, PeerAddr, PeerCollector,
    ScrapeResponse, ScrapeStats, DEFAULT_ANNOUNCE_INTERVAL,
};
use crate::udp::codec::{
    decode_response, encode_announce, encode_connect, encode_scrape, AddressFamily,
    UdpAnnounceOptions, UdpResponse, MAX_SCRAPE_HASHES,
};
use crate::TrackerError;

/// How long a connection id may be used after it was received (BEP 15: "a
/// client can use a connection ID until one minute after it has received it").
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// Timeout of the first transmission; attempt `n` waits `15 · 2^n` seconds.
pub const BASE_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest `n` in `15 · 2^n` that BEP 15 allows (3,840 s).
pub const MAX_RETRIES: u32 = 8;

/// How many ended transaction ids are remembered, to tell late answers from
/// stray ones.
const RECENT_TIDS: usize = 64;

/// How the client behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpClientConfig {
    /// Family of the socket talking to the tracker; decides the peer format of
    /// announce responses.
    pub family: AddressFamily,
    /// The last `n` of the `15 · 2^n` s retransmission schedule: a packet is
    /// sent at most `max_retries + 1` times before the step fails with
    /// [`TrackerError::Timeout`]. BEP 15 says 8 (about 2 h 8 min in total);
    /// an engine that has other trackers may prefer 1 or 2. Values above 8 are
    /// treated as 8.
    pub max_retries: u32,
    /// IP field and BEP 41 URL data for announces.
    pub announce_options: UdpAnnounceOptions,
    /// Most requests started and not yet collected with
    /// [`UdpTrackerClient::poll_event`].
    pub max_requests: usize,
}

impl UdpClientConfig {
    /// BEP 15 defaults for a socket of `family`: 8 retries, no options, 64
    /// requests.
    pub fn new(family: AddressFamily) -> Self {
        UdpClientConfig {
            family,
            max_retries: MAX_RETRIES,
            announce_options: UdpAnnounceOptions::default(),
            max_requests: 64,
        }
    }
}

/// Names one request made through a [`UdpTrackerClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What a finished request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpOutcome {
    /// Answer to [`UdpTrackerClient::start_announce`], bounded like HTTP answers
    /// (UDP has no min interval, tracker id or warning).
    Announce(AnnounceResponse),
    /// Answer to [`UdpTrackerClient::start_scrape`].
    Scrape(ScrapeResponse),
}

/// A request finished, well or badly; from [`UdpTrackerClient::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpEvent {
    /// Which request.
    pub id: RequestId,
    /// Its answer, or why there is none ([`TrackerError::Failure`] for an error
    /// packet, [`TrackerError::Timeout`] when the tracker stayed silent).
    pub result: Result<UdpOutcome, TrackerError>,
}

/// Why [`UdpTrackerClient::handle_packet`] ignored a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// The packet does not decode.
    Malformed(TrackerError),
    /// No transaction, current or recent, has this id (stray or spoofed packet).
    UnknownTransaction(u32),
    /// The transaction already ended (duplicate or late answer).
    Late(u32),
    /// The transaction is current, but the packet answers another kind of
    /// request.
    WrongAction {
        /// The transaction id.
        transaction_id: u32,
        /// The action the packet carries.
        action: u32,
    },
}

/// What [`UdpTrackerClient::handle_packet`] did with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketOutcome {
    /// A connect response: the connection id is stored, and waiting requests
    /// can be sent ([`UdpTrackerClient::poll_transmit`]).
    Connected,
    /// The tracker refused the connect request; every request that waited for
    /// the connection finished with its message.
    ConnectRefused,
    /// A request finished; its [`UdpEvent`] is ready.
    Finished(RequestId),
    /// The packet changed nothing.
    Ignored(Ignored),
}

/// Counters, always on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpStats {
    /// Connect requests sent (retransmissions included).
    pub connects_sent: u64,
    /// Announce and scrape requests sent (retransmissions included).
    pub requests_sent: u64,
    /// Packets sent again after a timeout.
    pub retransmits: u64,
    /// Packets that did not decode.
    pub ignored_malformed: u64,
    /// Packets with an unknown transaction id.
    pub ignored_unknown: u64,
    /// Packets for transactions that had already ended.
    pub ignored_late: u64,
    /// Packets whose action did not fit their transaction.
    pub ignored_wrong_action: u64,
    /// Steps (connect, announce or scrape) abandoned after the last retry.
    pub timeouts: u64,
}

#[derive(Debug, Clone, Copy)]
struct Connection {
    id: u64,
    received: Instant,
}

/// The shared connect transaction.
#[derive(Debug)]
struct Connecting {
    tid: u32,
    /// `n` of the last (or next) transmission.
    attempt: u32,
    /// When the current transmission times out; `None` while it waits to be sent.
    deadline: Option<Instant>,
}

#[derive(Debug)]
enum Kind {
    Announce(Box<AnnounceRequest>),
    Scrape(Vec<InfoHash>),
}

#[derive(Debug)]
struct Request {
    id: RequestId,
    tid: u32,
    kind: Kind,
    /// `n` of the last (or next) transmission; kept across reconnects, so a
    /// tracker that answers connects but never announces still runs out of
    /// retries.
    attempt: u32,
    /// When the current transmission times out; `None` while the request
    /// waits to be sent (first time, after a timeout, or for a connection id).
    deadline: Option<Instant>,
}

/// The client side of BEP 15 for one tracker: connection id management,
/// transaction ids, retransmissions and the matching of answers to requests.
///
/// It performs no I/O and reads no clock; the driver feeds it:
///
/// * requests: [`start_announce`](Self::start_announce),
///   [`start_scrape`](Self::start_scrape), [`cancel`](Self::cancel);
/// * every datagram from the tracker: [`handle_packet`](Self::handle_packet);
/// * the passing of time: [`handle_timeout`](Self::handle_timeout) once
///   [`poll_timeout`](Self::poll_timeout) has passed.
///
/// After each of those calls the driver sends every packet
/// [`poll_transmit`](Self::poll_transmit) returns (until `None`), collects
/// finished requests with [`poll_event`](Self::poll_event), and sleeps until
/// [`poll_timeout`](Self::poll_timeout). Several requests (for several
/// torrents) can be in flight at once; they share one connection id and one
/// connect transaction.
///
/// Rules (BEP 15): a connect precedes announces and scrapes unless a connection
/// id received less than [`CONNECTION_ID_LIFETIME`] ago is at hand (checked at
/// every transmission, retransmissions included); a packet unanswered for
/// `15 · 2^n` s is sent again with `n + 1`, up to
/// [`UdpClientConfig::max_retries`]; transaction ids are random and unique
/// among live transactions; packets that match no live transaction, or that
/// carry the wrong action, are ignored and counted. An error packet ends its
/// transaction with the tracker's message and drops the connection id (it is
/// the usual answer to an expired one).
///
/// ```
/// use std::time::{Duration, Instant};
/// use rivulet_core::{InfoHash, PeerId};
/// use rivulet_tracker::udp::{AddressFamily, UdpClientConfig, UdpResponse, UdpTrackerClient};
/// use rivulet_tracker::{AnnounceRequest, Event};
///
/// let mut c = UdpTrackerClient::with_seed(UdpClientConfig::new(AddressFamily::V4), 7);
/// let t0 = Instant::now();
/// let req = AnnounceRequest {
///     info_hash: InfoHash([1; 20]), peer_id: PeerId([2; 20]), port: 6881,
///     uploaded: 0, downloaded: 0, left: 10, event: Event::Started,
///     numwant: None, key: 9, tracker_id: None, compact: true, crypto: Default::default(),
/// };
/// let id = c.start_announce(req, t0).unwrap();
/// let connect = c.poll_transmit(t0).unwrap(); // no connection id yet
/// assert_eq!(connect.len(), 16);
/// let tid = u32::from_be_bytes(connect[12..16].try_into().unwrap());
/// let answer = UdpResponse::Connect { transaction_id: tid, connection_id: 42 };
/// c.handle_packet(&answer.encode(), t0);
/// let announce = c.poll_transmit(t0).unwrap();
/// assert_eq!(&announce[..8], &42u64.to_be_bytes());
/// assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(15)));
/// # let _ = id;
/// ```
#[derive(Debug)]
pub struct UdpTrackerClient {
    config: UdpClientConfig,
    rng: StdRng,
    connection: Option<Connection>,
    connecting: Option<Connecting>,
    requests: Vec<Request>,
    events: VecDeque<UdpEvent>,
    recent_tids: VecDeque<u32>,
    next_id: u64,
    stats: UdpStats,
}

impl UdpTrackerClient {
    /// A client whose transaction ids come from an RNG seeded by the OS.
    pub fn new(config: UdpClientConfig) -> Self {
        Self::with_rng(config, StdRng::from_entropy())
    }

    /// A client with reproducible transaction ids, for tests.
    pub fn with_seed(config: UdpClientConfig, seed: u64) -> Self {
        Self::with_rng(config, StdRng::seed_from_u64(seed))
    }

    fn with_rng(mut config: UdpClientConfig, rng: StdRng) -> Self {
        config.max_retries = config.max_retries.min(MAX_RETRIES);
        UdpTrackerClient {
            config,
            rng,
            connection: None,
            connecting: None,
            requests: Vec::new(),
            events: VecDeque::new(),
            recent_tids: VecDeque::with_capacity(RECENT_TIDS),
            next_id: 0,
            stats: UdpStats::default(),
        }
    }

    /// The configuration in force (with `max_retries` capped at 8).
    pub fn config(&self) -> &UdpClientConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Whether a connection id usable at `now` is at hand.
    pub fn is_connected(&self, now: Instant) -> bool {
        self.valid_connection(now).is_some()
    }

    /// Requests started and not finished.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// Starts an announce. `now` is accepted for symmetry with the other
    /// inputs; the packet goes out at the next [`poll_transmit`](Self::poll_transmit).
    pub fn start_announce(
        &mut self,
        req: AnnounceRequest,
        now: Instant,
    ) -> Result<RequestId, TrackerError> {
        let _ = now;
        self.start(Kind::Announce(Box::new(req)))
    }

    /// Starts a scrape of 1 to [`MAX_SCRAPE_HASHES`] info-hashes.
    pub fn start_scrape(
        &mut self,
        info_hashes: &[InfoHash],
        now: Instant,
    ) -> Result<RequestId, TrackerError> {
        let _ = now;
        if info_hashes.is_empty() {
            return Err(TrackerError::NoInfoHashes);
        }
        if info_hashes.len() > MAX_SCRAPE_HASHES {
            return Err(TrackerError::TooManyInfoHashes {
                count: info_hashes.len(),
                max: MAX_SCRAPE_HASHES,
            });
        }
        self.start(Kind::Scrape(info_hashes.to_vec()))
    }

    fn start(&mut self, kind: Kind) -> Result<RequestId, TrackerError> {
        let limit = self.config.max_requests;
        if self.requests.len() + self.events.len() >= limit {
            return Err(TrackerError::TooManyRequests { limit });
        }
        let id = RequestId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        let tid = self.fresh_tid();
        self.requests.push(Request {
            id,
            tid,
            kind,
            attempt: 0,
            deadline: None,
        });
        Ok(id)
    }

    /// Abandons a request: no event will be produced for it, and answers to it
    /// will be ignored as late. Returns whether it was pending.
    pub fn cancel(&mut self, id: RequestId) -> bool {
        let Some(pos) = self.requests.iter().position(|r| r.id == id) else {
            return false;
        };
        let r = self.requests.remove(pos);
        self.remember_tid(r.tid);
        true
    }

    /// The next packet to send to the tracker, if any. Call until `None` after
    /// every input.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(c) = &mut self.connecting {
            if c.deadline.is_none() {
                c.deadline = Some(now + timeout(c.attempt));
                self.stats.connects_sent += 1;
                return Some(encode_connect(c.tid).to_vec());
            }
        }
        loop {
            let pos = self.requests.iter().position(|r| r.deadline.is_none())?;
            let Some(conn) = self.valid_connection(now) else {
                // Every waiting request needs a connection id; at most one
                // connect is in flight for all of them.
                if self.connecting.is_some() {
                    return None;
                }
                let tid = self.fresh_tid();
                self.connecting = Some(Connecting {
                    tid,
                    attempt: 0,
                    deadline: Some(now + timeout(0)),
                });
                self.stats.connects_sent += 1;
                return Some(encode_connect(tid).to_vec());
            };
            let r = self.requests.get_mut(pos)?;
            let packet = match &r.kind {
                Kind::Announce(req) => {
                    encode_announce(conn.id, r.tid, req, &self.config.announce_options)
                }
                Kind::Scrape(hashes) => encode_scrape(conn.id, r.tid, hashes),
            };
            match packet {
                Ok(p) => {
                    r.deadline = Some(now + timeout(r.attempt));
                    self.stats.requests_sent += 1;
                    return Some(p);
                }
                Err(e) => {
                    // Only a configuration error (over-long URL data) gets here;
                    // end the request rather than retry it forever.
                    self.finish(pos, Err(e));
                }
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called;
    /// `None` when nothing is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let connect = self.connecting.as_ref().and_then(|c| c.deadline);
        self.requests
            .iter()
            .filter_map(|r| r.deadline)
            .chain(connect)
            .min()
    }

    /// Advances time: packets whose timeout passed are scheduled for
    /// retransmission, or fail once out of retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        let max = self.config.max_retries;
        if let Some(c) = &mut self.connecting {
            if c.deadline.is_some_and(|d| d <= now) {
                if c.attempt >= max {
                    let attempts = c.attempt + 1;
                    self.stats.timeouts += 1;
                    self.fail_connect(TrackerError::Timeout { attempts });
                } else {
                    c.attempt += 1;
                    c.deadline = None;
                    self.stats.retransmits += 1;
                }
            }
        }
        let mut i = 0;
        while let Some(r) = self.requests.get_mut(i) {
            if r.deadline.is_some_and(|d| d <= now) {
                if r.attempt >= max {
                    let attempts = r.attempt + 1;
                    self.stats.timeouts += 1;
                    self.finish(i, Err(TrackerError::Timeout { attempts }));
                    continue;
                }
                r.attempt += 1;
                r.deadline = None;
                self.stats.retransmits += 1;
            }
            i += 1;
        }
    }

    /// Takes one datagram from the tracker.
    pub fn handle_packet(&mut self, bytes: &[u8], now: Instant) -> PacketOutcome {
        let packet = match decode_response(bytes, self.config.family) {
            Ok(p) => p,
            Err(e) => {
                self.stats.ignored_malformed += 1;
                return PacketOutcome::Ignored(Ignored::Malformed(e));
            }
        };
        let tid = packet.transaction_id();
        if self.connecting.as_ref().is_some_and(|c| c.tid == tid) {
            return match packet {
                UdpResponse::Connect { connection_id, .. } => {
                    self.connecting = None;
                    self.remember_tid(tid);
                    self.connection = Some(Connection {
                        id: connection_id,
                        received: now,
                    });
                    PacketOutcome::Connected
                }
                UdpResponse::Error { message, .. } => {
                    self.fail_connect(TrackerError::Failure { message });
                    PacketOutcome::ConnectRefused
                }
                other => self.wrong_action(tid, other.action()),
            };
        }
        let Some(pos) = self.requests.iter().position(|r| r.tid == tid) else {
            return if self.recent_tids.contains(&tid) {
                self.stats.ignored_late += 1;
                PacketOutcome::Ignored(Ignored::Late(tid))
            } else {
                self.stats.ignored_unknown += 1;
                PacketOutcome::Ignored(Ignored::UnknownTransaction(tid))
            };
        };
        let Some(r) = self.requests.get(pos) else {
            return PacketOutcome::Ignored(Ignored::UnknownTransaction(tid));
        };
        let id = r.id;
        // `Err(action)` for a packet of the wrong kind.
        let result: Result<Result<UdpOutcome, TrackerError>, u32> = match (&r.kind, packet) {
            (
                Kind::Announce(_),
                UdpResponse::Announce {
                    interval,
                    leechers,
                    seeders,
                    peers,
                    ..
                },
            ) => {
                let mut collector = PeerCollector::default();
                for p in peers {
                    collector.push(PeerAddr::Ip(p), None);
                }
                let (peers, skipped_peers) = collector.finish();
                Ok(Ok(UdpOutcome::Announce(AnnounceResponse {
                    interval: bounded_interval(Some(i64::from(interval)))
                        .unwrap_or(DEFAULT_ANNOUNCE_INTERVAL),
                    min_interval: None,
                    tracker_id: None,
                    complete: count(Some(i64::from(seeders))),
                    incomplete: count(Some(i64::from(leechers))),
                    warning: None,
                    peers,
                    skipped_peers,
                })))
            }
            (Kind::Scrape(hashes), UdpResponse::Scrape { entries, .. }) => {
                let n = |v: i32| u32::try_from(v).unwrap_or(0);
                let files = hashes
                    .iter()
                    .zip(entries)
                    .map(|(h, e)| {
                        (
                            *h,
                            ScrapeStats {
                                complete: n(e.seeders),
                                downloaded: n(e.completed),
                                incomplete: n(e.leechers),
                            },
                        )
                    })
                    .collect();
                Ok(Ok(UdpOutcome::Scrape(ScrapeResponse {
                    files,
                    min_request_interval: None,
                })))
            }
            (_, UdpResponse::Error { message, .. }) => {
                // Most often the answer to a connection id the tracker no
                // longer accepts: get a new one for the next request.
                Ok(Err(TrackerError::Failure { message }))
            }
            (_, other) => Err(other.action()),
        };
        let result = match result {
            Ok(r) => r,
            Err(action) => return self.wrong_action(tid, action),
        };
        if matches!(result, Err(TrackerError::Failure { .. })) {
            self.connection = None;
        }
        self.finish(pos, result);
        PacketOutcome::Finished(id)
    }

    /// The next finished request, if any.
    pub fn poll_event(&mut self) -> Option<UdpEvent> {
        self.events.pop_front()
    }

    fn wrong_action(&mut self, transaction_id: u32, action: u32) -> PacketOutcome {
        self.stats.ignored_wrong_action += 1;
        PacketOutcome::Ignored(Ignored::WrongAction {
            transaction_id,
            action,
        })
    }

    fn valid_connection(&self, now: Instant) -> Option<Connection> {
        self.connection
            .filter(|c| now.saturating_duration_since(c.received) < CONNECTION_ID_LIFETIME)
    }

    /// Ends the connect transaction: every request waiting to be sent (they all
    /// wait for the connection id) finishes with `error`.
    fn fail_connect(&mut self, error: TrackerError) {
        if let Some(c) = self.connecting.take() {
            self.remember_tid(c.tid);
        }
        let mut i = 0;
        while let Some(r) = self.requests.get(i) {
            if r.deadline.is_none() {
                self.finish(i, Err(error.clone()));
            } else {
                i += 1;
            }
        }
    }

    /// Removes request `pos` and queues its event.
    fn finish(&mut self, pos: usize, result: Result<UdpOutcome, TrackerError>) {
        if pos < self.requests.len() {
            let r = self.requests.remove(pos);
            self.remember_tid(r.tid);
            self.events.push_back(UdpEvent { id: r.id, result });
        }
    }

    fn remember_tid(&mut self, tid: u32) {
        if self.recent_tids.len() >= RECENT_TIDS {
            self.recent_tids.pop_front();
        }
        self.recent_tids.push_back(tid);
    }

    /// A random transaction id not used by a live or recent transaction.
    fn fresh_tid(&mut self) -> u32 {
        loop {
            let tid: u32 = self.rng.gen();
            let in_use = self.connecting.as_ref().is_some_and(|c| c.tid == tid)
                || self.requests.iter().any(|r| r.tid == tid)
                || self.recent_tids.contains(&tid);
            if !in_use {
                return tid;
            }
        }
    }
}

/// `15 · 2^n` seconds, `n` capped at [`MAX_RETRIES`].
fn timeout(n: u32) -> Duration {
    BASE_TIMEOUT * (1u32 << n.min(MAX_RETRIES))
}
