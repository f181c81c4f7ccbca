//! [`Config`]: every knob of a [`crate::Node`], with documented defaults.

use std::net::IpAddr;
use std::time::Duration;

/// The DHT routers rivulet bootstraps from by default. They are host names:
/// the driver resolves them (this crate never does) and passes the
/// addresses to [`crate::Node::bootstrap`]. Routers only help find nodes;
/// they never enter the routing table.
pub const DEFAULT_ROUTERS: [&str; 4] = [
    "router.bittorrent.com:6881",
    "router.utorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

/// How a [`crate::Node`] behaves. `Config::default()` is what rivulet uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// UDP port the driver binds the DHT socket(s) to (default 6881). The
    /// node itself only uses it as the default port of announces.
    pub port: u16,
    /// Run an IPv4 table and lookups (default true).
    pub ipv4: bool,
    /// Run an IPv6 table and lookups (BEP 32; default true).
    pub ipv6: bool,
    /// Bootstrap routers as `host:port` strings (default [`DEFAULT_ROUTERS`]),
    /// for the driver to resolve.
    pub bootstrap: Vec<String>,
    /// Our external address, if the driver knows it: the node id is then
    /// derived from it (BEP 42). The node also learns it from the `ip` field
    /// of responses (default None).
    pub external_ip: Option<IpAddr>,
    /// Refuse nodes whose id does not match their address (BEP 42) in the
    /// routing table. Default false, as in libtorrent: many nodes on the
    /// network still have free ids, and refusing them shrinks the table.
    /// Local, private and loopback addresses are always accepted.
    pub enforce_node_id: bool,
    /// Read-only mode (BEP 43): send `ro`, answer no query (default false).
    pub read_only: bool,
    /// Queries in flight per lookup (default 3, Kademlia's alpha).
    pub alpha: usize,
    /// After this long without an answer, the query is sent once more, and a
    /// lookup counts it as slow and starts another one without giving up on
    /// it; after twice this long the lookup may end without its answer
    /// (default 2 s).
    pub query_slow_after: Duration,
    /// After this long without an answer, the query has failed
    /// (default 10 s).
    pub query_timeout: Duration,
    /// Failed queries in a row after which a node is bad (default 2).
    pub max_failures: u32,
    /// How long an answer keeps a node good (BEP 5: 15 min).
    pub node_good_for: Duration,
    /// A bucket nothing changed in for this long is refreshed with a lookup
    /// of a random id in its range (BEP 5: 15 min).
    pub bucket_refresh: Duration,
    /// How often a questionable node is pinged at most (default 60 s).
    pub ping_interval: Duration,
    /// Replacement cache size per bucket (default 8).
    pub replacement_cache: usize,
    /// Period of the token secret (BEP 5: 5 min; the previous secret is
    /// still accepted).
    pub token_rotation: Duration,
    /// How long an announced peer is kept (default 30 min).
    pub peer_ttl: Duration,
    /// Most peers kept per info-hash (default 200).
    pub max_peers_per_info_hash: usize,
    /// Most peers kept in all (default 20,000).
    pub max_stored_peers: usize,
    /// Most peers in one `get_peers` answer (default 50 IPv4 or 32 IPv6, so
    /// that answers stay under 1,400 bytes).
    pub max_values_v4: usize,
    /// See [`Config::max_values_v4`].
    pub max_values_v6: usize,
    /// Queries we send per second on average (default 100).
    pub query_rate: u32,
    /// Queries we may send at once (default 200).
    pub query_burst: u32,
    /// Queries waiting for the rate limit (default 1,024); lookups stop
    /// starting queries when it is full.
    pub max_queued_queries: usize,
    /// Queries per second one source IP may send us on average (default 5).
    pub incoming_rate_per_ip: u32,
    /// Queries one source IP may send at once (default 50: libtorrent's
    /// default allows 5 per second over 10 s).
    pub incoming_burst_per_ip: u32,
    /// How long an IP that exceeded its rate is ignored (default 5 min).
    pub block_duration: Duration,
    /// Most source IPs tracked by the rate limiter (default 4,096).
    pub max_tracked_ips: usize,
    /// Most lookups running at once; more are refused (default 64).
    pub max_lookups: usize,
    /// How often the node does its housekeeping when nothing else wakes it
    /// (default 5 s).
    pub tick: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 6881,
            ipv4: true,
            ipv6: true,
            bootstrap: DEFAULT_ROUTERS.iter().map(|s| (*s).to_owned()).collect(),
            external_ip: None,
            enforce_node_id: false,
            read_only: false,
            alpha: 3,
            query_slow_after: Duration::from_secs(2),
            query_timeout: Duration::from_secs(10),
            max_failures: 2,
            node_good_for: Duration::from_secs(15 * 60),
            bucket_refresh: Duration::from_secs(15 * 60),
            ping_interval: Duration::from_secs(60),
            replacement_cache: 8,
            token_rotation: Duration::from_secs(5 * 60),
            peer_ttl: Duration::from_secs(30 * 60),
            max_peers_per_info_hash: 200,
            max_stored_peers: 20_000,
            max_values_v4: 50,
            max_values_v6: 32,
            query_rate: 100,
            query_burst: 200,
            max_queued_queries: 1024,
            incoming_rate_per_ip: 5,
            incoming_burst_per_ip: 50,
            block_duration: Duration::from_secs(5 * 60),
            max_tracked_ips: 4096,
            max_lookups: 64,
            tick: Duration::from_secs(5),
        }
    }
}
