//! uTP, the Micro Transport Protocol (BEP 29), sans-IO: reliable, ordered
//! byte streams over UDP whose congestion control (LEDBAT) yields to other
//! traffic by keeping the queueing delay it causes near 100 ms.
//!
//! # Sans-IO
//!
//! This crate opens no socket, starts no thread and reads no clock: every
//! input comes with a `now: Instant`, and every output is a value. An
//! [`Endpoint`] owns the connections of one UDP port. The driver hands it
//! datagrams ([`Endpoint::handle_datagram`]) and the application's calls
//! ([`Endpoint::connect`], [`Endpoint::write`], [`Endpoint::read`],
//! [`Endpoint::close`], [`Endpoint::reset`]), and takes datagrams to send
//! ([`Endpoint::poll_transmit`], written into a buffer the driver reuses),
//! events ([`Endpoint::poll_event`]) and when to wake it
//! ([`Endpoint::next_timeout`], [`Endpoint::on_timeout`]). Tests drive two
//! endpoints over a virtual network with loss, reordering, duplication and
//! a bandwidth-limited queue (`tests/sim.rs`).
//!
//! # Wire rules (as libtorrent and libutp apply them)
//!
//! * The initiator picks a random `recv_id` and sends its SYN with
//!   `connection_id = recv_id`; every later packet of its carries
//!   `recv_id + 1`. The acceptor receives on `syn.connection_id + 1` and
//!   sends with `syn.connection_id`. The [`Endpoint`] keys connections by
//!   (peer address, the id the peer's packets carry).
//! * The SYN has a random `seq_nr` and consumes it. The acceptor answers
//!   with `ST_STATE`, `ack_nr` = the SYN's `seq_nr`, `seq_nr` = its own
//!   random first sequence number, which that answer does not consume: its
//!   first data packet carries it. So the initiator sets its `ack_nr` to
//!   the answer's `seq_nr - 1`.
//! * `ST_DATA`, `ST_FIN` and `ST_SYN` consume a sequence number; `ST_STATE`
//!   carries the next one. The FIN's `seq_nr` ends the stream: it counts
//!   once every packet before it arrived, and is acknowledged like data.
//! * `wnd_size` is the free space of the sender's receive buffer in bytes;
//!   bytes in flight never exceed it (nor the congestion window).
//! * `timestamp_difference` is the receiver's clock minus the timestamp of
//!   the last packet it got: the sender's one-way delay sample (plus an
//!   unknown clock offset that the base delay cancels out).
//! * The selective ACK's bit 0 (least significant bit of the first byte)
//!   stands for `ack_nr + 2`.
//!
//! # Driver notes
//!
//! * One UDP port can carry both the DHT and uTP: [`is_utp`] (version 1 and
//!   a known type in the first byte, at least 20 bytes) is false for every
//!   bencoded message, which starts with `d`.
//! * Receive into a buffer of 64 KiB (a datagram may be that long), hand
//!   every datagram that is waiting to [`Endpoint::handle_datagram`], and
//!   only then drain [`Endpoint::poll_transmit`]: a connection then sends
//!   one ACK for the whole batch.
//! * Keep [`Config::max_payload`] at or under 1,446 bytes for peers other
//!   than rivulet: libtorrent truncates datagrams over 1,500 bytes.
//! * [`Endpoint::reset`] ends a connection at once with a RESET that
//!   libtorrent honours (it reports "connection reset" and may try TCP).
//!   Packets of connections the endpoint does not know (after a restart)
//!   are answered with RESETs that libtorrent and libutp honour.
//! * Checked against libtorrent 2.0.8 and Transmission 3.00:
//!   `examples/libtorrent_interop.py`, `examples/transmission_interop.py`.
//!
//! # Modules
//!
//! * [`packet`]: the codec (never panics) and [`packet::is_utp`], which
//!   tells uTP from the DHT's bencode on a shared port.
//! * [`seq`]: wrapping sequence numbers.
//! * [`rtt`]: RTT estimate and retransmission timeout (RFC 6298).
//! * [`ledbat`]: the congestion controller.
//! * [`Connection`]: one connection's state machine.
//! * [`Endpoint`]: the connections of one port.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rivulet_utp::{Config, ConnEvent, Endpoint, Event};
//!
//! let t0 = Instant::now();
//! let (a_addr, b_addr) = ("127.0.0.2:6881".parse().unwrap(), "127.0.0.3:6881".parse().unwrap());
//! let mut a = Endpoint::new(Config::default(), t0, 1);
//! let mut b = Endpoint::new(Config::default(), t0, 2);
//! b.set_listening(true);
//!
//! let conn = a.connect(t0, b_addr).unwrap();
//! a.write(conn, b"hello over uTP").unwrap();
//!
//! // Shuttle datagrams until both sides are quiet (a real driver sends
//! // them through its UDP socket).
//! let mut buf = Vec::new();
//! let mut now = t0;
//! for _ in 0..10 {
//!     now += Duration::from_millis(5);
//!     while let Some(to) = a.poll_transmit(now, &mut buf) {
//!         assert_eq!(to, b_addr);
//!         b.handle_datagram(now, a_addr, &buf);
//!     }
//!     while let Some(to) = b.poll_transmit(now, &mut buf) {
//!         assert_eq!(to, a_addr);
//!         a.handle_datagram(now, b_addr, &buf);
//!     }
//! }
//! let Some(Event::Incoming { conn: incoming, addr }) = b.poll_event() else { panic!() };
//! assert_eq!(addr, a_addr);
//! assert_eq!(b.poll_event(), Some(Event::Conn { conn: incoming, event: ConnEvent::Connected }));
//! assert_eq!(b.poll_event(), Some(Event::Conn { conn: incoming, event: ConnEvent::Readable }));
//! let mut got = [0u8; 64];
//! let n = b.read(incoming, &mut got).unwrap();
//! assert_eq!(&got[..n], b"hello over uTP");
//! assert_eq!(a.poll_event(), Some(Event::Conn { conn, event: ConnEvent::Connected }));
//! ```
#![warn(clippy::indexing_slicing)]

mod config;
mod conn;
mod endpoint;
mod error;
pub mod ledbat;
pub mod packet;
pub mod rtt;
pub mod seq;

pub use config::Config;
pub use conn::{CloseReason, ConnStats, Connection, Event as ConnEvent};
pub use endpoint::{ConnId, Endpoint, EndpointStats, Event};
pub use error::UtpError;
pub use packet::{is_utp, DecodeError, Header, Packet, PacketType};
