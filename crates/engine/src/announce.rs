//! Announcing to trackers (HTTP and UDP) for one torrent, on top of the sans-IO
//! `rivulet-tracker` crate.
//!
//! Policy (`AnnouncePolicy::default()`, documented in `rivulet-tracker`): every
//! tier is announced to, each through its first working tracker; a tracker that
//! fails hands over to the next in its tier. Tiers run independently, so one
//! dead tracker never holds up the others, and UDP trackers get only two
//! retransmissions (15 s + 30 s) before the next tracker is tried.
//!
//! Stats are honest: `downloaded` is verified payload since `started`,
//! `uploaded` what we served, `left` what is still missing; `completed` is sent
//! once, when the download finishes; `stopped` on exit within a bounded wait.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rivulet_tracker::udp::{
    AddressFamily, UdpClientConfig, UdpOutcome, UdpTrackerClient, UdpTrackerUrl,
};
use rivulet_tracker::{
    announce_url, parse_announce_response, AnnounceRequest, AnnounceResponse, Event, PeerAddr,
    TrackerError, MAX_RESPONSE_LEN,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::torrent::{Outcome, Shared};

/// How long one HTTP announce may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// UDP retransmissions before giving up on a tracker for this round.
const UDP_RETRIES: u32 = 2;
/// Wait before retrying a tier whose trackers all failed, doubled each time.
const RETRY_BASE: Duration = Duration::from_secs(15);
/// Longest wait between retries of a failing tier.
const RETRY_MAX: Duration = Duration::from_secs(30 * 60);
/// Longest time `stopped` announces may delay exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything an announce needs that does not change between announces.
#[derive(Clone)]
pub struct Announcer {
    shared: Arc<Shared>,
    http: reqwest::Client,
    port: u16,
    key: u32,
    peers: mpsc::UnboundedSender<SocketAddr>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("port", &self.port)
            .finish()
    }
}

impl Announcer {
    /// An announcer for `shared`'s torrent that reports listening on `port` and
    /// hands the peers it learns to `peers`.
    pub fn new(
        shared: Arc<Shared>,
        port: u16,
        peers: mpsc::UnboundedSender<SocketAddr>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(format!("rivulet/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot create HTTP client: {e}"))?;
        Ok(Announcer {
            shared,
            http,
            port,
            key: rand::thread_rng().gen(),
            peers,
        })
    }

