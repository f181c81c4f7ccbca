//! Tracker clients for rivulet: HTTP (BEP 3, 7, 23, 48) and UDP (BEP 15)
//! announces and scrapes, and BEP 12 tracker tiers.
//!
//! # Sans-IO
//!
//! This crate never opens a socket, never resolves a name and never reads the
//! clock. It is the protocol core; thin drivers in the engine add tokio, an HTTP
//! client and DNS on top:
//!
//! * **HTTP** ([`http`]): [`announce_url`] and [`scrape_url`] build the GET URL;
//!   the driver fetches it (stopping at [`MAX_RESPONSE_LEN`] bytes) and passes
//!   the body to [`parse_announce_response`] or [`parse_scrape_response`].
//! * **UDP** ([`udp`]): [`udp::encode_connect`], [`udp::encode_announce`],
//!   [`udp::encode_scrape`] and [`udp::decode_response`] are the packet codec;
//!   [`udp::UdpTrackerClient`] is the per-tracker state machine (connection
//!   ids, transaction ids, the `15 · 2^n` s retransmission schedule). It takes
//!   inputs with a `now: Instant` and answers with packets to send
//!   (`poll_transmit`), finished requests (`poll_event`) and when to wake up
//!   (`poll_timeout`), in the style of quinn-proto. Tests drive it with a fake
//!   clock, and fuzzers feed it arbitrary packets.
//! * **Tiers** ([`tiers`]): [`TrackerList`] orders a torrent's trackers per BEP
//!   12 and says which to announce to under an [`AnnouncePolicy`].
//!
//! Both transports produce the same [`AnnounceResponse`] and [`ScrapeResponse`].
//!
//! # Tier policy
//!
//! By default rivulet announces to the first working tracker of **every** tier
//! (`announce_to_all_tiers = true`, `announce_to_all_trackers = false`), like
//! qBittorrent and uTorrent, rather than libtorrent's strict BEP 12 default
//! (stop at the first tier that works): public torrents usually list unrelated
//! trackers one per tier, and each of them knows other peers. Within a tier,
//! trackers are tried one after another. See [`tiers`] for the full reasoning;
//! [`AnnouncePolicy::BEP12`] gives the strict behaviour.
//!
//! # Bounds
//!
//! Everything a tracker sends is bounded: response bodies
//! ([`MAX_RESPONSE_LEN`]), bencode depth and size, peers per response
//! ([`MAX_PEERS_PER_RESPONSE`]), announce intervals
//! ([`MIN_ANNOUNCE_INTERVAL`]`..=`[`MAX_ANNOUNCE_INTERVAL`]), message lengths
//! ([`MAX_MESSAGE_CHARS`], control characters removed), UDP datagrams, requests
//! in flight per UDP tracker. No input makes a decoder panic; the fuzz targets
//! `udp_tracker` and `http_announce` check that.
//!
//! ```
//! use rivulet_tracker::parse_announce_response;
//!
//! // interval 10 s is raised to the 60 s floor; the port-0 peer is dropped.
//! let body = b"d8:intervali10e5:peers12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x00e";
//! let r = parse_announce_response(body).unwrap();
//! assert_eq!(r.interval.as_secs(), 60);
//! assert_eq!(r.peers.len(), 1);
//! assert_eq!(r.skipped_peers, 1);
//! ```
#![warn(clippy::indexing_slicing)]

mod announce;
mod error;
pub mod http;
pub mod tiers;
pub mod udp;

pub use announce::{
    AnnounceRequest, AnnounceResponse, Crypto, Event, Peer, PeerAddr, ScrapeResponse, ScrapeStats,
    DEFAULT_ANNOUNCE_INTERVAL, MAX_ANNOUNCE_INTERVAL, MAX_HOSTNAME_LEN, MAX_MESSAGE_CHARS,
    MAX_PEERS_PER_RESPONSE, MAX_TRACKER_ID_LEN, MIN_ANNOUNCE_INTERVAL,
};
pub use error::TrackerError;
pub use http::{
    announce_url, parse_announce_response, parse_scrape_response, scrape_base, scrape_url,
    MAX_RESPONSE_LEN, MAX_URL_LEN,
};
pub use tiers::{AnnouncePolicy, TrackerList, TrackerState};

#[cfg(test)]
mod tests;
