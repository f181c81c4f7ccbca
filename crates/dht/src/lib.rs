//! The Mainline DHT (BEP 5) for rivulet, with IPv6 (BEP 32) and node ids
//! bound to addresses (BEP 42), sans-IO.
//!
//! # Sans-IO
//!
//! This crate opens no socket, resolves no name, starts no thread and reads no
//! clock: every input comes with a `now: Instant`, and every output is a
//! value. A [`Node`] takes datagrams ([`Node::handle_packet`]) and requests
//! ([`Node::bootstrap`], [`Node::get_peers`], [`Node::announce`], ...), and
//! answers with datagrams to send ([`Node::poll_transmit`]), events
//! ([`Node::poll_event`]: peers found, lookups finished, our external
//! address) and when to wake it up ([`Node::next_timeout`],
//! [`Node::on_timeout`]). A thin tokio driver in the engine owns the UDP
//! socket(s), resolves the routers of [`Config::bootstrap`] and writes
//! [`Node::save`]'s bytes to disk. Tests drive hundreds of nodes over a
//! virtual network with a virtual clock (`tests/sim.rs`).
//!
//! # Modules
//!
//! * [`krpc`]: the message codec (bounded; never panics).
//! * [`id`]: node ids, XOR distance, BEP 42.
//! * [`table`]: the routing table (K = 8, splitting buckets, good /
//!   questionable / bad nodes, replacement caches, refreshes).
//! * [`lookup`]: one iterative lookup (alpha = 3, slow and failed queries).
//! * [`store`], [`token`]: the server side of `get_peers` / `announce_peer`.
//! * [`ratelimit`]: the outgoing query budget and per-IP limits on queries
//!   we answer.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rivulet_dht::{krpc, Config, Node};
//!
//! let t0 = Instant::now();
//! let cfg = Config { ipv6: false, ..Config::default() };
//! let mut a = Node::new(cfg.clone(), t0, 1);
//! let mut b = Node::new(cfg, t0, 2);
//! let (a_addr, b_addr) = ("127.0.0.2:6881".parse().unwrap(), "127.0.0.3:6881".parse().unwrap());
//!
//! // A pings B (as for a node a peer told us about); B answers; A enters B
//! // in its routing table.
//! a.add_node(t0, b_addr);
//! let (to, ping) = a.poll_transmit().unwrap();
//! assert_eq!(to, b_addr);
//! assert!(matches!(krpc::decode(&ping).unwrap().body, krpc::Body::Query(krpc::Query::Ping { .. })));
//! b.handle_packet(t0, a_addr, &ping);
//! let (to, pong) = b.poll_transmit().unwrap();
//! assert_eq!(to, a_addr);
//! a.handle_packet(t0 + Duration::from_millis(20), b_addr, &pong);
//! assert_eq!(a.table(false).len(), 1);
//! assert!(a.next_timeout().is_some());
//! ```
#![warn(clippy::indexing_slicing)]

mod config;
mod error;
pub mod id;
pub mod krpc;
pub mod lookup;
mod node;
pub mod ratelimit;
pub mod store;
pub mod table;
pub mod token;

pub use config::{Config, DEFAULT_ROUTERS};
pub use error::DhtError;
pub use id::{Distance, NodeId};
pub use krpc::NodeInfo;
pub use node::{Event, LookupDone, LookupId, LookupKind, Node, Stats, VERSION};
pub use table::{NodeStatus, RoutingTable, K};
