//! Helpers shared by rivulet's tests (a `publish = false` crate, a
//! dev-dependency of the crates whose tests use it).
//!
//! - [`addr`]: loopback addresses, one implementation for every test binary.

pub mod addr;

pub use addr::{loopback, next_loopback};