    fn request(&self, event: Event, tracker_id: Option<String>) -> AnnounceRequest {
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
        }
    }

    /// One announce to one tracker.
    pub async fn announce(
        &self,
        url: &str,
        event: Event,
        tracker_id: Option<String>,
    ) -> Result<AnnounceResponse, TrackerError> {
        let req = self.request(event, tracker_id);
        if url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("udp://"))
        {
            udp_announce(url, req).await
        } else {
            self.http_announce(url, &req).await
        }
    }

    async fn http_announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
    ) -> Result<AnnounceResponse, TrackerError> {
        let full = announce_url(url, req)?;
        let io = |e: String| TrackerError::Transport(e);
        let mut resp = self
            .http
            .get(&full)
            .send()
            .await
            .map_err(|e| io(format!("HTTP request failed: {e}")))?;
        if !resp.status().is_success() {
            return Err(io(format!("tracker answered HTTP {}", resp.status())));
        }
        // Read at most MAX_RESPONSE_LEN: a tracker cannot make us buffer more.
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| io(format!("reading the answer failed: {e}")))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_LEN {
                return Err(io("tracker answer too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        parse_announce_response(&body)
    }

    fn deliver(&self, resp: &AnnounceResponse) {
        for p in &resp.peers {
            if let PeerAddr::Ip(addr) = p.addr {
                let _ = self.peers.send(addr);
            }
        }
    }

    /// Announces to every tier until the download ends, then sends `stopped`
    /// (bounded by [`STOP_TIMEOUT`]). `stop` turning true ends it early.
    pub async fn run(self, tiers: Vec<Vec<String>>, mut stop: watch::Receiver<bool>) {
        let mut tasks = Vec::new();
        for tier in tiers.into_iter().filter(|t| !t.is_empty()) {
            let me = self.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move { me.run_tier(tier, stop).await }));
        }
        let _ = stop.wait_for(|s| *s).await;
        // Each tier task sends its own `stopped` and returns; wait a bounded time.
        let _ = tokio::time::timeout(STOP_TIMEOUT, async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
    }

    async fn run_tier(self, mut tier: Vec<String>, mut stop: watch::Receiver<bool>) {
        {
            // Shuffled within the tier (BEP 12).
            let mut rng = rand::thread_rng();
            for i in (1..tier.len()).rev() {
                tier.swap(i, rng.gen_range(0..=i));
            }
        }
        let mut outcome = self.shared.outcome();
        let mut started = false;
        let mut completed_sent = *outcome.borrow() == Outcome::Complete;
        let mut tracker_id: Option<String> = None;
        let mut failures = 0u32;
        loop {
            let complete_now = *outcome.borrow() == Outcome::Complete;
            let event = if !started {
                Event::Started
            } else if complete_now && !completed_sent {
                Event::Completed
            } else {
                Event::None
            };
            let mut answered = None;
            for i in 0..tier.len() {
                let Some(url) = tier.get(i).cloned() else {
                    break;
                };
                let result = tokio::select! {
                    r = self.announce(&url, event, tracker_id.clone()) => r,
                    _ = stop.wait_for(|s| *s) => break,
                };
                match result {
                    Ok(resp) => {
                        tracing::debug!(%url, peers = resp.peers.len(), interval = ?resp.interval, "announced");
                        if let Some(w) = &resp.warning {
                            tracing::warn!(%url, warning = %w, "tracker warning");
                        }
                        self.deliver(&resp);
                        // A tracker that answered moves to the front of its tier.
                        let u = tier.remove(i);
                        tier.insert(0, u);
                        answered = Some(resp);
                        break;
                    }
                    Err(e) => tracing::warn!(%url, error = %e, "announce failed"),
                }
            }
            if *stop.borrow() {
                break;
            }
            let wait = match answered {
                Some(resp) => {
                    started = true;
                    if event == Event::Completed {
                        completed_sent = true;
                    }
                    failures = 0;
                    if resp.tracker_id.is_some() {
                        tracker_id = resp.tracker_id;
                    }
                    resp.interval
                }
                None => {
                    failures += 1;
                    (RETRY_BASE * 2u32.saturating_pow(failures.min(10) - 1)).min(RETRY_MAX)
                }
            };
            let next = tokio::time::Instant::now() + wait;
            // Sleep until the interval is up, but announce `completed` as soon
            // as the download finishes.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break,
                    _ = stop.wait_for(|s| *s) => break,
                    changed = outcome.changed() => {
                        if changed.is_err() || (started && !completed_sent && *outcome.borrow() == Outcome::Complete) {
                            break;
                        }
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        if started {
            if let Some(url) = tier.first() {
                // Finished just before exit: the tracker still hears `completed`
                // (once), then `stopped`. `run` bounds the total wait.
                if !completed_sent && *outcome.borrow() == Outcome::Complete {
                    let _ = self
                        .announce(url, Event::Completed, tracker_id.clone())
                        .await;
                }
                let _ = self.announce(url, Event::Stopped, tracker_id).await;
            }
        }
    }
}

async fn udp_announce(url: &str, req: AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
    let parsed = UdpTrackerUrl::parse(url)?;
    let io = |e: std::io::Error| TrackerError::Transport(e.to_string());
    let addr = tokio::net::lookup_host((parsed.host.as_str(), parsed.port))
        .await
        .map_err(io)?
        .next()
        .ok_or_else(|| TrackerError::Transport(format!("{} does not resolve", parsed.host)))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| TrackerError::Transport("bind".into()))?
    } else {
        "[::]:0"
            .parse()
            .map_err(|_| TrackerError::Transport("bind".into()))?
    };
    let socket = UdpSocket::bind(bind).await.map_err(io)?;
    socket.connect(addr).await.map_err(io)?;
    let mut config = UdpClientConfig::new(AddressFamily::of(&addr));
    config.max_retries = UDP_RETRIES;
    config.announce_options.url_data =
        (!parsed.url_data.is_empty()).then(|| parsed.url_data.clone().into_bytes());
    let mut client = UdpTrackerClient::new(config);
    let id = client.start_announce(req, std::time::Instant::now())?;
    let mut buf = vec![0u8; 65536];
    loop {
        let now = std::time::Instant::now();
        while let Some(packet) = client.poll_transmit(now) {
            socket.send(&packet).await.map_err(io)?;
        }
        while let Some(event) = client.poll_event() {
            if event.id == id {
                return match event.result? {
                    UdpOutcome::Announce(resp) => Ok(resp),
                    UdpOutcome::Scrape(_) => {
                        Err(TrackerError::Transport("unexpected scrape answer".into()))
                    }
                };
            }
        }
        let deadline = client
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(60));
        tokio::select! {
            r = socket.recv(&mut buf) => {
                // ICMP "port unreachable" surfaces as an error here: retry
                // on the schedule rather than failing at once.
                if let Ok(n) = r {
                    if let Some(bytes) = buf.get(..n) {
                        client.handle_packet(bytes, std::time::Instant::now());
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => client.handle_timeout(std::time::Instant::now()),
        }
    }
}
