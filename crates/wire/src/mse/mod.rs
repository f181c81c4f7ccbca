//! Message stream encryption (MSE, also called protocol encryption, PE): the
//! Diffie-Hellman handshake that hides a BitTorrent connection from traffic
//! shapers, and the RC4 stream that follows it. Sans-IO like the rest of
//! this crate.
//!
//! # The handshake
//!
//! A is the side that opened the connection, B the side that accepted it.
//!
//! 1. A → B: `Ya`, `PadA` (A's public key, 96 bytes; 0–512 random bytes).
//! 2. B → A: `Yb`, `PadB`.
//! 3. A → B: `HASH('req1', S)`, `HASH('req2', SKEY) xor HASH('req3', S)`,
//!    `ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA))`, `ENCRYPT(IA)`.
//! 4. B → A: `ENCRYPT(VC, crypto_select, len(PadD), PadD)`, then the payload
//!    in the selected method.
//! 5. A → B: the payload in the selected method.
//!
//! `S` is the shared secret, `SKEY` the torrent's info-hash (so that B, which
//! may have many torrents, learns which one A wants without A saying it in
//! the clear), `VC` eight zero bytes, and `IA` A's first payload bytes (its
//! BitTorrent handshake). `ENCRYPT` is RC4 keyed with
//! `HASH('keyA', S, SKEY)` for what A sends and `HASH('keyB', S, SKEY)` for
//! what B sends, the first 1024 bytes of each keystream thrown away. Since
//! the pads have random lengths, B finds where step 3 starts by looking for
//! `HASH('req1', S)`, and A finds step 4 by looking for `ENCRYPT(VC)`.
//!
//! # Bounds
//!
//! A peer can make us hold at most [`MAX_BEFORE_SYNC`] bytes before its sync
//! point (`Y` plus the longest pad), pads of at most [`MAX_PAD`] bytes, and an
//! `IA` of at most 65535 bytes (its length field has two bytes). A handshake
//! that does not find its sync point within those bounds fails at once; the
//! driver adds a deadline for peers that send too little.
//!
//! ```
//! use bytes::BytesMut;
//! use rivulet_core::InfoHash;
//! use rivulet_wire::mse::{CryptoSet, Method, MseHandshake, Progress};
//!
//! let info_hash = InfoHash([7; 20]);
//! let mut rng = rand::thread_rng();
//! let mut a = MseHandshake::initiate(info_hash, CryptoSet::RC4, b"hello B", &mut rng);
//! let mut b = MseHandshake::respond(vec![InfoHash([1; 20]), info_hash], CryptoSet::ALL, Method::Rc4, &mut rng);
//! let (mut to_a, mut to_b) = (BytesMut::new(), BytesMut::new());
//! let (mut done_a, mut done_b) = (None, None);
//! while done_a.is_none() || done_b.is_none() {
//!     to_b.extend_from_slice(&a.take_outgoing());
//!     to_a.extend_from_slice(&b.take_outgoing());
//!     if done_b.is_none() {
//!         if let Progress::Done(e) = b.receive(&mut to_b).unwrap() { done_b = Some(e); }
//!     }
//!     if done_a.is_none() {
//!         if let Progress::Done(e) = a.receive(&mut to_a).unwrap() { done_a = Some(e); }
//!     }
//! }
//! let (mut a, mut b) = (done_a.unwrap(), done_b.unwrap());
//! assert_eq!(b.info_hash, info_hash);
//! assert_eq!(b.initial_payload, b"hello B");
//! assert_eq!(a.method, Method::Rc4);
//! // From here on each side encrypts what it sends and decrypts what it reads.
//! let mut msg = *b"payload";
//! a.ciphers.as_mut().unwrap().encrypt.apply(&mut msg);
//! assert_ne!(&msg, b"payload");
//! b.ciphers.as_mut().unwrap().decrypt.apply(&mut msg);
//! assert_eq!(&msg, b"payload");
//! ```

mod cipher;
mod dh;
mod handshake;

pub use cipher::{Ciphers, Rc4Stream};
pub use dh::{PrivateKey, PublicKey, SharedSecret, KEY_LEN, PRIME};
pub use handshake::{
    is_plaintext_start, Established, MseError, MseHandshake, Progress, MAX_BEFORE_SYNC, MAX_PAD,
};

/// The methods a side offers (`crypto_provide`) or accepts: a bit set on
/// the wire, of which two bits have a meaning today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CryptoSet(pub u32);

impl CryptoSet {
    /// Plaintext after the handshake (the handshake itself is still hidden).
    pub const PLAINTEXT: CryptoSet = CryptoSet(0x01);
    /// RC4 for the whole connection.
    pub const RC4: CryptoSet = CryptoSet(0x02);
    /// Both methods.
    pub const ALL: CryptoSet = CryptoSet(0x03);

    /// Whether `method` is in the set.
    pub fn contains(self, method: Method) -> bool {
        self.0 & method.bit() != 0
    }
}

/// The method a connection uses once the handshake is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The payload goes in the clear.
    Plaintext,
    /// The payload goes through RC4, continuing the handshake's keystreams.
    Rc4,
}

impl Method {
    /// The method's bit in `crypto_provide` / `crypto_select`.
    pub fn bit(self) -> u32 {
        match self {
            Method::Plaintext => CryptoSet::PLAINTEXT.0,
            Method::Rc4 => CryptoSet::RC4.0,
        }
    }
}
