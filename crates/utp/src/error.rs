//! Errors of the endpoint's API.

/// Why a request to the [`crate::Endpoint`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UtpError {
    /// [`crate::Config::max_connections`] connections exist already.
    #[error("too many uTP connections (limit {limit})")]
    TooManyConnections {
        /// The limit in force.
        limit: usize,
    },
    /// No connection has this id (it was never made, or was closed and
    /// forgotten).
    #[error("no such uTP connection")]
    UnknownConnection,
    /// The connection is closed (or closing, for a write).
    #[error("uTP connection closed")]
    Closed,
}
