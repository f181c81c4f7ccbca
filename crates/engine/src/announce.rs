//! Announcing to trackers (HTTP and UDP) for one torrent, on top of the sans-IO
//! `rivulet-tracker` crate; the HTTP and UDP drivers here also serve
//! [`crate::scrape`].
//!
//! # Policy
//!
//! * **Tiers** (BEP 12, `AnnouncePolicy::default()` in `rivulet-tracker`):
//!   every tier is announced to, each through its first working tracker, like
//!   qBittorrent and uTorrent rather than libtorrent's default. Each tier runs
//!   in its own task, so a dead tracker in one tier never holds up the others:
//!   a torrent whose first tier is dead gets its peers from the second tier as
//!   fast as if the first did not exist. The order comes from
//!   `rivulet_tracker::TrackerList` (split into one list per tier): each tier
//!   shuffled once, repeated URLs dropped, at most 200 trackers in all; within
//!   a tier, trackers are tried one after another, and the one that answered
//!   moves to the front.
//! * **Timeouts** ([`AnnounceTimeouts`]): an HTTP announce (name resolution,
//!   connect, redirects, the whole body) gets 15 s. A UDP request gets BEP
//!   15's 15 s first timeout but only one retransmission rather than BEP 15's
//!   eight (over two hours): a silent UDP tracker is given up after 15 s +
//!   30 s = 45 s and the next tracker of its tier is tried (one that answers
//!   connects but not announces, after twice that). Resolving its host name
//!   is bounded by the HTTP timeout. Each announce uses a fresh UDP state
//!   machine, so connection ids are not kept between announces (they are
//!   minutes apart anyway), but all UDP trackers of a torrent share one
//!   socket per address family (`udp_socket`): datagrams go to the requests
//!   to their sender's address, and each request's state machine keeps those
//!   with its own transaction ids.
//!   ICMP errors ("port unreachable") do not end a UDP announce early: the
//!   retransmission schedule runs on, as for a silent tracker.
//! * **Failure and backoff**: a failure is logged as a warning and the next
//!   tracker of the tier is tried. When every tracker of a tier failed, the
//!   tier waits 15 s, then 30 s, 60 s, ... up to 30 min, and tries again.
//!   Failures of all kinds (unreachable, timeout, garbage, `failure reason`)
//!   are treated alike.
//! * **What a tracker can make us do** is bounded by `rivulet-tracker`: the
//!   interval is clamped to 60 s ..= 2 h (`min interval` is respected by never
//!   announcing more often than `interval`, except for `completed`); at most
//!   2,000 peers per answer; bodies are read up to 4 MiB (after gzip
//!   decoding; the reading stops there, whatever the tracker keeps sending);
//!   at most 5 redirects. An HTTP error status is reported as such, unless its
//!   body is a bencoded `failure reason`, which is then reported instead.
//!   Peers given by host name (dictionary peer lists) are not resolved; only
//!   IP addresses are handed on.
//! * **Honest stats**: `downloaded` is payload received that we needed since
//!   `started` (this session), `uploaded` what we served, `left` what is still
//!   missing. `completed` is sent once per tier, when the download finishes
//!   (not when it starts complete); an exit racing it does not cancel it, so a
//!   tracker never counts it twice. Nor does it cancel a `started` on its way
//!   (the tracker may already count us: its answer lets `stopped` follow). `stopped` goes to the tracker of each tier
//!   that last answered, if that tier's `started` was answered; all final
//!   announces together get [`STOP_TIMEOUT`] (3 s), after which the tier tasks
//!   are dropped, so exit is never slow.
//!
//! # Testing hooks
//!
//! [`Announcer::with_timeouts`] shortens every wait (tests use a few hundred
//! milliseconds). The UDP state machine's schedule is fixed at BEP 15's
//! `15 · 2^n` s; a different [`UdpTiming::first_timeout`] is had by running
//! the state machine on a clock that goes faster or slower than the real one
//! (it only ever sees the `now` it is given). That also scales its 60 s
//! connection-id lifetime, which does not matter: each announce uses a fresh
//! state machine.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rivulet_tracker::udp::{
    AddressFamily, RequestId, UdpClientConfig, UdpOutcome, UdpTrackerClient, UdpTrackerUrl,
    BASE_TIMEOUT,
};
use rivulet_tracker::{
    announce_url, parse_announce_response, AnnouncePolicy, AnnounceRequest, AnnounceResponse,
    Event, PeerAddr, TrackerError, TrackerList, MAX_RESPONSE_LEN,
};
use tokio::sync::{mpsc, watch};

