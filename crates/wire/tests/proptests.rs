//! Property tests: encode/decode round trips for every type, chunking
//! independence of the stream decoder, and no panic on arbitrary bytes.
// Helpers outside #[test] functions are not covered by clippy.toml's test allowances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{Bytes, BytesMut};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use rivulet_core::{InfoHash, PeerId};
use rivulet_wire::{
    metadata_piece_count, metadata_piece_len, Bitfield, BlockRequest, ExtendedHandshake, Handshake,
    HandshakePrefix, Limits, Message, MessageDecoder, MetadataMessage, PexFlags, PexMessage,
    PexPeer, Reserved, MAX_CLIENT_NAME_LEN, MAX_METADATA_SIZE, MAX_REQQ,
};

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn arb_block() -> impl Strategy<Value = BlockRequest> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(piece, offset, length)| BlockRequest {
        piece,
        offset,
        length,
    })
}

/// Ids the decoder does not know, so `Unknown` round-trips.
fn arb_unknown_id() -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter("known id", |id| !matches!(id, 0..=9 | 13..=17 | 20))
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        any::<u32>().prop_map(|piece| Message::Have { piece }),
        any::<u32>().prop_map(|piece| Message::SuggestPiece { piece }),
        any::<u32>().prop_map(|piece| Message::AllowedFast { piece }),
        any::<u16>().prop_map(Message::Port),
        arb_block().prop_map(Message::Request),
        arb_block().prop_map(Message::Cancel),
        arb_block().prop_map(Message::RejectRequest),
        arb_bytes(300).prop_map(Message::Bitfield),
        (any::<u32>(), any::<u32>(), arb_bytes(2000)).prop_map(|(piece, offset, data)| {
            Message::Piece {
                piece,
                offset,
                data,
            }
        }),
        (any::<u8>(), arb_bytes(300)).prop_map(|(id, payload)| Message::Extended { id, payload }),
        (arb_unknown_id(), arb_bytes(100))
            .prop_map(|(id, payload)| Message::Unknown { id, payload }),
    ]
}

fn arb_handshake() -> impl Strategy<Value = Handshake> {
    (any::<[u8; 8]>(), any::<[u8; 20]>(), any::<[u8; 20]>()).prop_map(|(r, h, p)| Handshake {
        reserved: Reserved::from_bytes(r),
        info_hash: InfoHash(h),
        peer_id: PeerId(p),
    })
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

/// Extended handshakes whose fields are all within the decoder's bounds.
fn arb_extended_handshake() -> impl Strategy<Value = ExtendedHandshake> {
    (
        btree_map("[a-z_]{1,20}|\\PC{0,8}", any::<u8>(), 0..10),
        proptest::option::of(
            "\\PC{0,40}".prop_filter("too long", |s: &String| s.len() <= MAX_CLIENT_NAME_LEN),
        ),
        proptest::option::of(1..=MAX_REQQ),
        proptest::option::of(1..=u16::MAX),
        proptest::option::of(arb_ip()),
        proptest::option::of(any::<[u8; 4]>().prop_map(Ipv4Addr::from)),
        proptest::option::of(any::<[u8; 16]>().prop_map(Ipv6Addr::from)),
        proptest::option::of(1..=MAX_METADATA_SIZE),
    )
        .prop_map(
            |(m, v, reqq, p, yourip, ipv4, ipv6, metadata_size)| ExtendedHandshake {
                m,
                v,
                reqq,
                p,
                yourip,
                ipv4,
                ipv6,
                metadata_size,
            },
        )
}

fn arb_metadata_message() -> impl Strategy<Value = MetadataMessage> {
    prop_oneof![
        any::<u32>().prop_map(|piece| MetadataMessage::Request { piece }),
        any::<u32>().prop_map(|piece| MetadataMessage::Reject { piece }),
        // Sizes of up to five pieces, any piece of it.
        (1u64..=5 * 16384, any::<u32>(), any::<u8>()).prop_map(|(total_size, p, fill)| {
            let piece = p % u32::try_from(metadata_piece_count(total_size)).unwrap();
            let len = metadata_piece_len(total_size, piece).unwrap();
            MetadataMessage::Data {
                piece,
                total_size,
                data: Bytes::from(vec![fill; len]),
            }
        }),
    ]
}

fn arb_socket_v4() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 4]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port)))
}

fn arb_socket_v6() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 16]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0)))
}

