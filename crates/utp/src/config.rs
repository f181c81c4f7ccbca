//! [`Config`]: every knob of a connection and an endpoint, with documented
//! defaults.

use std::time::Duration;

/// How connections and an [`crate::Endpoint`] behave.
/// `Config::default()` suits the internet; a driver on a fast path (such as
/// loopback) may raise the buffers, and [`Config::max_payload`] only
/// between rivulet peers.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Most payload bytes in one packet (default 1,380). A packet is at most
    /// this plus the 20-byte header plus a selective ACK of up to 34 bytes:
    /// 1,434 bytes, which fits a 1,500-byte MTU under IPv6 and UDP headers
    /// (1,452 bytes of room) and PPPoE's 1,492 under IPv4. libtorrent starts
    /// near this size and probes upward; rivulet does no MTU probe (a lost
    /// probe costs a timeout, and the gain is a few percent).
    ///
    /// Do not raise it above 1,446 (datagrams over 1,500 bytes) for peers
    /// other than rivulet, even on loopback: libtorrent 2.0 reads datagrams
    /// into 1,500-byte buffers, and a longer one is cut short and yet
    /// acknowledged, which corrupts the stream (checked with
    /// `examples/libtorrent_interop.py`). libtorrent itself never sends
    /// more than about 1,450 bytes per datagram.
    pub max_payload: usize,
    /// Bytes of the send buffer: written but not yet acknowledged
    /// (default 1 MiB). [`crate::Connection::write`] takes what fits.
    pub send_buffer: usize,
    /// Bytes of the receive buffer: received but not yet read, in order or
    /// waiting in the reorder buffer (default 1 MiB). What is free is the
    /// window we advertise.
    pub recv_buffer: usize,
    /// LEDBAT's target queueing delay (BEP 29: 100 ms).
    pub target_delay: Duration,
    /// LEDBAT's gain: most bytes the window grows by per RTT at zero
    /// queueing delay (default 3,000, libtorrent's and libutp's value).
    pub cwnd_gain: usize,
    /// Minutes of base-delay history (default 10, RFC 6817's
    /// BASE_HISTORY).
    pub base_delay_minutes: usize,
    /// Retransmission timeout before any RTT sample (BEP 29: 1 s).
    pub initial_rto: Duration,
    /// Lowest retransmission timeout (BEP 29: 500 ms).
    pub min_rto: Duration,
    /// Highest retransmission timeout (default 60 s).
    pub max_rto: Duration,
    /// Retransmission timeouts in a row after which a connection is given
    /// up (default 4, as libutp: the packet was sent five times).
    pub max_retransmits: u32,
    /// The same for a SYN (default 2, as libutp and libtorrent: three SYNs
    /// over 1 + 2 + 4 = 7 s).
    pub syn_retransmits: u32,
    /// A connected connection that sent nothing for this long sends a
    /// keep-alive (libutp: 29 s, under common NAT timeouts).
    pub keepalive: Duration,
    /// A connection that received nothing for this long is closed as timed
    /// out (default 5 min; the BitTorrent layer above closes idle peers
    /// sooner).
    pub idle_timeout: Duration,
    /// An accepted connection whose peer sent nothing after its SYN is
    /// dropped after this long (default 10 s): it may be spoofed.
    pub unconfirmed_timeout: Duration,
    /// Once our FIN is acknowledged, how long the peer may stay silent
    /// before the connection ends without its FIN (default 10 s).
    /// Transmission 3.00 acknowledges a FIN but does not close its side, and
    /// its BitTorrent keep-alives would keep the connection forever;
    /// libtorrent gives up on the peer's FIN after one packet timeout.
    pub fin_wait: Duration,
    /// Most connections an endpoint holds (default 1,000). Incoming SYNs
    /// beyond are refused with a RESET; [`crate::Endpoint::connect`] fails.
    pub max_connections: usize,
    /// Most accepted connections whose peer sent nothing after its SYN
    /// (default 64): bounds a SYN flood.
    pub max_unconfirmed: usize,
    /// RESETs per second an endpoint sends to packets of unknown
    /// connections (default 20, burst of as many).
    pub resets_per_second: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_payload: 1380,
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            target_delay: Duration::from_millis(100),
            cwnd_gain: 3000,
            base_delay_minutes: 10,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(500),
            max_rto: Duration::from_secs(60),
            max_retransmits: 4,
            syn_retransmits: 2,
            keepalive: Duration::from_secs(29),
            idle_timeout: Duration::from_secs(300),
            unconfirmed_timeout: Duration::from_secs(10),
            fin_wait: Duration::from_secs(10),
            max_connections: 1000,
            max_unconfirmed: 64,
            resets_per_second: 20,
        }
    }
}