use crate::stats::{io_reason, TrackerStatus};
use crate::torrent::{Outcome, Shared};
use crate::udp_socket::{Registration, UdpSockets};

/// Longest time `stopped` announces may delay exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Most host names resolved from one announce answer.
const MAX_HOST_LOOKUPS: usize = 50;
/// How long resolving one peer host name may take.
const HOST_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Most redirects followed for one HTTP request.
pub const MAX_REDIRECTS: usize = 5;

/// How much of an HTTP error page is read, looking for a `failure reason`.
const ERROR_BODY_LEN: usize = 64 * 1024;

/// Retransmission schedule of a UDP tracker request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTiming {
    /// Timeout of the first transmission; each retransmission doubles it. BEP
    /// 15 says 15 s. Clamped to 1 ms ..= 1 h.
    pub first_timeout: Duration,
    /// Retransmissions after the first send before giving up (BEP 15 says 8;
    /// at most 8).
    pub retries: u32,
}

impl Default for UdpTiming {
    /// 15 s, one retransmission: a silent tracker is given up after 45 s.
    fn default() -> Self {
        UdpTiming {
            first_timeout: BASE_TIMEOUT,
            retries: 1,
        }
    }
}

/// Every wait of the [`Announcer`]; the defaults are the policy described in
/// the module documentation, tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceTimeouts {
    /// One HTTP announce, start to end (redirects and body included); also
    /// bounds resolving a UDP tracker's host name.
    pub http: Duration,
    /// UDP retransmissions.
    pub udp: UdpTiming,
    /// Wait before retrying a tier whose trackers all failed; doubled after
    /// each further failed round.
    pub retry_base: Duration,
    /// Longest wait between retries of a failing tier.
    pub retry_max: Duration,
    /// Longest time the final `completed`/`stopped` announces may take.
    pub stop: Duration,
}

impl Default for AnnounceTimeouts {
    fn default() -> Self {
        AnnounceTimeouts {
            http: Duration::from_secs(15),
            udp: UdpTiming::default(),
            retry_base: Duration::from_secs(15),
            retry_max: Duration::from_secs(30 * 60),
            stop: STOP_TIMEOUT,
        }
    }
}

