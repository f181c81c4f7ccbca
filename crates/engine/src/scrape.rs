//! Scraping trackers: swarm counts (seeders, leechers, completed downloads)
//! for torrents, over HTTP (BEP 48) and UDP (BEP 15).
//!
//! [`scrape`] asks one tracker; [`Scraper::scrape_all`] asks every tracker of
//! a torrent at once, each within its own timeout, which is what `rivulet info
//! --scrape` shows. An HTTP tracker can only be scraped when its announce URL
//! follows BEP 48's convention (the last path component starts with
//! `announce`, which becomes `scrape`); [`supports_scrape`] says whether it
//! does. Answers are bounded like announce answers (`rivulet-tracker`), and
//! HTTP bodies are read up to the same 4 MiB.

use std::time::Duration;

use rivulet_core::InfoHash;
use rivulet_tracker::{parse_scrape_response, scrape_base, scrape_url, udp::UdpOutcome};
pub use rivulet_tracker::{ScrapeResponse, ScrapeStats, TrackerError};

use crate::announce::{http_client, http_get, is_udp, udp_request, UdpTiming};
use crate::udp_socket::UdpSockets;

/// Most trackers [`Scraper::scrape_all`] asks (the same cap as
/// `rivulet_tracker::tiers::MAX_TRACKERS`); the others are not asked.
pub const MAX_SCRAPED_TRACKERS: usize = 200;

/// How long a scrape may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeOptions {
    /// One tracker, start to end: name resolution, connect, redirects, the
    /// whole answer, UDP retransmissions.
    pub timeout: Duration,
    /// UDP retransmissions within `timeout`.
    pub udp: UdpTiming,
}

impl Default for ScrapeOptions {
    /// 10 s per tracker; a UDP request is sent again after 3 s and 9 s.
    fn default() -> Self {
        ScrapeOptions {
            timeout: Duration::from_secs(10),
            udp: UdpTiming {
                first_timeout: Duration::from_secs(3),
                retries: 2,
            },
        }
    }
}

/// Whether the tracker at `announce_url` can be scraped: every `udp://`
/// tracker, and `http(s)://` trackers whose announce URL follows BEP 48's
/// convention.
pub fn supports_scrape(announce_url: &str) -> bool {
    is_udp(announce_url) || scrape_base(announce_url).is_some()
}

/// Asks the tracker at `announce_url` for the counts of `info_hashes`, with
/// the default [`ScrapeOptions`]. Info-hashes the tracker does not know are
/// absent from the answer (HTTP) or zeros (UDP, which cannot say).
///
/// Errors: [`TrackerError::InvalidUrl`] for an HTTP tracker without a scrape
/// convention (see [`supports_scrape`]), [`TrackerError::Transport`] when it
/// cannot be reached or does not answer in time, and whatever its answer is
/// wrong with.
pub async fn scrape(
    announce_url: &str,
    info_hashes: &[InfoHash],
) -> Result<ScrapeResponse, TrackerError> {
    Scraper::new(ScrapeOptions::default())?
        .scrape(announce_url, info_hashes)
        .await
}

/// What one tracker said about one torrent, from [`Scraper::scrape_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrapeOutcome {
    /// The counts.
    Stats(ScrapeStats),
    /// The tracker answered, without an entry for the torrent (it does not
    /// track it).
    NotTracked,
    /// The tracker cannot be scraped: an HTTP announce URL whose last path
    /// component does not start with `announce` (BEP 48).
    Unsupported,
    /// The scrape failed: unreachable, no answer in time, or a bad answer.
    Failed(TrackerError),
}

/// One tracker's line in [`Scraper::scrape_all`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerScrape {
    /// The tier it belongs to, from 0.
    pub tier: usize,
    /// Its announce URL.
    pub url: String,
    /// What it said.
    pub outcome: ScrapeOutcome,
}

/// Scrapes trackers with one HTTP client and one set of [`ScrapeOptions`].
#[derive(Debug, Clone)]
pub struct Scraper {
    http: reqwest::Client,
    options: ScrapeOptions,
}

impl Scraper {
    /// A scraper with these options.
    pub fn new(options: ScrapeOptions) -> Result<Self, TrackerError> {
        Ok(Scraper {
            http: http_client(None).map_err(|e| TrackerError::Transport(e.to_string()))?,
            options,
        })
    }

