//! The MSE handshake as a state machine: bytes in, bytes out, and at the
//! end the method chosen and the keystreams to go on with.

use bytes::{Buf, BytesMut};
use rand::{Rng, RngCore};
use rivulet_core::InfoHash;
use sha1::{Digest, Sha1};

use super::cipher::{Ciphers, Rc4Stream};
use super::dh::{PrivateKey, PublicKey, SharedSecret, KEY_LEN};
use super::{CryptoSet, Method};
use crate::handshake::PROTOCOL;

/// The longest pad (PadA, PadB, PadC, PadD) a peer may send.
pub const MAX_PAD: usize = 512;

/// The most bytes a peer may send before its sync point: its public key and
/// the longest pad (608).
pub const MAX_BEFORE_SYNC: usize = KEY_LEN + MAX_PAD;

/// The verification constant: eight zero bytes, encrypted.
const VC: [u8; 8] = [0; 8];

/// Bytes of `VC, crypto_provide, len(PadC)` (and of `VC, crypto_select,
/// len(PadD)`).
const VC_BLOCK: usize = 8 + 4 + 2;

/// Whether the first bytes of an incoming connection can still be the
/// plaintext BitTorrent handshake (`19`, `BitTorrent protocol`). Once they
/// cannot, the connection is an MSE handshake (or garbage). Decides within
/// the first 20 bytes.
pub fn is_plaintext_start(first: &[u8]) -> bool {
    let mut expected = [0u8; 20];
    expected[0] = 19;
    expected[1..].copy_from_slice(PROTOCOL);
    first.iter().zip(expected.iter()).all(|(a, b)| a == b)
}

/// Why a handshake failed. Each one means: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    /// The peer's public key is a degenerate value (0, 1, P-1 or more).
    #[error("the peer's public key is invalid")]
    BadPublicKey,
    /// The peer sent more than the protocol allows before its sync point
    /// (`HASH('req1', S)` or `ENCRYPT(VC)`): not an MSE peer, or not one
    /// that knows our key.
    #[error("no sync point within {MAX_BEFORE_SYNC} bytes of padding")]
    NoSync,
    /// The stream key names none of our torrents.
    #[error("the peer asked for a torrent we do not have")]
    UnknownTorrent,
    /// The verification constant did not decrypt to zeros.
    #[error("the verification constant is wrong")]
    BadVc,
    /// The peer offered no method we accept.
    #[error("no common encryption method (offered {offered:#x}, accepted {accepted:#x})")]
    NoCommonMethod {
        /// What the peer offered (`crypto_provide`).
        offered: u32,
        /// What we accept.
        accepted: u32,
    },
    /// The peer selected a method we did not offer, or several.
    #[error("the peer selected {0:#x}, which we did not offer")]
    BadSelect(u32),
    /// A pad longer than [`MAX_PAD`].
    #[error("a pad of {0} bytes (at most {MAX_PAD})")]
    PadTooLong(usize),
}

/// What [`MseHandshake::receive`] made of the bytes so far.
#[derive(Debug)]
pub enum Progress {
    /// More bytes are needed (send [`MseHandshake::take_outgoing`] first).
    Pending,
    /// The handshake is done.
    Done(Box<Established>),
}

/// An encrypted (or obfuscated) connection, ready for the payload.
///
/// The bytes left in the buffer given to [`MseHandshake::receive`] are the
/// payload's start, as received: decrypt them with `ciphers` when the method
/// is RC4.
#[derive(Debug)]
pub struct Established {
    /// The method the two sides settled on.
    pub method: Method,
    /// The torrent (the stream key): ours when we opened the connection,
    /// the one the peer asked for when it did.
    pub info_hash: InfoHash,
    /// The peer's initial payload (`IA`, its BitTorrent handshake), in the
    /// clear: what the peer sent first, before anything left in the buffer.
    /// Empty when we opened the connection.
    pub initial_payload: Vec<u8>,
    /// The keystreams, for RC4; `None` for plaintext.
    pub ciphers: Option<Ciphers>,
}

