//! [`TrackerError`]: everything that can go wrong talking to a tracker.

/// Why a tracker request could not be built, or why a tracker's answer was not
/// usable.
///
/// Every string in a variant that came from the network (the tracker's own
/// message, the start of a garbage body) has been made printable and bounded in
/// length, so errors can go straight into logs and user interfaces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The tracker URL cannot be used for this kind of request (wrong scheme,
    /// no host, control characters, too long, ...).
    #[error("bad tracker URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, cut to [`crate::MAX_URL_LEN`] characters.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The tracker refused the request: `failure reason` in an HTTP reply, or a
    /// UDP packet with action 3 ("error").
    #[error("tracker refused the request: {message}")]
    Failure {
        /// The tracker's message, sanitized to printable text and at most
        /// [`crate::MAX_MESSAGE_CHARS`] characters.
        message: String,
    },

    /// The HTTP body is empty.
    #[error("tracker answered with an empty body")]
    EmptyBody,

    /// The HTTP body does not even start like a bencoded dictionary; typically an
    /// HTML error page from a proxy or a dead tracker's web server.
    #[error("tracker answered with something that is not bencode: starts with {start:?}")]
    NotBencode {
        /// The first bytes of the body, sanitized (at most 24 characters).
        start: String,
    },

    /// The HTTP body starts like bencode but is malformed or exceeds the decoding
    /// limits (depth, number of values).
    #[error("tracker answered with invalid bencode")]
    Bencode(#[from] rivulet_bencode::Error),

    /// The HTTP body is larger than [`crate::MAX_RESPONSE_LEN`]; drivers should
    /// stop reading at that size.
    #[error("tracker response is {len} bytes, more than the {limit} accepted")]
    ResponseTooLarge {
        /// Size of the body.
        len: usize,
        /// The limit in force.
        limit: usize,
    },

    /// A UDP packet is shorter than its action requires.
    #[error("UDP tracker packet ({what}) is {len} bytes, needs at least {need}")]
    UdpTruncated {
        /// Which packet or part was being read.
        what: &'static str,
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        need: usize,
    },

    /// A UDP packet longer than any UDP datagram can be (65,535 bytes).
    #[error("UDP tracker packet is {len} bytes, larger than a UDP datagram can be")]
    UdpTooLarge {
        /// Bytes received.
        len: usize,
    },

    /// A UDP packet whose action is not connect (0), announce (1), scrape (2) or
    /// error (3).
    #[error("UDP tracker packet has unknown action {0}")]
    UdpUnknownAction(u32),

    /// A UDP announce or scrape response whose body is not a whole number of
    /// entries: the last entry is cut off.
    #[error("UDP tracker {what} ends with a partial entry: {extra} bytes left over, entries are {entry_len} bytes")]
    UdpPartialEntry {
        /// `"announce response"` or `"scrape response"`.
        what: &'static str,
        /// Bytes after the last whole entry.
        extra: usize,
        /// Size of one entry (6 or 18 bytes for peers, 12 for scrape counts).
        entry_len: usize,
    },

    /// A UDP scrape was asked for more info-hashes than one packet may carry.
    #[error("a UDP scrape carries at most {max} info-hashes, got {count}")]
    TooManyInfoHashes {
        /// Info-hashes asked for.
        count: usize,
        /// Most allowed ([`crate::udp::MAX_SCRAPE_HASHES`]).
        max: usize,
    },

    /// A scrape was asked for no info-hash at all.
    #[error("a scrape needs at least one info-hash")]
    NoInfoHashes,

    /// BEP 41 URL data longer than [`crate::udp::MAX_URL_DATA_LEN`].
    #[error("UDP tracker URL data is {len} bytes, more than the {max} accepted")]
    UrlDataTooLong {
        /// Length of the URL data.
        len: usize,
        /// The limit in force.
        max: usize,
    },

    /// The UDP tracker did not answer a request after the configured number of
    /// transmissions.
    #[error("UDP tracker did not answer after {attempts} attempts")]
    Timeout {
        /// How many times the last packet was sent.
        attempts: u32,
    },

    /// A [`crate::udp::UdpTrackerClient`] already has its maximum number of
    /// requests in flight.
    #[error("too many requests in flight to this UDP tracker (limit {limit})")]
    TooManyRequests {
        /// The limit in force.
        limit: usize,
    },

    /// The tracker could not be reached or its answer not read (DNS, connect,
    /// HTTP status, timeout); reported by the I/O drivers, never by the codecs.
    #[error("{0}")]
    Transport(String),
}