    /// Asks the tracker at `announce_url` for the counts of `info_hashes`
    /// (1 to 74 of them over UDP), within [`ScrapeOptions::timeout`]. See
    /// [`scrape`].
    pub async fn scrape(
        &self,
        announce_url: &str,
        info_hashes: &[InfoHash],
    ) -> Result<ScrapeResponse, TrackerError> {
        if info_hashes.is_empty() {
            return Err(TrackerError::NoInfoHashes);
        }
        let timeout = self.options.timeout;
        if is_udp(announce_url) {
            // A socket for this scrape alone: a `Scraper` holds no socket
            // or task, so it can be made outside a runtime and used on any.
            let sockets = UdpSockets::new(None);
            let request = udp_request(
                announce_url,
                &sockets,
                self.options.udp,
                timeout,
                |c, now| c.start_scrape(info_hashes, now),
            );
            let outcome = tokio::time::timeout(timeout, request)
                .await
                .map_err(|_| no_answer(timeout))??;
            match outcome {
                UdpOutcome::Scrape(resp) => Ok(resp),
                UdpOutcome::Announce(_) => Err(TrackerError::Transport(
                    "UDP tracker answered an announce to a scrape".into(),
                )),
            }
        } else {
            let url = scrape_url(announce_url, info_hashes).ok_or_else(|| {
                TrackerError::InvalidUrl {
                    url: announce_url.chars().take(200).collect(),
                    reason: "no scrape URL: the last path component does not start with \"announce\" (BEP 48)",
                }
            })?;
            let body = http_get(&self.http, &url, timeout).await?;
            parse_scrape_response(&body, info_hashes)
        }
    }

    /// Scrapes `info_hash` at every tracker of every tier, all at once, each
    /// within [`ScrapeOptions::timeout`], so the whole takes about that long
    /// at most. Answers come in tier order; a URL listed twice is asked once;
    /// trackers beyond the first [`MAX_SCRAPED_TRACKERS`] are left out.
    pub async fn scrape_all(
        &self,
        tiers: &[Vec<String>],
        info_hash: InfoHash,
    ) -> Vec<TrackerScrape> {
        let mut seen = std::collections::HashSet::new();
        let trackers: Vec<(usize, String)> = tiers
            .iter()
            .enumerate()
            .flat_map(|(t, urls)| urls.iter().map(move |u| (t, u.clone())))
            .filter(|(_, u)| seen.insert(u.clone()))
            .take(MAX_SCRAPED_TRACKERS)
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (_, url)) in trackers.iter().enumerate() {
            let me = self.clone();
            let url = url.clone();
            tasks.spawn(async move {
                let outcome = if !supports_scrape(&url) {
                    ScrapeOutcome::Unsupported
                } else {
                    match me.scrape(&url, &[info_hash]).await {
                        Ok(resp) => match resp.get(&info_hash) {
                            Some(stats) => ScrapeOutcome::Stats(stats),
                            None => ScrapeOutcome::NotTracked,
                        },
                        Err(e) => ScrapeOutcome::Failed(e),
                    }
                };
                (i, outcome)
            });
        }
        let mut outcomes: Vec<Option<ScrapeOutcome>> = vec![None; trackers.len()];
        // Every task ends within the timeout; the outer bound is a safety net
        // (a stuck name lookup, say).
        let deadline = self.options.timeout + Duration::from_secs(2);
        let _ = tokio::time::timeout(deadline, async {
            while let Some(done) = tasks.join_next().await {
                if let Ok((i, outcome)) = done {
                    if let Some(slot) = outcomes.get_mut(i) {
                        *slot = Some(outcome);
                    }
                }
            }
        })
        .await;
        trackers
            .into_iter()
            .zip(outcomes)
            .map(|((tier, url), outcome)| TrackerScrape {
                tier,
                url,
                outcome: outcome.unwrap_or(ScrapeOutcome::Failed(no_answer(deadline))),
            })
            .collect()
    }
}

fn no_answer(timeout: Duration) -> TrackerError {
    TrackerError::Transport(format!("no answer within {:.1} s", timeout.as_secs_f64()))
}
