//! The peer wire protocol (BEP 3, BEP 6 fast extension, BEP 10 extension
//! protocol), sans-IO: decoders that take bytes and answer "need more",
//! "malformed" or a message.
//!
//! Empty for now: the codec lands with the download engine (issue 3). The crate
//! exists so that the workspace has its final shape and dependency direction
//! (`engine -> wire -> core`).
