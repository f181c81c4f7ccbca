//! Fuzzes the peer wire decoders of `rivulet-wire`: the streaming message
//! decoder (fed in pseudo-random chunk sizes), the handshake (whole and in two
//! steps), the BEP 10 extended handshake, BEP 9 metadata and BEP 11 PEX
//! payloads, and bitfields. Checks that the outcome does not depend on how the
//! stream was split, and that whatever decodes re-encodes to the same bytes
//! (messages) or to bytes that decode to the same value (extension payloads).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rivulet_wire::{
    decode_peer_id, Bitfield, ExtendedHandshake, Handshake, HandshakePrefix, Limits, Message,
    MessageDecoder, MetadataMessage, PexMessage, WireError, HANDSHAKE_LEN,
};

/// Tiny limits, so that the limit checks are reached with short inputs.
const SMALL: Limits = Limits {
    max_message_len: 48,
    max_bitfield_bytes: 16,
    max_extended_payload: 300,
};

/// Messages decoded from `data` read in chunks of the sizes `next_size` gives,
/// then the error, or the number of bytes left waiting for more.
fn run(
    limits: Limits,
    data: &[u8],
    mut next_size: impl FnMut() -> usize,
) -> (Vec<Message>, Result<usize, WireError>) {
    let mut dec = MessageDecoder::with_limits(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(next_size().clamp(1, rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            let needed = dec.bytes_needed(&buf);
            match dec.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => {
                    assert!(needed > 0, "decoder waits, yet bytes_needed is 0");
                    break;
                }
                Err(e) => {
                    assert_eq!(needed, 0, "bytes_needed asks for more of a bad message");
                    return (out, Err(e));
                }
            }
        }
    }
    (out, Ok(buf.len()))
}

fn check_extension_payloads(payload: &Bytes) {
    if let Ok(h) = ExtendedHandshake::decode(payload) {
        let again = ExtendedHandshake::decode(&h.to_bytes());
        assert_eq!(again.as_ref(), Ok(&h), "extended handshake round trip");
        assert!(h.m.len() <= rivulet_wire::MAX_EXTENSIONS);
        assert!(h
            .reqq
            .is_none_or(|r| (1..=rivulet_wire::MAX_REQQ).contains(&r)));
        assert!(h
            .metadata_size
            .is_none_or(|s| (1..=rivulet_wire::MAX_METADATA_SIZE).contains(&s)));
    }
    if let Ok(m) = MetadataMessage::decode(payload) {
        let again = MetadataMessage::decode(&m.to_bytes());
        assert_eq!(again.as_ref(), Ok(&m), "metadata round trip");
        if let MetadataMessage::Data { data, .. } = &m {
            assert!(!data.is_empty() && data.len() <= rivulet_wire::METADATA_PIECE_LEN);
        }
    }
    if let Ok(p) = PexMessage::decode(payload) {
        let again = PexMessage::decode(&p.to_bytes());
        assert_eq!(again.as_ref(), Ok(&p), "pex round trip");
        assert!(p.added.len() <= rivulet_wire::MAX_PEX_PEERS);
        assert!(p.dropped.len() <= rivulet_wire::MAX_PEX_PEERS);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = if control & 0x80 != 0 {
        SMALL
    } else {
        Limits::default()
    };

    // The stream decoder: all at once, then in pseudo-random chunks of 1 to
    // 2^(control & 7) * 4 bytes (xorshift seeded by the control byte).
    let whole = run(limits, input, || usize::MAX);
    let mut state = u32::from(control) | 0x9e37_7900;
    let max_chunk = 4usize << (control & 7);
    let split = run(limits, input, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + (state as usize) % max_chunk
    });
    assert_eq!(whole, split, "outcome depends on how the stream was split");

    // Decoded messages re-encode to exactly the bytes they came from, and each
    // decodes alone to itself.
    let mut re = BytesMut::new();
    for m in &whole.0 {
        let before = re.len();
        m.encode(&mut re);
        assert_eq!(re.len() - before, m.encoded_len());
        let mut one = BytesMut::from(&re[before..]);
        let again = MessageDecoder::with_limits(limits).decode(&mut one);
        assert_eq!(again.as_ref(), Ok(&Some(m.clone())), "message round trip");
        assert!(one.is_empty());
        match m {
            Message::Extended { payload, .. } => check_extension_payloads(payload),
            Message::Bitfield(bits) => {
                let n = (bits.len() * 8).saturating_sub(usize::from(control & 7));
                if let Ok(b) = Bitfield::from_bytes(bits, n) {
                    assert_eq!(b.as_bytes(), &bits[..]);
                    assert!(b.count_ones() <= n);
                    assert_eq!(b.ones().count(), b.count_ones());
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        &input[..re.len()],
        &re[..],
        "re-encoding differs from input"
    );

    // The handshake, whole and in two steps.
    match Handshake::parse(input) {
        Ok(Some(h)) => {
            assert_eq!(&h.to_bytes()[..], &input[..HANDSHAKE_LEN]);
            let mut buf = BytesMut::from(input);
            let prefix = HandshakePrefix::decode(&mut buf).unwrap().unwrap();
            let id = decode_peer_id(&mut buf).unwrap();
            assert_eq!(prefix.with_peer_id(id), h);
            assert_eq!(buf.len(), input.len() - HANDSHAKE_LEN);
        }
        Ok(None) => assert!(input.len() < HANDSHAKE_LEN),
        Err(e) => assert_eq!(HandshakePrefix::parse(input), Err(e)),
    }

    // The extension payload decoders on the raw input.
    check_extension_payloads(&Bytes::copy_from_slice(input));
});