#[derive(Debug)]
enum Role {
    Initiator {
        skey: InfoHash,
        provide: CryptoSet,
        initial_payload: Vec<u8>,
    },
    Responder {
        skeys: Vec<InfoHash>,
        accept: CryptoSet,
        prefer: Method,
    },
}

#[derive(Debug)]
enum State {
    /// Waiting for the peer's public key.
    Key,
    /// Initiator: looking for `ENCRYPT(VC)` (the keystream's first 8 bytes
    /// on zeros).
    FindVc { pattern: [u8; 8] },
    /// Initiator: `crypto_select` and `len(PadD)`.
    Select,
    /// Initiator: PadD.
    PadD { len: usize, method: Method },
    /// Responder: looking for `HASH('req1', S)`.
    FindReq1 { req1: [u8; 20] },
    /// Responder: the obfuscated stream key.
    Skey,
    /// Responder: `VC, crypto_provide, len(PadC)`.
    Provide,
    /// Responder: PadC and `len(IA)`.
    PadC { len: usize },
    /// Responder: IA.
    Ia { len: usize },
    /// Finished (or failed): nothing more is read.
    Done,
}

/// One side of an MSE handshake.
///
/// Feed it what the peer sends ([`receive`](Self::receive)) and send what it
/// has for the peer ([`take_outgoing`](Self::take_outgoing)) until it
/// reports [`Progress::Done`]. It never panics on any input, and holds at
/// most the bounds given in the [module documentation](super).
pub struct MseHandshake {
    role: Role,
    state: State,
    key: PrivateKey,
    secret: Option<SharedSecret>,
    skey: Option<InfoHash>,
    encrypt: Option<Rc4Stream>,
    decrypt: Option<Rc4Stream>,
    method: Option<Method>,
    out: Vec<u8>,
    /// The peer's IA (responder); before the peer's key is in, our step 2.
    peer_payload: Vec<u8>,
}

impl std::fmt::Debug for MseHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MseHandshake")
            .field("role", &self.role)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Our public key and a random pad of random length, as steps 1 and 2 send.