/// Everything an announce needs that does not change between announces.
#[derive(Clone)]
pub struct Announcer {
    shared: Arc<Shared>,
    http: HttpClient,
    port: u16,
    key: u32,
    peers: mpsc::UnboundedSender<SocketAddr>,
    timeouts: AnnounceTimeouts,
    /// One socket per address family for all UDP trackers of the torrent.
    udp: Arc<UdpSockets>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("port", &self.port)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// The HTTP client for tracker requests: bounded redirects, our user agent,
/// gzip, and no idle connections kept. Timeouts are applied per request by
/// the callers.
///
/// A tracker is asked again only after minutes, and many (opentracker among
/// them) close the connection after each answer: a kept connection is
/// worthless, and reusing one the tracker is closing fails the next request
/// (a `stopped` right after a `completed` was lost that way).
pub(crate) fn http_client(bind: Option<IpAddr>) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .local_address(bind)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .user_agent(format!("rivulet/{}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The HTTP client for trackers, built at the first HTTP request and then
/// shared by every clone: a program with no HTTP tracker never pays for it
/// (its TLS set-up is about 2 MiB of memory).
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    bind: Option<IpAddr>,
    client: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
}

impl HttpClient {
    /// A client that will send from `bind` (any address: `None`).
    pub(crate) fn new(bind: Option<IpAddr>) -> Self {
        HttpClient {
            bind,
            client: Arc::default(),
        }
    }

    /// The client, built now if it was not yet. A client that cannot be built
    /// (no TLS backend, say) fails every HTTP tracker request with the reason.
    pub(crate) fn get(&self) -> Result<&reqwest::Client, TrackerError> {
        self.client
            .get_or_init(|| http_client(self.bind).map_err(describe))
            .as_ref()
            .map_err(|e| {
                TrackerError::Transport(format!("cannot create the HTTP client for trackers: {e}"))
            })
    }
}

impl Announcer {
    /// An announcer of a session's torrent: the session's HTTP client and
    /// UDP sockets, default timeouts.
    pub(crate) fn with_clients(
        shared: Arc<Shared>,
        port: u16,
        peers: mpsc::UnboundedSender<SocketAddr>,
        http: HttpClient,
        udp: Arc<UdpSockets>,
    ) -> Self {
        Announcer {
            http,
            udp,
            shared,
            port,
            key: rand::thread_rng().gen(),
            peers,
            timeouts: AnnounceTimeouts::default(),
        }
    }

    /// An announcer for `shared`'s torrent outside a session (its own HTTP
    /// client and UDP sockets) that reports listening on `port` and
    /// hands the peers it learns to `peers`, with the default
    /// [`AnnounceTimeouts`].
    pub fn new(shared: Arc<Shared>, port: u16, peers: mpsc::UnboundedSender<SocketAddr>) -> Self {
        Announcer {
            http: HttpClient::new(shared.config.bind),
            udp: Arc::new(UdpSockets::new(shared.config.bind)),
            shared,
            port,
            key: rand::thread_rng().gen(),
            peers,
            timeouts: AnnounceTimeouts::default(),
        }
    }

    /// The same announcer with other timeouts (tests use short ones).
    pub fn with_timeouts(mut self, timeouts: AnnounceTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &AnnounceTimeouts {
        &self.timeouts
    }

    /// The announce that would be sent now with `event`: the torrent's current
    /// counters.
    pub fn request(&self, event: Event, tracker_id: Option<String>) -> AnnounceRequest {
        let stats = &self.shared.stats;
        let total = self.shared.info.total_length();
        AnnounceRequest {
            info_hash: self.shared.info_hash,
            peer_id: self.shared.config.peer_id,
            port: self.port,
            uploaded: stats.uploaded.load(Ordering::Relaxed),
            downloaded: stats.downloaded.load(Ordering::Relaxed),
            left: total.saturating_sub(stats.verified_bytes.load(Ordering::Relaxed)),
            event,
            numwant: Some(200),
            key: self.key,
            tracker_id,
            compact: true,
            crypto: crate::encryption::tracker_crypto(self.shared.config.encryption),
        }
    }

    /// One announce to one tracker (`http://`, `https://` or `udp://`). Ends
    /// with an answer or an error within the configured timeouts, whatever
    /// the tracker does. The peers are not delivered; [`run`](Self::run) does
    /// that.
    pub async fn announce(
        &self,
        url: &str,
        event: Event,
        tracker_id: Option<String>,
    ) -> Result<AnnounceResponse, TrackerError> {
        let req = self.request(event, tracker_id);
        announce_once(&self.http, &self.udp, &self.timeouts, url, req).await
    }

    fn deliver(&self, resp: &AnnounceResponse) {
        let mut lookups = 0;
        for p in &resp.peers {
            match &p.addr {
                PeerAddr::Ip(addr) => {
                    let _ = self.peers.send(*addr);
                }
                // Dictionary peer lists may name hosts: resolve a bounded
                // number of them in the background, each with a timeout, so a
                // tracker cannot make us wait on (or flood) DNS.
                PeerAddr::Host { name, port } if lookups < MAX_HOST_LOOKUPS => {
                    lookups += 1;
                    let (name, port, peers) = (name.clone(), *port, self.peers.clone());
                    let cancel = self.shared.cancel.clone();
                    self.shared
                        .tasks
                        .spawn(cancel.run_until_cancelled_owned(async move {
                            let lookup = tokio::net::lookup_host((name.as_str(), port));
                            if let Ok(Ok(mut addrs)) =
                                tokio::time::timeout(HOST_LOOKUP_TIMEOUT, lookup).await
                            {
                                if let Some(addr) = addrs.next() {
                                    let _ = peers.send(addr);
                                }
                            }
                        }));
                }
                PeerAddr::Host { .. } => {}
            }
        }
    }

    /// Announces to every tier until `stop` turns true, then sends `stopped`
    /// (and `completed`, if the download finished and no tracker heard it
    /// yet), bounded by [`AnnounceTimeouts::stop`]. Peers learnt go to the
    /// channel given to [`new`](Self::new).
    ///
    /// `tiers` goes through [`TrackerList::new`]: each tier shuffled, blank,
    /// over-long and repeated URLs and empty tiers dropped, at most
    /// [`MAX_TRACKERS`](rivulet_tracker::tiers::MAX_TRACKERS) kept.
    pub async fn run(self, tiers: Vec<Vec<String>>, mut stop: watch::Receiver<bool>) {
        let stop_timeout = self.timeouts.stop;
        let trackers = TrackerList::new(tiers, &mut rand::thread_rng());
        let mut tasks = tokio::task::JoinSet::new();
        // One task per tier: a tier waiting on a dead tracker never holds up
        // the others (the "every tier" of rivulet's policy).
        for (index, tier) in trackers.into_tiers().into_iter().enumerate() {
            tasks.spawn(Tier::new(self.clone(), tier, index).run(stop.clone()));
        }
        wait_stop(&mut stop).await;
        // Each tier task sends its own `stopped` and returns; wait a bounded
        // time, then end whatever is left (and wait for it to be gone).
        let _ = tokio::time::timeout(stop_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.shutdown().await;
    }
}

/// Fail-over within a tier: its trackers one after another, the first that
/// answers ends the round. (Every tier is announced to because each runs in
/// its own [`Tier`] task, so `announce_to_all_tiers` is moot within one.)
const TIER_POLICY: AnnouncePolicy = AnnouncePolicy {
    announce_to_all_tiers: true,
    announce_to_all_trackers: false,
};

/// One tier's announcing, run by its own task: rounds of announces (each
/// ended by the first tracker that answers, or by all failing), waits between
/// them, and the final `stopped`.
struct Tier {
    announcer: Announcer,
    /// This tier's trackers: their order (shuffled once, the one that
    /// answered first) and who failed in the current round.
    trackers: TrackerList,
    outcome: watch::Receiver<Outcome>,
    /// A tracker of this tier answered `started`.
    started: bool,
    /// A tracker of this tier heard `completed`, or the download was complete
    /// from the start (then `completed` is never sent).
    completed_sent: bool,
    /// The `tracker id` last given by a tracker of this tier, sent back.
    tracker_id: Option<String>,
    /// Rounds in a row in which every tracker failed, for the back-off.
    failed_rounds: u32,
    /// Announces asked for ([`crate::session::TorrentHandle::reannounce`]):
    /// one asked while this tier was busy is seen at its next wait.
    reannounce: watch::Receiver<u64>,
    /// Its place among the torrent's tiers, for reports.
    index: usize,
}

impl Tier {
    fn new(announcer: Announcer, trackers: TrackerList, index: usize) -> Self {
        let outcome = announcer.shared.outcome();
        let completed_sent =
            *outcome.borrow() == Outcome::Complete && announcer.shared.is_complete();
        let mut reannounce = announcer.shared.reannounce.subscribe();
        reannounce.mark_unchanged();
        Tier {
            index,
            reannounce,
            announcer,
            trackers,
            outcome,
            started: false,
            completed_sent,
            tracker_id: None,
            failed_rounds: 0,
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let event = self.next_event();
            let answer = self.announce_round(event, &mut stop).await;
            let wait = self.apply(event, answer);
            if is_stopping(&stop) {
                break;
            }
            self.wait_until_due(wait, &mut stop).await;
            if is_stopping(&stop) {
                break;
            }
        }
        self.farewell().await;
    }

    /// Whether every piece is had (`completed` is for that, not for a
    /// selective download being done).
    fn is_complete(&self) -> bool {
        *self.outcome.borrow() == Outcome::Complete && self.announcer.shared.is_complete()
    }

    /// The event of the next round.
    fn next_event(&self) -> Event {
        if !self.started {
            Event::Started
        } else if self.is_complete() && !self.completed_sent {
            Event::Completed
        } else {
            Event::None
        }
    }

    /// One round: the tier's trackers in turn until one answers. `None` when
    /// all failed, or when told to stop first.
    async fn announce_round(
        &mut self,
        event: Event,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<AnnounceResponse> {
        self.trackers.new_round();
        loop {
            // Each pass marks one tracker, so this ends once all have failed.
            let url = self.trackers.targets(TIER_POLICY).first()?.to_string();
            match self.announce_once(&url, event, stop).await? {
                Ok(resp) => {
                    self.record_answer(&url, event, &resp);
                    return Some(resp);
                }
                Err(e) => self.record_failure(&url, event, e),
            }
        }
    }

    /// One announce to `url` (HTTP or UDP); `None` if told to stop first.
    async fn announce_once(
        &self,
        url: &str,
        event: Event,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Result<AnnounceResponse, TrackerError>> {
        if event == Event::Started && is_stopping(stop) {
            // Not sent yet: nothing for the tracker to forget.
            return None;
        }
        let announce = self.announcer.announce(url, event, self.tracker_id.clone());
        tokio::pin!(announce);
        tokio::select! {
            r = &mut announce => Some(r),
            _ = wait_stop(stop) => {
                // A `completed` already on its way is finished (`run` bounds
                // the wait): cancelling it could make us send it again, and
                // the tracker count the download twice. So is a `started`:
                // the tracker may have counted us already, and only its
                // answer lets the `stopped` follow.
                if matches!(event, Event::Completed | Event::Started) {
                    Some(announce.await)
                } else {
                    None
                }
            }
        }
    }

    /// A tracker answered: report it, hand on its peers, and move it to the
    /// front of the tier (BEP 12).
    fn record_answer(&mut self, url: &str, event: Event, resp: &AnnounceResponse) {
        tracing::debug!(%url, ?event, peers = resp.peers.len(), interval = ?resp.interval, "announced");
        self.announcer.shared.stats.tracker_outcome(
            url,
            self.index,
            TrackerStatus::Working {
                peers: resp.peers.len(),
            },
        );
        if let Some(w) = &resp.warning {
            tracing::warn!(%url, warning = %w, "tracker warning");
        }
        self.announcer.deliver(resp);
        self.trackers.mark_success(url);
    }

    /// A tracker failed: report it; the round goes on with the next one.
    fn record_failure(&mut self, url: &str, event: Event, e: TrackerError) {
        tracing::warn!(%url, ?event, error = %e, "announce failed");
        self.announcer
            .shared
            .stats
            .tracker_outcome(url, self.index, TrackerStatus::Failed(e));
        self.trackers.mark_failure(url);
    }

    /// Takes in a round's result; returns how long to wait before the next
    /// round: the tracker's interval, or the back-off after a failed round.
    fn apply(&mut self, event: Event, answer: Option<AnnounceResponse>) -> Duration {
        match answer {
            Some(resp) => {
                self.started = true;
                if event == Event::Completed {
                    self.completed_sent = true;
                }
                self.failed_rounds = 0;
                if resp.tracker_id.is_some() {
                    self.tracker_id = resp.tracker_id;
                }
                resp.interval
            }
            None => {
                self.failed_rounds = self.failed_rounds.saturating_add(1);
                let timeouts = &self.announcer.timeouts;
                let exp = self.failed_rounds.clamp(1, 16) - 1;
                timeouts
                    .retry_base
                    .saturating_mul(1u32 << exp)
                    .min(timeouts.retry_max)
            }
        }
    }

    /// Sleeps for `wait`, but returns as soon as the download finishes (so
    /// `completed` goes out at once), an announce is asked for, or we are
    /// told to stop.
    async fn wait_until_due(&mut self, wait: Duration, stop: &mut watch::Receiver<bool>) {
        let next = tokio::time::Instant::now() + wait;
        let mut outcome_open = true;
        let mut asked_open = true;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => return,
                _ = wait_stop(stop) => return,
                asked = self.reannounce.changed(), if asked_open => {
                    if asked.is_ok() {
                        return;
                    }
                    asked_open = false;
                }
                changed = self.outcome.changed(), if outcome_open => {
                    if changed.is_err() {
                        outcome_open = false;
                    } else if self.started && !self.completed_sent && self.is_complete() {
                        return;
                    }
                }
            }
        }
    }

    /// At exit: `stopped` to the tracker that last answered (the front of the
    /// tier), if the tier's `started` was answered. `run` bounds the wait.
    async fn farewell(self) {
        if !self.started {
            return;
        }
        let Some((_, url)) = self.trackers.order().next() else {
            return;
        };
        // Finished just before exit: the tracker still hears `completed`
        // (once), then `stopped`.
        if !self.completed_sent && self.is_complete() {
            let _ = self
                .announcer
                .announce(url, Event::Completed, self.tracker_id.clone())
                .await;
        }
        match self
            .announcer
            .announce(url, Event::Stopped, self.tracker_id.clone())
            .await
        {
            Ok(_) => tracing::debug!(%url, "announced stopped"),
            Err(e) => tracing::debug!(%url, error = %e, "stopped announce failed"),
        }
    }
}

/// Returns once `stop` turns true or its sender is gone.
async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    // The `Ref` is dropped here, so that callers' futures stay `Send`.
    let _ = stop.wait_for(|s| *s).await;
}

/// Whether the announcer should stop: told so, or whoever could tell it is gone.
fn is_stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Whether `url` is a `udp://` tracker URL.
/// One announce of `req` to the tracker at `url` (`http://`, `https://` or
/// `udp://`), within `timeouts`, whatever the tracker does.
pub(crate) async fn announce_once(
    http: &HttpClient,
    udp: &UdpSockets,
    timeouts: &AnnounceTimeouts,
    url: &str,
    req: AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError> {
    if is_udp(url) {
        let outcome = udp_request(url, udp, timeouts.udp, timeouts.http, |c, now| {
            c.start_announce(req, now)
        })
        .await?;
        match outcome {
            UdpOutcome::Announce(resp) => Ok(resp),
            UdpOutcome::Scrape(_) => Err(TrackerError::Transport(
                "UDP tracker answered a scrape to an announce".into(),
            )),
        }
    } else {
        let full = announce_url(url, &req)?;
        let body = http_get(http.get()?, &full, timeouts.http).await?;
        parse_announce_response(&body)
    }
}

pub(crate) fn is_udp(url: &str) -> bool {
    url.get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("udp://"))
}

/// A reqwest error with its causes ("error sending request: ... : Connection
/// refused"), without the URL (which holds our peer id and is long).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// GETs `url` and returns its body, read up to `MAX_RESPONSE_LEN` bytes, all
/// within `timeout`. A non-2xx status is an error, unless its body carries a
/// bencoded `failure reason`, which is returned instead.
pub(crate) async fn http_get(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, TrackerError> {
    match tokio::time::timeout(timeout, http_get_unbounded(client, url)).await {
        Ok(r) => r,
        Err(_) => Err(TrackerError::Transport(format!(
            "no answer within {:.1} s",
            timeout.as_secs_f64()
        ))),
    }
}

/// A connection that could not be made, as "cannot connect: connection
/// refused" (the reason from the I/O error beneath), rather than reqwest's
/// and hyper's layers of context; `None` for other errors.
fn connect_failure(e: &reqwest::Error) -> Option<String> {
    if !e.is_connect() {
        return None;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(format!("cannot connect: {}", io_reason(io)));
        }
        source = cause.source();
    }
    None
}

async fn http_get_unbounded(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, TrackerError> {
    let transport =
        |what: &str, e: reqwest::Error| TrackerError::Transport(format!("{what}: {}", describe(e)));
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| match connect_failure(&e) {
            Some(why) => TrackerError::Transport(why),
            None => transport("HTTP request failed", e),
        })?;
    let status = resp.status();
    let limit = if status.is_success() {
        MAX_RESPONSE_LEN
    } else {
        ERROR_BODY_LEN
    };
    // Never buffer more than `limit`: a tracker cannot make us hold more.
    let mut body = Vec::new();
    // Bytes received when the limit was crossed.
    let mut too_large = None;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) if status.is_success() => return Err(transport("reading the answer failed", e)),
            Err(_) => break,
        };
        if body.len() + chunk.len() > limit {
            too_large = Some(body.len() + chunk.len());
            break;
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        if let Err(e @ TrackerError::Failure { .. }) = parse_announce_response(&body) {
            return Err(e);
        }
        return Err(TrackerError::Transport(format!(
            "tracker answered HTTP {status}"
        )));
    }
    if let Some(len) = too_large {
        // `len` is what had arrived when reading stopped; the tracker may
        // have had more to send.
        return Err(TrackerError::ResponseTooLarge { len, limit });
    }
    Ok(body)
}

/// Makes the UDP state machine, whose schedule is BEP 15's `15 · 2^n` s, run
/// on [`UdpTiming::first_timeout`] instead: it is given a clock that goes
/// `15 s / first_timeout` times as fast as tokio's. With the default timing
/// the factor is 1 and the clock is tokio's own (which tests may pause).
struct UdpClock {
    origin: tokio::time::Instant,
    virtual_origin: std::time::Instant,
    factor: f64,
}

impl UdpClock {
    fn new(first_timeout: Duration) -> Self {
        let first = first_timeout.clamp(Duration::from_millis(1), Duration::from_secs(3600));
        let origin = tokio::time::Instant::now();
        UdpClock {
            origin,
            virtual_origin: origin.into_std(),
            factor: BASE_TIMEOUT.as_secs_f64() / first.as_secs_f64(),
        }
    }

