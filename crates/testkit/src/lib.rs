//! Helpers shared by rivulet's tests (a `publish = false` crate, a
//! dev-dependency of the crates whose tests use it).
//!
//! - [`addr`]: loopback addresses, one implementation for every test binary.
//! - [`tracker`]: fake HTTP and UDP trackers.
//! - [`fixture`]: a torrent built in memory, with its data and blocks.
//! - [`peer`]: the fake BitTorrent peer (listening or connecting out, async
//!   or blocking) with its event log.
//!
//! This is test code: a broken expectation panics, and that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod addr;
pub mod fixture;
pub mod peer;
pub mod tracker;

pub use addr::{loopback, next_loopback};
