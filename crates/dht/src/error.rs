//! Errors of the DHT node's API.

/// Why a request to the [`crate::Node`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhtError {
    /// [`crate::Config::max_lookups`] lookups are running already.
    #[error("too many lookups running (limit {limit})")]
    TooManyLookups {
        /// The limit in force.
        limit: usize,
    },
    /// Neither IPv4 nor IPv6 is enabled in the configuration.
    #[error("no address family enabled")]
    NoFamily,
    /// Saved state (from [`crate::Node::save`]) could not be read.
    #[error("saved DHT state is invalid: {0}")]
    BadState(&'static str),
}
