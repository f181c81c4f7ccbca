//! HTTP and UDP tracker clients (BEP 3, 7, 12, 15, 23, 48).
//!
//! Empty for now: the tracker clients land with the tracker issue (issue 4). The
//! crate exists so that the workspace has its final shape and dependency
//! direction (`engine -> tracker -> core`).
