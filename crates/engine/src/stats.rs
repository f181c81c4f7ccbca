//! Counters and reports that displays read at any time without taking the
//! torrent's lock: bytes, pieces, peers, hash failures, each tracker's last
//! announce outcome and the last failed outgoing connection.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// The span over which [`Stats::rates`] are measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Counters that are cheap to read at any time (for progress displays).
#[derive(Debug, Default)]
pub struct Stats {
    /// Payload bytes received that we needed.
    pub downloaded: AtomicU64,
    /// Payload bytes received that we did not need (duplicates, bad pieces).
    pub wasted: AtomicU64,
    /// Payload bytes sent.
    pub uploaded: AtomicU64,
    /// Bytes of verified pieces.
    pub verified_bytes: AtomicU64,
    /// Verified pieces.
    pub pieces_done: AtomicU64,
    /// Bytes of the pieces wanted (of files not skipped).
    pub wanted_bytes: AtomicU64,
    /// Bytes of the pieces wanted and not yet verified: 0 when the
    /// download is done.
    pub wanted_left: AtomicU64,
    /// Pieces that failed their hash check.
    pub hash_failures: AtomicU64,
    /// Peers connected (handshake done).
    pub peers_connected: AtomicUsize,
    /// Peers known (connected or not).
    pub peers_known: AtomicUsize,
    /// Peers banned for sending bad data.
    pub peers_banned: AtomicUsize,
    /// Peers connected to us (their connection, through the listener).
    pub peers_incoming: AtomicUsize,
    /// Peers unchoked and interested: the ones we are serving now.
    pub peers_serving: AtomicUsize,
    /// Connections that received at least one block from us.
    pub peers_served_total: AtomicUsize,
    /// Outgoing connections that ended before their handshake completed
    /// (refused, unreachable, timed out, closed, wrong torrent).
    pub connect_failures: AtomicU64,
    /// The latest of those; see [`Stats::last_connect_failure`].
    last_connect_failure: Mutex<Option<PeerFailure>>,
    /// Each tracker's last announce outcome, by URL; see
    /// [`Stats::trackers`].
    trackers: Mutex<BTreeMap<String, (usize, TrackerStatus, std::time::SystemTime)>>,
    /// Samples of (`downloaded`, `uploaded`) for the rates.
    rates: Mutex<Rates>,
}

/// (when, downloaded, uploaded) samples, oldest first, spanning at most
/// [`RATE_WINDOW`] plus one sample before it.
#[derive(Debug, Default)]
struct Rates {
    samples: VecDeque<(Instant, u64, u64)>,
    /// Bytes per second down and up over the window, at the last sample.
    now: (f64, f64),
}

/// Why an outgoing connection to a peer failed: what a display shows when
/// no peer is connected, instead of a count that never moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFailure {
    /// The peer's address.
    pub addr: SocketAddr,
    /// What went wrong, in a few lower-case words ("connection refused").
    pub reason: String,
}

/// The outcome of the last announce to one tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerStatus {
    /// It answered, with this many peers.
    Working {
        /// Peers in its answer.
        peers: usize,
    },
    /// It failed with this error.
    Failed(rivulet_tracker::TrackerError),
}

/// A tracker's last announce.
#[derive(Debug, Clone)]
pub struct TrackerReport {
    /// Its announce URL.
    pub url: String,
    /// Its tier (BEP 12), from 0, among the torrent's tiers that have a
    /// usable URL.
    pub tier: usize,
    /// How it went.
    pub status: TrackerStatus,
    /// When.
    pub at: std::time::SystemTime,
}

impl Stats {
    /// Publishes what `picker` says of the bytes wanted.
    pub(crate) fn publish_wanted(&self, picker: &crate::picker::PiecePicker) {
        let (wanted, left) = picker.wanted_bytes();
        self.wanted_bytes.store(wanted, Ordering::Relaxed);
        self.wanted_left.store(left, Ordering::Relaxed);
    }