    fn scale(d: Duration, factor: f64) -> Duration {
        Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }

    /// The state machine's `now`.
    fn now(&self) -> std::time::Instant {
        let elapsed = Self::scale(self.origin.elapsed(), self.factor);
        self.virtual_origin
            .checked_add(elapsed)
            .unwrap_or(self.virtual_origin)
    }

    /// The real instant of a state-machine instant.
    fn real(&self, t: std::time::Instant) -> tokio::time::Instant {
        let d = Self::scale(
            t.saturating_duration_since(self.virtual_origin),
            1.0 / self.factor,
        );
        self.origin
            .checked_add(d)
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400))
    }
}

/// Resolves a UDP tracker's host (within `dns_timeout`), starts one request
/// with `start` on a fresh [`UdpTrackerClient`] that talks through
/// `sockets`, and drives it to its end: the answer, the tracker's error, or
/// [`TrackerError::Timeout`] once the retransmissions of `timing` are spent.
/// Packets from elsewhere, with unknown transaction ids or that do not decode
/// are ignored.
pub(crate) async fn udp_request(
    url: &str,
    sockets: &UdpSockets,
    timing: UdpTiming,
    dns_timeout: Duration,
    start: impl FnOnce(&mut UdpTrackerClient, std::time::Instant) -> Result<RequestId, TrackerError>,
) -> Result<UdpOutcome, TrackerError> {
    let parsed = UdpTrackerUrl::parse(url)?;
    let addr = resolve(&parsed.host, parsed.port, dns_timeout).await?;
    let socket = sockets
        .register(addr)
        .await
        .map_err(|e| TrackerError::Transport(format!("cannot open a UDP socket: {e}")))?;
    let mut config = UdpClientConfig::new(AddressFamily::of(&addr));
    config.max_retries = timing.retries;
    config.announce_options.url_data =
        (!parsed.url_data.is_empty()).then(|| parsed.url_data.clone().into_bytes());
    let mut client = UdpTrackerClient::new(config);
    let clock = UdpClock::new(timing.first_timeout);
    let id = start(&mut client, clock.now())?;
    drive(url, client, id, socket, &clock).await
}

