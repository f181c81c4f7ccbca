//! One peer connection, in two layers: [`PeerState`], the sans-IO protocol
//! core (choking, interest, the request pipeline, BEP 6, flood limits,
//! serving), which reaches its torrent only through [`TorrentAccess`]; and
//! the tokio driver (`driver`), which exchanges handshakes, then only moves
//! bytes between the core, the socket, the torrent's commands and the disk.
//!
//! The driver never blocks on a write: outgoing messages collect in the
//! core's buffer, which a `select!` branch drains as the socket accepts
//! them, so reading goes on while a slow peer takes its data (two peers
//! sending to each other at full speed cannot deadlock), and the core stops
//! adding blocks while the buffer is above 1 MiB. Blocks to serve come from
//! the torrent's read cache, or from one positioned read of their 256 KiB
//! chunk on the blocking pool (one read in flight per connection).

pub mod access;
mod driver;
#[cfg(test)]
mod paired_tests;
pub mod state;

pub use access::{Accepted, TorrentAccess};
pub(crate) use driver::{accept_and_run, connect_and_run, connect_tcp, Exit};
pub use state::{Flow, PeerParams, PeerState, SERVE_QUEUE};

use crate::torrent::RegisterRefusal;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Connecting or reading or writing failed.
    #[error("i/o: {0}")]
    Io(std::io::Error),
    /// The peer did not answer in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Wire(rivulet_wire::WireError),
    /// The encryption handshake failed.
    #[error("encryption handshake: {0}")]
    Mse(rivulet_wire::mse::MseError),
    /// The peer closed the connection before its handshake was complete.
    #[error("connection closed during the handshake")]
    ClosedInHandshake,
    /// The socket took no more bytes: the peer closed the connection while
    /// we were sending.
    #[error("connection closed while sending")]
    ClosedWhileSending,
    /// The peer's handshake names another torrent.
    #[error("peer is for another torrent")]
    WrongTorrent,
    /// The peer's handshake carries our own peer id: we connected to
    /// ourselves (a tracker handed us our own address).
    #[error("connected to ourselves")]
    OurOwnConnection,
    /// We already have a connection to this peer id (the one kept when two
    /// peers connect to each other at once).
    #[error("already connected to this peer")]
    Duplicate,
    /// We refused the peer.
    #[error("{0}")]
    Refused(Refusal),
    /// The torrent is shutting down and takes no new peers.
    #[error("shutting down")]
    ShuttingDown,
    /// Neither side wanted anything from the other for a while: the
    /// connection slot is freed for a peer that does.
    #[error("nothing to exchange with this peer")]
    NothingToExchange,
    /// The peer has every piece and so do we.
    #[error("both sides are seeds")]
    BothSeeds,
    /// Data we have could not be read to serve the peer; the torrent stops
    /// with the storage error ([`crate::torrent::TorrentError::Read`]).
    #[error("cannot read our own data (piece {piece})")]
    Storage {
        /// The piece being read.
        piece: u32,
    },
    /// The disk read task for this connection failed (it panicked: a bug).
    #[error("internal error: the disk read task failed: {0}")]
    Internal(tokio::task::JoinError),
    /// The peer misbehaved in a way the codec cannot see.
    #[error("misbehaving peer: {0}")]
    Misbehaving(&'static str),
}

// By hand rather than `#[from]`, which would also make the inner error the
// `source` and print it twice in error chains.
impl From<std::io::Error> for PeerError {
    fn from(e: std::io::Error) -> Self {
        PeerError::Io(e)
    }
}

impl From<rivulet_wire::WireError> for PeerError {
    fn from(e: rivulet_wire::WireError) -> Self {
        PeerError::Wire(e)
    }
}

/// Why we refused a peer whose handshake was fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its address is banned for sending bad data.
    #[error("banned")]
    Banned,
    /// No room for another incoming connection.
    #[error("too many connections")]
    Full,
}

impl From<RegisterRefusal> for PeerError {
    fn from(why: RegisterRefusal) -> Self {
        match why {
            RegisterRefusal::Duplicate => PeerError::Duplicate,
            RegisterRefusal::Banned => PeerError::Refused(Refusal::Banned),
            RegisterRefusal::Full => PeerError::Refused(Refusal::Full),
            RegisterRefusal::Closing => PeerError::ShuttingDown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These messages reach the user: a connection that never became a
    /// peer is shown with its reason ("0 peers reachable: ADDR REASON").
    #[test]
    fn peer_errors_say_what_happened() {
        let cases = [
            (
                PeerError::from(RegisterRefusal::Duplicate),
                "already connected to this peer",
            ),
            (PeerError::from(RegisterRefusal::Banned), "banned"),
            (
                PeerError::from(RegisterRefusal::Full),
                "too many connections",
            ),
            (PeerError::from(RegisterRefusal::Closing), "shutting down"),
            (
                PeerError::ClosedInHandshake,
                "connection closed during the handshake",
            ),
            (PeerError::WrongTorrent, "peer is for another torrent"),
            (PeerError::OurOwnConnection, "connected to ourselves"),
            (
                PeerError::NothingToExchange,
                "nothing to exchange with this peer",
            ),
            (PeerError::BothSeeds, "both sides are seeds"),
            (
                PeerError::Storage { piece: 7 },
                "cannot read our own data (piece 7)",
            ),
            (
                PeerError::Timeout("waiting for handshake"),
                "timed out waiting for handshake",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
        // Only banned and full peers are refusals.
        assert!(matches!(
            PeerError::from(RegisterRefusal::Banned),
            PeerError::Refused(Refusal::Banned)
        ));
        assert!(matches!(
            PeerError::from(RegisterRefusal::Full),
            PeerError::Refused(Refusal::Full)
        ));
        assert!(matches!(
            PeerError::from(RegisterRefusal::Duplicate),
            PeerError::Duplicate
        ));
    }

    /// A wrapped error is shown in the message, so it is not also the
    /// `source` (error chains would print it twice).
    #[test]
    fn wrapped_errors_are_not_sources() {
        let io = PeerError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            io.to_string(),
            format!(
                "i/o: {}",
                std::io::Error::from(std::io::ErrorKind::ConnectionReset)
            )
        );
        assert!(std::error::Error::source(&io).is_none());
        let wire = PeerError::from(rivulet_wire::WireError::BadProtocolString);
        assert!(wire.to_string().starts_with("protocol: "), "{wire}");
        assert!(std::error::Error::source(&wire).is_none());
    }
}