    /// Records an outgoing connection that failed before its handshake.
    pub(crate) fn connect_failed(&self, addr: SocketAddr, reason: String) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        *lock_or_recover(&self.last_connect_failure) = Some(PeerFailure { addr, reason });
    }

    /// The latest outgoing connection that failed before its handshake, if
    /// any did.
    pub fn last_connect_failure(&self) -> Option<PeerFailure> {
        lock_or_recover(&self.last_connect_failure).clone()
    }

    /// Records the outcome of an announce to `url`.
    pub(crate) fn tracker_outcome(&self, url: &str, tier: usize, status: TrackerStatus) {
        lock_or_recover(&self.trackers)
            .insert(url.to_owned(), (tier, status, std::time::SystemTime::now()));
    }

    /// Takes a sample of the byte counters at `now` for [`Stats::rates`]
    /// (the torrent's run does, every second).
    pub(crate) fn sample_rates(&self, now: Instant) {
        let (down, up) = (
            self.downloaded.load(Ordering::Relaxed),
            self.uploaded.load(Ordering::Relaxed),
        );
        let mut r = lock_or_recover(&self.rates);
        r.samples.push_back((now, down, up));
        while r
            .samples
            .get(1)
            .is_some_and(|(t, _, _)| now.duration_since(*t) >= RATE_WINDOW)
        {
            r.samples.pop_front();
        }
        r.now = match r.samples.front() {
            Some(&(t0, d0, u0)) if now > t0 => {
                let dt = now.duration_since(t0).as_secs_f64();
                (
                    down.saturating_sub(d0) as f64 / dt,
                    up.saturating_sub(u0) as f64 / dt,
                )
            }
            _ => (0.0, 0.0),
        };
    }

    /// Forgets the samples (a run ended: its rates are 0).
    pub(crate) fn reset_rates(&self) {
        *lock_or_recover(&self.rates) = Rates::default();
    }

    /// Bytes per second received (that we needed) and sent over the last
    /// [`RATE_WINDOW`], as of the last sample.
    pub fn rates(&self) -> (f64, f64) {
        lock_or_recover(&self.rates).now
    }

    /// Each tracker announced to so far with its last outcome, by URL.
    pub fn trackers(&self) -> Vec<(String, TrackerStatus)> {
        lock_or_recover(&self.trackers)
            .iter()
            .map(|(u, (_, s, _))| (u.clone(), s.clone()))
            .collect()
    }

    /// Every tracker's last announce with its tier and when, by tier then
    /// URL.
    pub fn tracker_reports(&self) -> Vec<TrackerReport> {
        let mut out: Vec<TrackerReport> = lock_or_recover(&self.trackers)
            .iter()
            .map(|(u, (tier, s, at))| TrackerReport {
                url: u.clone(),
                tier: *tier,
                status: s.clone(),
                at: *at,
            })
            .collect();
        out.sort_by(|a, b| (a.tier, &a.url).cmp(&(b.tier, &b.url)));
        out
    }
}

/// Locks `m`, carrying on with its contents if a holder panicked: these are
/// reports, and a stale one is better than none.
fn lock_or_recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An I/O error in a few lower-case words: "Connection refused (os error
/// 111)" becomes "connection refused", for status lines.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) if text.ends_with(')') => text.get(..i).unwrap_or(&text).to_owned(),
        _ => text,
    };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        // Lower-case a capital that starts a sentence, not an acronym ("TLS").
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => {
            first.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reasons_are_short() {
        let refused = std::io::Error::from_raw_os_error(111);
        if refused.kind() == std::io::ErrorKind::ConnectionRefused {
            // Linux's text for ECONNREFUSED.
            assert_eq!(io_reason(&refused), "connection refused");
        }
        let custom = std::io::Error::other("bound to an address of the other family");
        assert_eq!(
            io_reason(&custom),
            "bound to an address of the other family"
        );
        let acronym = std::io::Error::other("TLS handshake failed");
        assert_eq!(io_reason(&acronym), "TLS handshake failed");
    }

    #[test]
    fn rates_cover_the_last_five_seconds() {
        let stats = Stats::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        stats.sample_rates(at(0));
        assert_eq!(stats.rates(), (0.0, 0.0));
        stats.downloaded.store(1000, Ordering::Relaxed);
        stats.uploaded.store(500, Ordering::Relaxed);
        stats.sample_rates(at(1000));
        assert_eq!(stats.rates(), (1000.0, 500.0));
        stats.downloaded.store(3000, Ordering::Relaxed);
        stats.sample_rates(at(2000));
        assert_eq!(stats.rates(), (1500.0, 250.0));
        // Nothing more moves: once the window holds no byte, the rates are 0.
        stats.sample_rates(at(8000));
        assert_eq!(stats.rates(), (0.0, 0.0));
        stats.reset_rates();
        assert_eq!(stats.rates(), (0.0, 0.0));
    }

    #[test]
    fn stats_keep_the_last_problems() {
        let stats = Stats::default();
        assert_eq!(stats.last_connect_failure(), None);
        let a: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:1".parse().unwrap();
        stats.connect_failed(a, "connection refused".into());
        stats.connect_failed(b, "no answer (timed out)".into());
        assert_eq!(stats.connect_failures.load(Ordering::Relaxed), 2);
        assert_eq!(
            stats.last_connect_failure(),
            Some(PeerFailure {
                addr: b,
                reason: "no answer (timed out)".into()
            })
        );
        stats.tracker_outcome(
            "http://t/announce",
            0,
            TrackerStatus::Failed(rivulet_tracker::TrackerError::EmptyBody),
        );
        stats.tracker_outcome("http://t/announce", 0, TrackerStatus::Working { peers: 2 });
        assert_eq!(
            stats.trackers(),
            [(
                "http://t/announce".to_owned(),
                TrackerStatus::Working { peers: 2 }
            )]
        );
    }
}
