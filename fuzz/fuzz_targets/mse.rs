//! Fuzzes the MSE/PE handshake of `rivulet-wire`: the fuzzer's bytes go
//! to a responder or an initiator as what the peer sent, in chunks of the
//! sizes the input chooses; or an honest initiator and responder talk while
//! the fuzzer flips bytes of what they send each other. No input may make
//! either side panic or hold more than it was given; an exchange left
//! untouched must end with both sides agreeing.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rivulet_core::InfoHash;
use rivulet_wire::mse::{CryptoSet, Method, MseHandshake, Progress};

const IH: InfoHash = InfoHash([7; 20]);

/// Feeds `data` to `side` in chunks sized by `sizes`; stops at the first
/// error or when done.
fn feed(side: &mut MseHandshake, data: &[u8], sizes: &[u8]) {
    let mut buf = BytesMut::new();
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let n = usize::from(sizes.get(i % sizes.len().max(1)).copied().unwrap_or(64)).max(1);
        i += 1;
        let end = (at + n).min(data.len());
        buf.extend_from_slice(&data[at..end]);
        at = end;
        let _ = side.take_outgoing();
        match side.receive(&mut buf) {
            Ok(Progress::Pending) => assert!(buf.len() <= data.len()),
            Ok(Progress::Done(_)) | Err(_) => return,
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let (sizes, data) = rest.split_at(rest.len().min(4));
    let mut rng = StdRng::seed_from_u64(u64::from(mode));
    match mode % 3 {
        0 => {
            let mut b = MseHandshake::respond(vec![IH], CryptoSet::ALL, Method::Rc4, &mut rng);
            feed(&mut b, data, sizes);
        }
        1 => {
            let mut a = MseHandshake::initiate(IH, CryptoSet::ALL, b"ia", &mut rng);
            feed(&mut a, data, sizes);
        }
        _ => {
            // Pairs of (position, xor) to apply to the A-to-B stream.
            let edits: Vec<(usize, u8)> = data
                .chunks_exact(3)
                .map(|c| (usize::from(u16::from_be_bytes([c[0], c[1]])), c[2]))
                .filter(|&(_, x)| x != 0)
                .collect();
            let mut a = MseHandshake::initiate(IH, CryptoSet::ALL, b"hs", &mut rng);
            let mut b = MseHandshake::respond(vec![IH], CryptoSet::ALL, Method::Rc4, &mut rng);
            let (mut to_a, mut to_b) = (BytesMut::new(), BytesMut::new());
            let (mut sent_ab, mut done_a, mut done_b) = (0usize, false, false);
            let mut touched = false;
            for _ in 0..16 {
                let mut out = a.take_outgoing();
                for &(pos, x) in &edits {
                    if let Some(byte) = pos.checked_sub(sent_ab).and_then(|p| out.get_mut(p)) {
                        *byte ^= x;
                        touched = true;
                    }
                }
                sent_ab += out.len();
                to_b.extend_from_slice(&out);
                to_a.extend_from_slice(&b.take_outgoing());
                if !done_b {
                    match b.receive(&mut to_b) {
                        Ok(Progress::Done(e)) => {
                            done_b = true;
                            assert_eq!(e.info_hash, IH);
                        }
                        Ok(Progress::Pending) => {}
                        Err(_) => break,
                    }
                }
                if !done_a {
                    match a.receive(&mut to_a) {
                        Ok(Progress::Done(_)) => done_a = true,
                        Ok(Progress::Pending) => {}
                        Err(_) => break,
                    }
                }
            }
            if !touched {
                assert!(done_a && done_b, "an honest exchange must finish");
            }
        }
    }
});
