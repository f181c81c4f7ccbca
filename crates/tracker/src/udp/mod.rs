//! UDP trackers (BEP 15): the packet codec and the per-tracker transaction
//! state machine, both sans-IO.
//!
//! A driver owns one `UdpSocket` per address family and one
//! [`UdpTrackerClient`] per tracker; it routes each datagram from the tracker's
//! address to [`UdpTrackerClient::handle_packet`], sends what
//! [`UdpTrackerClient::poll_transmit`] returns, and wakes at
//! [`UdpTrackerClient::poll_timeout`].

mod client;
mod codec;

pub use client::{
    Ignored, PacketOutcome, RequestId, UdpClientConfig, UdpEvent, UdpOutcome, UdpStats,
    UdpTrackerClient, BASE_TIMEOUT, CONNECTION_ID_LIFETIME, MAX_RETRIES,
};
pub use codec::{
    action, decode_response, encode_announce, encode_connect, encode_scrape, AddressFamily,
    UdpAnnounceOptions, UdpResponse, UdpScrapeEntry, UdpTrackerUrl, ANNOUNCE_REQUEST_LEN,
    ANNOUNCE_RESPONSE_HEADER_LEN, CONNECT_LEN, HEADER_LEN, MAX_PACKET_LEN, MAX_SCRAPE_HASHES,
    MAX_URL_DATA_LEN, PROTOCOL_ID, SCRAPE_ENTRY_LEN,
};

#[cfg(test)]
mod tests;