fn key_and_pad(key: &PrivateKey, rng: &mut impl RngCore) -> Vec<u8> {
    let pad_len = rng.gen_range(0..=MAX_PAD);
    let mut out = Vec::with_capacity(KEY_LEN + pad_len);
    out.extend_from_slice(&key.public_key().0);
    out.resize(KEY_LEN + pad_len, 0);
    if let Some(pad) = out.get_mut(KEY_LEN..) {
        rng.fill_bytes(pad);
    }
    out
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl MseHandshake {
    /// The side that opened the connection: asks for torrent `skey`, offers
    /// the methods in `provide`, and sends `initial_payload` (its
    /// BitTorrent handshake; at most 65535 bytes, the rest is not sent)
    /// with step 3. Step 1 is ready to send at once.
    pub fn initiate(
        skey: InfoHash,
        provide: CryptoSet,
        initial_payload: &[u8],
        rng: &mut impl RngCore,
    ) -> Self {
        let key = PrivateKey::random(rng);
        let out = key_and_pad(&key, rng);
        let ia_len = initial_payload.len().min(usize::from(u16::MAX));
        MseHandshake {
            role: Role::Initiator {
                skey,
                provide,
                initial_payload: initial_payload.get(..ia_len).unwrap_or_default().to_vec(),
            },
            state: State::Key,
            key,
            secret: None,
            skey: Some(skey),
            encrypt: None,
            decrypt: None,
            method: None,
            out,
            peer_payload: Vec::new(),
        }
    }

    /// The side that accepted the connection, for any of the torrents
    /// `skeys`, accepting the methods in `accept` and choosing `prefer` when
    /// the peer offers both. Step 2 is sent once the peer's key is in (so
    /// that a port scan or garbage shorter than a key gets no answer).
    pub fn respond(
        skeys: Vec<InfoHash>,
        accept: CryptoSet,
        prefer: Method,
        rng: &mut impl RngCore,
    ) -> Self {
        let key = PrivateKey::random(rng);
        let step2 = key_and_pad(&key, rng);
        MseHandshake {
            role: Role::Responder {
                skeys,
                accept,
                prefer,
            },
            state: State::Key,
            key,
            secret: None,
            skey: None,
            encrypt: None,
            decrypt: None,
            method: None,
            out: Vec::new(),
            peer_payload: step2,
        }
    }

    /// What to send to the peer now (empty when nothing is due).
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Takes from `buf` what the handshake needs of it. Once the handshake
    /// is [`Progress::Done`], what is left in `buf` is the start of the
    /// payload, still as received; after an error nothing more should be
    /// fed.
    ///
    /// # Errors
    ///
    /// [`MseError`] when the peer breaks the protocol or a bound.
    pub fn receive(&mut self, buf: &mut BytesMut) -> Result<Progress, MseError> {
        loop {
            let step = self.step(buf);
            match step {
                Ok(Some(true)) => continue,
                Ok(Some(false)) => return Ok(Progress::Done(Box::new(self.finish()))),
                Ok(None) => return Ok(Progress::Pending),
                Err(e) => {
                    self.state = State::Done;
                    return Err(e);
                }
            }
        }
    }

    /// One step: `Some(true)` moved on, `Some(false)` finished, `None`
    /// needs more bytes.
    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<bool>, MseError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Key => {
                let Some(theirs) = buf.get(..KEY_LEN) else {
                    self.state = State::Key;
                    return Ok(None);
                };
                let mut y = [0u8; KEY_LEN];
                y.copy_from_slice(theirs);
                buf.advance(KEY_LEN);
                let secret = self
                    .key
                    .shared_secret(&PublicKey(y))
                    .ok_or(MseError::BadPublicKey)?;
                self.secret = Some(secret);
                self.state = if matches!(self.role, Role::Initiator { .. }) {
                    self.send_step3(&secret)
                } else {
                    // Step 2, kept until now.
                    self.out.append(&mut self.peer_payload);
                    State::FindReq1 {
                        req1: hash(&[b"req1", &secret.0]),
                    }
                };
            }
            State::FindVc { pattern } => match find(buf, &pattern) {
                Some(at) => {
                    buf.advance(at + pattern.len());
                    // The pattern is the first 8 bytes of the peer's stream.
                    if let Some(d) = self.decrypt.as_mut() {
                        d.apply(&mut [0u8; 8]);
                    }
                    self.state = State::Select;
                }
                None if buf.len() >= MAX_PAD + pattern.len() => return Err(MseError::NoSync),
                None => {
                    self.state = State::FindVc { pattern };
                    return Ok(None);
                }
            },
            State::Select => {
                let Some(block) = self.take_decrypted(buf, 6) else {
                    self.state = State::Select;
                    return Ok(None);
                };
                let mut block = block.as_slice();
                let select = block.get_u32();
                let pad = usize::from(block.get_u16());
                let Role::Initiator { provide, .. } = &self.role else {
                    return Err(MseError::BadSelect(select));
                };
                let method = match select & CryptoSet::ALL.0 {
                    0x01 if provide.contains(Method::Plaintext) => Method::Plaintext,
                    0x02 if provide.contains(Method::Rc4) => Method::Rc4,
                    _ => return Err(MseError::BadSelect(select)),
                };
                if pad > MAX_PAD {
                    return Err(MseError::PadTooLong(pad));
                }
                self.state = State::PadD { len: pad, method };
            }
            State::PadD { len, method } => {
                if self.take_decrypted(buf, len).is_none() {
                    self.state = State::PadD { len, method };
                    return Ok(None);
                }
                self.method = Some(method);
                return Ok(Some(false));
            }
            State::FindReq1 { req1 } => match find(buf, &req1) {
                Some(at) => {
                    buf.advance(at + req1.len());
                    self.state = State::Skey;
                }
                None if buf.len() >= MAX_PAD + req1.len() => return Err(MseError::NoSync),
                None => {
                    self.state = State::FindReq1 { req1 };
                    return Ok(None);
                }
            },
            State::Skey => {
                let (Some(obfuscated), Some(secret)) = (buf.get(..20), self.secret) else {
                    self.state = State::Skey;
                    return Ok(None);
                };
                let req3 = hash(&[b"req3", &secret.0]);
                let mut req2 = [0u8; 20];
                for ((r, o), k) in req2.iter_mut().zip(obfuscated).zip(req3) {
                    *r = o ^ k;
                }
                buf.advance(20);
                let Role::Responder { skeys, .. } = &self.role else {
                    return Err(MseError::UnknownTorrent);
                };
                let skey = skeys
                    .iter()
                    .find(|s| hash(&[b"req2", s.as_bytes()]) == req2)
                    .copied()
                    .ok_or(MseError::UnknownTorrent)?;
                self.skey = Some(skey);
                self.encrypt = Some(Rc4Stream::derive(b"keyB", &secret, &skey));
                self.decrypt = Some(Rc4Stream::derive(b"keyA", &secret, &skey));
                self.state = State::Provide;
            }
            State::Provide => {
                let Some(block) = self.take_decrypted(buf, VC_BLOCK) else {
                    self.state = State::Provide;
                    return Ok(None);
                };
                let mut block = block.as_slice();
                let mut vc = [0u8; 8];
                block.copy_to_slice(&mut vc);
                if vc != VC {
                    return Err(MseError::BadVc);
                }
                let provide = CryptoSet(block.get_u32());
                let pad = usize::from(block.get_u16());
                if pad > MAX_PAD {
                    return Err(MseError::PadTooLong(pad));
                }
                let method = self.select(provide)?;
                self.method = Some(method);
                // Step 4: VC, our choice, no PadD (the specification's
                // advice for this version of the protocol).
                let mut reply = Vec::with_capacity(VC_BLOCK);
                reply.extend_from_slice(&VC);
                reply.extend_from_slice(&method.bit().to_be_bytes());
                reply.extend_from_slice(&0u16.to_be_bytes());
                if let Some(e) = self.encrypt.as_mut() {
                    e.apply(&mut reply);
                }
                self.out.extend_from_slice(&reply);
                self.state = State::PadC { len: pad };
            }
            State::PadC { len } => {
                let Some(block) = self.take_decrypted(buf, len + 2) else {
                    self.state = State::PadC { len };
                    return Ok(None);
                };
                let mut ia_len = block.get(len..).unwrap_or_default();
                let len = usize::from(ia_len.get_u16());
                self.state = State::Ia { len };
            }
            State::Ia { len } => {
                let Some(ia) = self.take_decrypted(buf, len) else {
                    self.state = State::Ia { len };
                    return Ok(None);
                };
                self.peer_payload = ia;
                return Ok(Some(false));
            }
            State::Done => return Ok(None),
        }
        Ok(Some(true))
    }

    /// Step 3, once the peer's key is known: the two hashes, then
    /// `ENCRYPT(VC, crypto_provide, len(PadC) = 0, len(IA), IA)`. Returns the
    /// state that looks for the peer's `ENCRYPT(VC)`.
    fn send_step3(&mut self, secret: &SharedSecret) -> State {
        let Role::Initiator {
            skey,
            provide,
            initial_payload,
        } = &self.role
        else {
            return State::Done;
        };
        let mut encrypt = Rc4Stream::derive(b"keyA", secret, skey);
        let decrypt = Rc4Stream::derive(b"keyB", secret, skey);
        self.out.extend_from_slice(&hash(&[b"req1", &secret.0]));
        let req2 = hash(&[b"req2", skey.as_bytes()]);
        let req3 = hash(&[b"req3", &secret.0]);
        self.out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
        let start = self.out.len();
        self.out.extend_from_slice(&VC);
        self.out.extend_from_slice(&provide.0.to_be_bytes());
        self.out.extend_from_slice(&0u16.to_be_bytes());
        let ia_len = u16::try_from(initial_payload.len()).unwrap_or(u16::MAX);
        self.out.extend_from_slice(&ia_len.to_be_bytes());
        self.out.extend_from_slice(initial_payload);
        if let Some(tail) = self.out.get_mut(start..) {
            encrypt.apply(tail);
        }
        // What the peer's step 4 starts with: VC under its keystream. The
        // real keystream moves past those 8 bytes once they are found.
        let mut pattern = VC;
        Rc4Stream::derive(b"keyB", secret, skey).apply(&mut pattern);
        self.encrypt = Some(encrypt);
        self.decrypt = Some(decrypt);
        State::FindVc { pattern }
    }

    /// The method to answer an offer with: the preferred one when both
    /// sides have it, else any both sides have.
    fn select(&self, offered: CryptoSet) -> Result<Method, MseError> {
        let Role::Responder { accept, prefer, .. } = &self.role else {
            return Err(MseError::BadSelect(offered.0));
        };
        let both = |m: Method| offered.contains(m) && accept.contains(m);
        let other = match prefer {
            Method::Plaintext => Method::Rc4,
            Method::Rc4 => Method::Plaintext,
        };
        [*prefer, other]
            .into_iter()
            .find(|m| both(*m))
            .ok_or(MseError::NoCommonMethod {
                offered: offered.0,
                accepted: accept.0,
            })
    }

    /// The next `n` bytes of `buf`, decrypted with the peer's keystream, or
    /// `None` (nothing taken) until `n` bytes are there.
    fn take_decrypted(&mut self, buf: &mut BytesMut, n: usize) -> Option<Vec<u8>> {
        if buf.len() < n {
            return None;
        }
        let mut block = buf.split_to(n).to_vec();
        if let Some(d) = self.decrypt.as_mut() {
            d.apply(&mut block);
        }
        Some(block)
    }

    /// The result, once the last step is read.
    fn finish(&mut self) -> Established {
        self.state = State::Done;
        let method = self.method.unwrap_or(Method::Rc4);
        let ciphers = match (method, self.encrypt.take(), self.decrypt.take()) {
            (Method::Rc4, Some(encrypt), Some(decrypt)) => Some(Ciphers { encrypt, decrypt }),
            _ => None,
        };
        Established {
            method,
            info_hash: self.skey.unwrap_or(InfoHash([0; 20])),
            initial_payload: std::mem::take(&mut self.peer_payload),
            ciphers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, proptest};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const IH: InfoHash = InfoHash([7; 20]);

    /// Runs both sides against each other, delivering at most `chunk`
    /// bytes at a time, until both are done or one fails. Returns the
    /// results and what was left over for each side after its handshake.
    fn pair(
        mut a: MseHandshake,
        mut b: MseHandshake,
        chunk: usize,
    ) -> (
        Result<Box<Established>, MseError>,
        Result<Box<Established>, MseError>,
    ) {
        let (mut wire_ab, mut wire_ba) = (Vec::new(), Vec::new());
        let (mut buf_a, mut buf_b) = (BytesMut::new(), BytesMut::new());
        let (mut ra, mut rb) = (None, None);
        for _ in 0..10_000 {
            wire_ab.extend(a.take_outgoing());
            wire_ba.extend(b.take_outgoing());
            if ra.is_some() && rb.is_some() {
                break;
            }
            let n = chunk.min(wire_ab.len());
            buf_b.extend_from_slice(&wire_ab.drain(..n).collect::<Vec<_>>());
            let n = chunk.min(wire_ba.len());
            buf_a.extend_from_slice(&wire_ba.drain(..n).collect::<Vec<_>>());
            if rb.is_none() {
                match b.receive(&mut buf_b) {
                    Ok(Progress::Done(e)) => rb = Some(Ok(e)),
                    Ok(Progress::Pending) => {}
                    Err(e) => rb = Some(Err(e)),
                }
            }
            if ra.is_none() {
                match a.receive(&mut buf_a) {
                    Ok(Progress::Done(e)) => ra = Some(Ok(e)),
                    Ok(Progress::Pending) => {}
                    Err(e) => ra = Some(Err(e)),
                }
            }
            if matches!(ra, Some(Err(_))) || matches!(rb, Some(Err(_))) {
                break;
            }
        }
        (
            ra.unwrap_or(Err(MseError::NoSync)),
            rb.unwrap_or(Err(MseError::NoSync)),
        )
    }

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    #[test]
    fn both_sides_agree_on_rc4_and_the_streams_line_up() {
        for (seed, chunk) in [(1, 1), (2, 7), (3, 100), (4, 10_000)] {
            let a = MseHandshake::initiate(IH, CryptoSet::ALL, b"IA bytes", &mut rng(seed));
            let b = MseHandshake::respond(
                vec![InfoHash([1; 20]), IH],
                CryptoSet::ALL,
                Method::Rc4,
                &mut rng(seed + 100),
            );
            let (a, b) = pair(a, b, chunk);
            let (mut a, mut b) = (a.unwrap(), b.unwrap());
            assert_eq!((a.method, b.method), (Method::Rc4, Method::Rc4));
            assert_eq!((a.info_hash, b.info_hash), (IH, IH));
            assert_eq!(b.initial_payload, b"IA bytes");
            assert!(a.initial_payload.is_empty());
            let (ca, cb) = (a.ciphers.as_mut().unwrap(), b.ciphers.as_mut().unwrap());
            for msg in [&b"first"[..], &[0u8; 3000], b"x"] {
                let mut m = msg.to_vec();
                ca.encrypt.apply(&mut m);
                assert_ne!(m, msg);
                cb.decrypt.apply(&mut m);
                assert_eq!(m, msg);
                let mut m = msg.to_vec();
                cb.encrypt.apply(&mut m);
                ca.decrypt.apply(&mut m);
                assert_eq!(m, msg);
            }
        }
    }

    #[test]
    fn the_responder_chooses_by_its_preference_among_what_both_accept() {
        let cases = [
            // (offered, accepted, preferred) -> chosen
            (
                CryptoSet::ALL,
                CryptoSet::ALL,
                Method::Plaintext,
                Ok(Method::Plaintext),
            ),
            (CryptoSet::ALL, CryptoSet::ALL, Method::Rc4, Ok(Method::Rc4)),
            (
                CryptoSet::PLAINTEXT,
                CryptoSet::ALL,
                Method::Rc4,
                Ok(Method::Plaintext),
            ),
            (
                CryptoSet::ALL,
                CryptoSet::RC4,
                Method::Plaintext,
                Ok(Method::Rc4),
            ),
            (CryptoSet::PLAINTEXT, CryptoSet::RC4, Method::Rc4, Err(())),
            (CryptoSet(0), CryptoSet::ALL, Method::Rc4, Err(())),
            // Unknown bits are ignored.
            (
                CryptoSet(0xf0 | 0x02),
                CryptoSet::ALL,
                Method::Plaintext,
                Ok(Method::Rc4),
            ),
        ];
        for (i, (offered, accepted, prefer, want)) in cases.into_iter().enumerate() {
            let a = MseHandshake::initiate(IH, offered, b"hs", &mut rng(i as u64));
            let b = MseHandshake::respond(vec![IH], accepted, prefer, &mut rng(50 + i as u64));
            let (ra, rb) = pair(a, b, 64);
            match want {
                Ok(m) => {
                    let (ea, eb) = (ra.unwrap(), rb.unwrap());
                    assert_eq!((ea.method, eb.method), (m, m), "case {i}");
                    assert_eq!(ea.ciphers.is_some(), m == Method::Rc4);
                    assert_eq!(eb.initial_payload, b"hs");
                }
                Err(()) => assert!(
                    matches!(rb, Err(MseError::NoCommonMethod { .. })),
                    "case {i}: {rb:?}"
                ),
            }
        }
    }

    #[test]
    fn plaintext_after_the_handshake_leaves_the_payload_in_the_clear() {
        let mut a = MseHandshake::initiate(IH, CryptoSet::PLAINTEXT, b"hello", &mut rng(9));
        let mut b = MseHandshake::respond(vec![IH], CryptoSet::ALL, Method::Rc4, &mut rng(10));
        let mut to_b = BytesMut::new();
        to_b.extend_from_slice(&a.take_outgoing());
        assert!(matches!(b.receive(&mut to_b), Ok(Progress::Pending)));
        let mut to_a = BytesMut::from(&b.take_outgoing()[..]);
        assert!(matches!(a.receive(&mut to_a), Ok(Progress::Pending)));
        // A's step 3 and, right behind it, A's payload in the clear.
        to_b.extend_from_slice(&a.take_outgoing());
        to_b.extend_from_slice(b"\x00\x00\x00\x01\x02");
        let Ok(Progress::Done(eb)) = b.receive(&mut to_b) else {
            panic!("B not done")
        };
        assert_eq!(eb.initial_payload, b"hello");
        assert_eq!(&to_b[..], b"\x00\x00\x00\x01\x02");
        // B's step 4, then B's payload in the clear.
        to_a.extend_from_slice(&b.take_outgoing());
        to_a.extend_from_slice(b"clear");
        let Ok(Progress::Done(ea)) = a.receive(&mut to_a) else {
            panic!("A not done")
        };
        assert_eq!(ea.method, Method::Plaintext);
        assert_eq!(&to_a[..], b"clear");
    }

    #[test]
    fn a_torrent_we_do_not_have_is_refused() {
        let a = MseHandshake::initiate(IH, CryptoSet::ALL, b"hs", &mut rng(1));
        let b = MseHandshake::respond(
            vec![InfoHash([2; 20])],
            CryptoSet::ALL,
            Method::Rc4,
            &mut rng(2),
        );
        assert_eq!(pair(a, b, 50).1.unwrap_err(), MseError::UnknownTorrent);
        // And with no torrent at all.
        let a = MseHandshake::initiate(IH, CryptoSet::ALL, b"hs", &mut rng(1));
        let b = MseHandshake::respond(vec![], CryptoSet::ALL, Method::Rc4, &mut rng(2));
        assert_eq!(pair(a, b, 50).1.unwrap_err(), MseError::UnknownTorrent);
    }

    #[test]
    fn garbage_finds_no_sync_point_within_the_bound() {
        // A responder fed random bytes gives up once 628 bytes (key, the
        // longest pad, the hash) have not shown the sync point; not before.
        let mut garbage = vec![0u8; 2000];
        RngCore::fill_bytes(&mut rng(5), &mut garbage);
        let mut b = MseHandshake::respond(vec![IH], CryptoSet::ALL, Method::Rc4, &mut rng(6));
        let mut buf = BytesMut::from(&garbage[..KEY_LEN + MAX_PAD + 19]);
        assert!(matches!(b.receive(&mut buf), Ok(Progress::Pending)));
        buf.extend_from_slice(&garbage[KEY_LEN + MAX_PAD + 19..KEY_LEN + MAX_PAD + 20]);
        assert_eq!(b.receive(&mut buf).unwrap_err(), MseError::NoSync);
        // Likewise an initiator whose peer never sends ENCRYPT(VC).
        let mut a = MseHandshake::initiate(IH, CryptoSet::ALL, b"hs", &mut rng(7));
        let mut buf = BytesMut::from(&garbage[..KEY_LEN + MAX_PAD + 7]);
        assert!(matches!(a.receive(&mut buf), Ok(Progress::Pending)));
        buf.extend_from_slice(&garbage[..1]);
        assert_eq!(a.receive(&mut buf).unwrap_err(), MseError::NoSync);
    }

    #[test]
    fn the_responder_says_nothing_before_a_whole_key_is_in() {
        let mut b = MseHandshake::respond(vec![IH], CryptoSet::ALL, Method::Rc4, &mut rng(6));
        assert!(b.take_outgoing().is_empty());
        let mut buf = BytesMut::from(&[0x55u8; KEY_LEN - 1][..]);
        assert!(matches!(b.receive(&mut buf), Ok(Progress::Pending)));
        assert!(b.take_outgoing().is_empty());
        buf.extend_from_slice(&[0x55]);
        assert!(matches!(b.receive(&mut buf), Ok(Progress::Pending)));
        let step2 = b.take_outgoing();
        assert!((KEY_LEN..=KEY_LEN + MAX_PAD).contains(&step2.len()));
    }

    #[test]
    fn a_degenerate_public_key_is_refused() {
        let mut b = MseHandshake::respond(vec![IH], CryptoSet::ALL, Method::Rc4, &mut rng(6));
        let mut buf = BytesMut::from(&[0u8; KEY_LEN][..]);
        assert_eq!(b.receive(&mut buf).unwrap_err(), MseError::BadPublicKey);
    }

    /// A hand-made step 3 from an initiator that knows the secret, with a
    /// PadC of `pad_len` and the given VC.
    fn responder_after_step3(pad_len: u16, vc: [u8; 8]) -> Result<Progress, MseError> {
        let xa = PrivateKey::random(&mut rng(20));
        let mut b = MseHandshake::respond(vec![IH], CryptoSet::ALL, Method::Rc4, &mut rng(21));
        let mut ya = BytesMut::from(&xa.public_key().0[..]);
        assert!(matches!(b.receive(&mut ya), Ok(Progress::Pending)));
        let yb: [u8; KEY_LEN] = b.take_outgoing()[..KEY_LEN].try_into().unwrap();
        let s = xa.shared_secret(&PublicKey(yb)).unwrap();
        let mut msg = hash(&[b"req1", &s.0]).to_vec();
        let (req2, req3) = (hash(&[b"req2", IH.as_bytes()]), hash(&[b"req3", &s.0]));
        msg.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
        let mut enc = vc.to_vec();
        enc.extend_from_slice(&CryptoSet::ALL.0.to_be_bytes());
        enc.extend_from_slice(&pad_len.to_be_bytes());
        enc.extend(std::iter::repeat_n(0, usize::from(pad_len)));
        enc.extend_from_slice(&0u16.to_be_bytes());
        Rc4Stream::derive(b"keyA", &s, &IH).apply(&mut enc);
        msg.extend(enc);
        b.receive(&mut BytesMut::from(&msg[..]))
    }

    #[test]
    fn a_wrong_vc_or_an_oversized_pad_is_refused() {
        assert!(matches!(
            responder_after_step3(MAX_PAD as u16, VC),
            Ok(Progress::Done(_))
        ));
        assert_eq!(
            responder_after_step3(MAX_PAD as u16 + 1, VC).unwrap_err(),
            MseError::PadTooLong(MAX_PAD + 1)
        );
        assert_eq!(
            responder_after_step3(0, [1; 8]).unwrap_err(),
            MseError::BadVc
        );
    }

    #[test]
    fn the_plaintext_handshake_is_told_apart_within_20_bytes() {
        let mut hs = vec![19u8];
        hs.extend_from_slice(PROTOCOL);
        assert!(is_plaintext_start(&hs));
        assert!(is_plaintext_start(&hs[..5]));
        assert!(is_plaintext_start(&[]));
        assert!(!is_plaintext_start(&[18]));
        let mut other = hs.clone();
        other[19] = b'X';
        assert!(!is_plaintext_start(&other));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_either_side(
            data in proptest::collection::vec(any::<u8>(), 0..1500),
            split in 0usize..1500,
        ) {
            let split = split.min(data.len());
            let mut a = MseHandshake::initiate(IH, CryptoSet::ALL, b"hs", &mut rng(1));
            let mut b = MseHandshake::respond(vec![IH], CryptoSet::ALL, Method::Rc4, &mut rng(2));
            for side in [&mut a, &mut b] {
                let mut buf = BytesMut::from(&data[..split]);
                let first = side.receive(&mut buf);
                if first.is_ok() {
                    buf.extend_from_slice(&data[split..]);
                    let _ = side.receive(&mut buf);
                }
                prop_assert!(buf.len() <= data.len());
            }
        }
    }
}