fn arb_pex() -> impl Strategy<Value = PexMessage> {
    let peer = |addr: BoxedStrategy<SocketAddr>| {
        (addr, any::<u8>()).prop_map(|(addr, f)| PexPeer {
            addr,
            flags: PexFlags(f),
        })
    };
    (
        vec(peer(arb_socket_v4().boxed()), 0..60),
        vec(peer(arb_socket_v6().boxed()), 0..60),
        vec(arb_socket_v4(), 0..60),
        vec(arb_socket_v6(), 0..60),
    )
        .prop_map(|(a4, a6, d4, d6)| PexMessage {
            // The decoder lists IPv4 peers before IPv6 ones.
            added: a4.into_iter().chain(a6).collect(),
            dropped: d4.into_iter().chain(d6).collect(),
        })
}

/// Cuts `data` into pieces whose sizes cycle through `sizes` (each 1 or more).
fn chunks<'a>(data: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    let mut i = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        i += 1;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        Some(head)
    })
}

/// Everything a decoder makes of `data` read in the given chunk sizes: the
/// messages, then the error or the bytes left waiting.
fn run_decoder(
    limits: Limits,
    data: &[u8],
    sizes: &[usize],
) -> (Vec<Message>, Result<usize, rivulet_wire::WireError>) {
    let mut dec = MessageDecoder::with_limits(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks(data, sizes) {
        buf.extend_from_slice(chunk);
        loop {
            let needed = dec.bytes_needed(&buf);
            match dec.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => {
                    assert!(needed > 0, "decoder waits but says nothing is needed");
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn message_round_trip(m in arb_message()) {
        let bytes = m.to_bytes();
        prop_assert_eq!(bytes.len(), m.encoded_len());
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = MessageDecoder::new();
        prop_assert_eq!(dec.decode(&mut buf), Ok(Some(m)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn stream_in_any_chunks(
        msgs in vec(arb_message(), 0..30),
        sizes in vec(1usize..200, 1..10),
    ) {
        let mut wire = BytesMut::new();
        for m in &msgs {
            m.encode(&mut wire);
        }
        let (got, rest) = run_decoder(Limits::default(), &wire, &sizes);
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(rest, Ok(0));
    }

    #[test]
    fn handshake_round_trip(h in arb_handshake(), split in 0usize..=68) {
        let bytes = h.to_bytes();
        prop_assert_eq!(Handshake::parse(&bytes), Ok(Some(h)));
        // Any prefix is "need more", never an error.
        prop_assert_eq!(Handshake::parse(&bytes[..split.min(67)]), Ok(None));
        // Two steps.
        let mut buf = BytesMut::from(&bytes[..split]);
        let first = HandshakePrefix::decode(&mut buf).unwrap();
        prop_assert_eq!(first.is_some(), split >= 48);
        buf.extend_from_slice(&bytes[split..]);
        let prefix = match first {
            Some(p) => p,
            None => HandshakePrefix::decode(&mut buf).unwrap().unwrap(),
        };
        let id = rivulet_wire::decode_peer_id(&mut buf).unwrap();
        prop_assert_eq!(prefix.with_peer_id(id), h);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn extended_handshake_round_trip(h in arb_extended_handshake()) {
        let bytes = h.to_bytes();
        prop_assert_eq!(ExtendedHandshake::decode(&bytes), Ok(h.clone()));
        // And through the message layer.
        let mut buf = BytesMut::from(&h.to_message().to_bytes()[..]);
        let Some(Message::Extended { id: 0, payload }) = MessageDecoder::new().decode(&mut buf).unwrap() else {
            panic!("not an extended handshake");
        };
        prop_assert_eq!(ExtendedHandshake::decode(&payload), Ok(h));
    }

    #[test]
    fn metadata_round_trip(m in arb_metadata_message()) {
        prop_assert_eq!(MetadataMessage::decode(&m.to_bytes()), Ok(m));
    }

    #[test]
    fn pex_round_trip(p in arb_pex()) {
        prop_assert_eq!(PexMessage::decode(&p.to_bytes()), Ok(p));
    }

    #[test]
    fn bitfield_round_trip(bits in vec(any::<bool>(), 0..200)) {
        let mut b = Bitfield::new(bits.len());
        for (i, &on) in bits.iter().enumerate() {
            if on {
                prop_assert!(b.set(i));
            }
        }
        let ones = bits.iter().filter(|&&on| on).count();
        prop_assert_eq!(b.count_ones(), ones);
        prop_assert_eq!(b.ones().count(), ones);
        prop_assert_eq!(b.all(), ones == bits.len());
        for (i, &on) in bits.iter().enumerate() {
            prop_assert_eq!(b.get(i), on);
        }
        prop_assert_eq!(Bitfield::from_bytes(b.as_bytes(), bits.len()), Ok(b));
    }

    /// Arbitrary bytes, in arbitrary chunks, never panic the decoder; the
    /// outcome does not depend on how the bytes were split; and every message
    /// decoded re-encodes to the bytes it came from.
    #[test]
    fn arbitrary_bytes_never_panic(
        data in vec(any::<u8>(), 0..600),
        sizes in vec(1usize..64, 1..8),
        small in any::<bool>(),
    ) {
        let limits = if small {
            Limits { max_message_len: 40, max_bitfield_bytes: 8, max_extended_payload: 64 }
        } else {
            Limits::default()
        };
        let whole = run_decoder(limits, &data, &[data.len().max(1)]);
        let split = run_decoder(limits, &data, &sizes);
        prop_assert_eq!(&whole, &split);
        let mut re = BytesMut::new();
        for m in &whole.0 {
            m.encode(&mut re);
        }
        prop_assert_eq!(&data[..re.len()], &re[..]);
    }

    /// Random frames with plausible lengths and ids reach deeper than
    /// uniformly random bytes.
    #[test]
    fn random_frames_never_panic(
        frames in vec((0u32..40, 0u8..24, vec(any::<u8>(), 0..40)), 0..20),
        sizes in vec(1usize..64, 1..8),
    ) {
        let mut data = Vec::new();
        for (len, id, body) in &frames {
            data.extend_from_slice(&len.to_be_bytes());
            data.push(*id);
            data.extend_from_slice(body);
        }
        let whole = run_decoder(Limits::default(), &data, &[data.len().max(1)]);
        let split = run_decoder(Limits::default(), &data, &sizes);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn arbitrary_payloads_never_panic(data in vec(any::<u8>(), 0..300), n in 0usize..3000) {
        let _ = Handshake::parse(&data);
        let _ = HandshakePrefix::parse(&data);
        if let Ok(h) = ExtendedHandshake::decode(&data) {
            prop_assert_eq!(ExtendedHandshake::decode(&h.to_bytes()), Ok(h));
        }
        if let Ok(m) = MetadataMessage::decode(&Bytes::from(data.clone())) {
            prop_assert_eq!(MetadataMessage::decode(&m.to_bytes()), Ok(m));
        }
        if let Ok(p) = PexMessage::decode(&data) {
            prop_assert_eq!(PexMessage::decode(&p.to_bytes()), Ok(p));
        }
        if let Ok(b) = Bitfield::from_bytes(&data, n) {
            prop_assert_eq!(b.as_bytes(), &data[..]);
            prop_assert!(b.count_ones() <= n);
        }
    }

    /// Bencoded dictionaries with the right keys but random values.
    #[test]
    fn extension_dicts_with_random_values(
        entries in btree_map(
            prop_oneof![
                Just("m"), Just("v"), Just("p"), Just("reqq"), Just("yourip"), Just("ipv4"),
                Just("ipv6"), Just("metadata_size"), Just("msg_type"), Just("piece"),
                Just("total_size"), Just("added"), Just("added.f"), Just("added6"),
                Just("added6.f"), Just("dropped"), Just("dropped6"),
            ],
            prop_oneof![
                any::<i64>().prop_map(rivulet_bencode::OwnedValue::Int),
                (-3i64..5).prop_map(rivulet_bencode::OwnedValue::Int),
                vec(any::<u8>(), 0..40).prop_map(rivulet_bencode::OwnedValue::Bytes),
                btree_map(vec(any::<u8>(), 0..5), any::<i64>().prop_map(rivulet_bencode::OwnedValue::Int), 0..4)
                    .prop_map(|m| rivulet_bencode::OwnedValue::Dict(m.into_iter().collect::<BTreeMap<_, _>>())),
            ],
            0..8,
        ),
        tail in vec(any::<u8>(), 0..40),
    ) {
        let dict = rivulet_bencode::OwnedValue::Dict(
            entries.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect(),
        );
        let mut data = dict.to_bytes();
        let h = ExtendedHandshake::decode(&data).unwrap();
        prop_assert_eq!(ExtendedHandshake::decode(&h.to_bytes()), Ok(h));
        let p = PexMessage::decode(&data).unwrap();
        prop_assert_eq!(PexMessage::decode(&p.to_bytes()), Ok(p));
        data.extend_from_slice(&tail);
        if let Ok(m) = MetadataMessage::decode(&Bytes::from(data)) {
            prop_assert_eq!(MetadataMessage::decode(&m.to_bytes()), Ok(m));
        }
    }
}