/// The first address of `host`, within `timeout`.
async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<SocketAddr, TrackerError> {
    let lookup = tokio::net::lookup_host((host, port));
    tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| TrackerError::Transport(format!("resolving {host} timed out")))?
        .map_err(|e| TrackerError::Transport(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| TrackerError::Transport(format!("{host} does not resolve")))
}

/// Runs `client` until request `id` ends: sends what it has to send, feeds
/// it the tracker's datagrams and its timeouts.
async fn drive(
    url: &str,
    mut client: UdpTrackerClient,
    id: RequestId,
    mut socket: Registration,
    clock: &UdpClock,
) -> Result<UdpOutcome, TrackerError> {
    // Whether the shared socket still delivers datagrams; if its receive
    // task ended, the request runs out its schedule as if unanswered.
    let mut receiving = true;
    loop {
        let now = clock.now();
        while let Some(packet) = client.poll_transmit(now) {
            // A failed send (ICMP error pending, no route) is like a lost
            // packet: the schedule retransmits it.
            if let Err(e) = socket.send(&packet).await {
                tracing::debug!(%url, error = %e, "UDP send failed");
            }
        }
        while let Some(event) = client.poll_event() {
            if event.id == id {
                return event.result;
            }
        }
        let Some(deadline) = client.poll_timeout() else {
            // Unreachable: a request in flight always has a deadline.
            return Err(TrackerError::Transport("UDP request lost".into()));
        };
        tokio::select! {
            packet = socket.packets.recv(), if receiving => {
                match packet {
                    Some(bytes) => {
                        // Datagrams of other requests to this tracker are
                        // ignored here: their transaction ids are not ours.
                        let outcome = client.handle_packet(&bytes, clock.now());
                        tracing::trace!(%url, ?outcome, "UDP tracker packet");
                    }
                    None => receiving = false,
                }
            }
            _ = tokio::time::sleep_until(clock.real(deadline)) => {
                // The timer fired, so the deadline has passed, whatever
                // rounding in the clock conversion says.
                client.handle_timeout(clock.now().max(deadline));
            }
        }
    }
}
