//! The streaming decoder: exact bytes, split reads, limits checked before
//! buffering, fixed sizes.
// Helpers outside #[test] functions are not covered by clippy.toml's test allowances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::{BufMut, Bytes, BytesMut};
use rivulet_wire::message::id;
use rivulet_wire::{
    BlockRequest, Limits, Message, MessageDecoder, WireError, DEFAULT_MAX_BITFIELD_BYTES,
    DEFAULT_MAX_EXTENDED_PAYLOAD, DEFAULT_MAX_MESSAGE_LEN,
};

fn block() -> BlockRequest {
    BlockRequest {
        piece: 0x0102_0304,
        offset: 0x4000,
        length: 0x4000,
    }
}

/// One of every message, in an order a real connection might produce.
fn every_message() -> Vec<Message> {
    vec![
        Message::Bitfield(Bytes::from_static(&[0xff, 0xfe, 0x80])),
        Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"d1:md11:ut_metadatai2eee"),
        },
        Message::Port(6881),
        Message::Interested,
        Message::Unchoke,
        Message::Request(block()),
        Message::Piece {
            piece: 1,
            offset: 0,
            data: Bytes::from(vec![0xab; 16384]),
        },
        Message::Piece {
            piece: 2,
            offset: 7,
            data: Bytes::new(),
        },
        Message::Have { piece: 99 },
        Message::KeepAlive,
        Message::Cancel(block()),
        Message::Choke,
        Message::NotInterested,
        Message::HaveAll,
        Message::HaveNone,
        Message::SuggestPiece { piece: 3 },
        Message::RejectRequest(block()),
        Message::AllowedFast { piece: 4 },
        Message::Extended {
            id: 3,
            payload: Bytes::new(),
        },
        Message::Unknown {
            id: 21,
            payload: Bytes::from_static(b"v2 hash request"),
        },
        Message::Unknown {
            id: 255,
            payload: Bytes::new(),
        },
        Message::KeepAlive,
    ]
}

fn stream(messages: &[Message]) -> BytesMut {
    let mut buf = BytesMut::new();
    for m in messages {
        m.encode(&mut buf);
    }
    buf
}

fn decode_all(dec: &mut MessageDecoder, buf: &mut BytesMut) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = dec.decode(buf).unwrap() {
        out.push(m);
    }
    out
}

#[test]
fn whole_stream_at_once() {
    let msgs = every_message();
    let mut buf = stream(&msgs);
    assert_eq!(decode_all(&mut MessageDecoder::new(), &mut buf), msgs);
    assert!(buf.is_empty());
}

#[test]
fn one_byte_at_a_time() {
    let msgs = every_message();
    let wire = stream(&msgs);
    let mut dec = MessageDecoder::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in wire.iter() {
        buf.put_u8(b);
        got.extend(decode_all(&mut dec, &mut buf));
    }
    assert_eq!(got, msgs);
    assert!(buf.is_empty());
}

#[test]
fn split_at_every_boundary() {
    let msgs = every_message();
    let wire = stream(&msgs).freeze();
    // Two reads, split at every position (the long piece block makes a full
    // sweep slow in debug builds, so step through it).
    let mut at = 0;
    while at <= wire.len() {
        let mut dec = MessageDecoder::new();
        let mut buf = BytesMut::from(&wire[..at]);
        let mut got = decode_all(&mut dec, &mut buf);
        buf.extend_from_slice(&wire[at..]);
        got.extend(decode_all(&mut dec, &mut buf));
        assert_eq!(got, msgs, "split at {at}");
        assert!(buf.is_empty());
        at += if (100..16_300).contains(&at) { 97 } else { 1 };
    }
}

#[test]
fn each_message_decodes_from_its_exact_bytes() {
    for m in every_message() {
        let mut buf = BytesMut::from(&m.to_bytes()[..]);
        let mut dec = MessageDecoder::new();
        assert_eq!(dec.decode(&mut buf), Ok(Some(m.clone())));
        assert!(buf.is_empty(), "{m:?}");
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }
    // A few spelled out.
    let mut dec = MessageDecoder::new();
    let mut buf = BytesMut::from(&[0, 0, 0, 0x0d, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0][..]);
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Message::Request(BlockRequest {
            piece: 1,
            offset: 0x4000,
            length: 0x4000
        })))
    );
    let mut buf = BytesMut::from(&[0, 0, 0, 3, 9, 0x1a, 0xe1][..]);
    assert_eq!(dec.decode(&mut buf), Ok(Some(Message::Port(6881))));
}

#[test]
fn piece_block_is_not_copied() {
    let m = Message::Piece {
        piece: 5,
        offset: 16384,
        data: Bytes::from(vec![7; 16384]),
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    m.encode(&mut buf);
    m.encode(&mut buf);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let mut dec = MessageDecoder::new();
    for _ in 0..2 {
        let Some(Message::Piece { data, .. }) = dec.decode(&mut buf).unwrap() else {
            panic!("expected a piece");
        };
        let p = data.as_ptr() as usize;
        assert!(p >= start && p + data.len() <= end, "block was copied");
        assert_eq!(data.len(), 16384);
    }
}

#[test]
fn oversize_length_rejected_before_buffering() {
    let mut dec = MessageDecoder::new();
    let max = Limits::default().max_len();
    assert_eq!(max, DEFAULT_MAX_EXTENDED_PAYLOAD + 2);
    // 4 GiB - 1: refused from the length prefix alone.
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert_eq!(
        dec.decode(&mut buf),
        Err(WireError::MessageTooLong {
            id: None,
            len: u32::MAX,
            max
        })
    );
    assert_eq!(buf.len(), 4, "buffer must be left alone on error");
    assert_eq!(dec.bytes_needed(&buf), 0);
    let mut buf = BytesMut::from(&(max + 1).to_be_bytes()[..]);
    assert!(dec.decode(&mut buf).is_err());

    // Limits that depend on the id: refused as soon as the id byte arrives.
    let cases: [(u8, u32, u32); 4] = [
        (
            id::PIECE,
            DEFAULT_MAX_MESSAGE_LEN + 1,
            DEFAULT_MAX_MESSAGE_LEN,
        ),
        (
            id::BITFIELD,
            DEFAULT_MAX_BITFIELD_BYTES + 2,
            DEFAULT_MAX_BITFIELD_BYTES + 1,
        ),
        (
            id::EXTENDED,
            DEFAULT_MAX_EXTENDED_PAYLOAD + 3,
            DEFAULT_MAX_EXTENDED_PAYLOAD + 2,
        ),
        (99, DEFAULT_MAX_MESSAGE_LEN + 1, DEFAULT_MAX_MESSAGE_LEN),
    ];
    for (message_id, len, max) in cases {
        // One byte more than allowed: refused as soon as the id arrives, or
        // from the prefix alone when it exceeds every limit (extended has the
        // largest limit).
        let mut buf = BytesMut::new();
        buf.put_u32(len);
        let over_all = len > Limits::default().max_len();
        let want_early = if over_all {
            Err(WireError::MessageTooLong {
                id: None,
                len,
                max: len - 1,
            })
        } else {
            Ok(None)
        };
        assert_eq!(dec.decode(&mut buf), want_early, "id {message_id}");
        buf.put_u8(message_id);
        if !over_all {
            assert_eq!(
                dec.decode(&mut buf),
                Err(WireError::MessageTooLong {
                    id: Some(message_id),
                    len,
                    max
                }),
                "id {message_id}"
            );
        }
        // Exactly at the limit is fine (and waits for the body).
        let mut buf = BytesMut::new();
        buf.put_u32(len - 1);
        buf.put_u8(message_id);
        assert_eq!(dec.decode(&mut buf), Ok(None), "id {message_id}");
        assert_eq!(dec.bytes_needed(&buf), len as usize - 2);
    }
}

#[test]
fn every_wrong_fixed_size_rejected() {
    let fixed: [(u8, u32); 13] = [
        (id::CHOKE, 1),
        (id::UNCHOKE, 1),
        (id::INTERESTED, 1),
        (id::NOT_INTERESTED, 1),
        (id::HAVE_ALL, 1),
        (id::HAVE_NONE, 1),
        (id::HAVE, 5),
        (id::SUGGEST_PIECE, 5),
        (id::ALLOWED_FAST, 5),
        (id::REQUEST, 13),
        (id::CANCEL, 13),
        (id::REJECT_REQUEST, 13),
        (id::PORT, 3),
    ];
    let mut dec = MessageDecoder::new();
    for (message_id, expected) in fixed {
        for len in (1..=40).chain([1000, 16393, 1 << 20]) {
            let mut buf = BytesMut::new();
            buf.put_u32(len);
            buf.put_u8(message_id);
            let got = dec.decode(&mut buf);
            if len == expected && len == 1 {
                assert!(matches!(got, Ok(Some(_))), "id {message_id}");
            } else if len == expected {
                assert_eq!(got, Ok(None), "id {message_id} len {len}");
                buf.put_slice(&vec![0; len as usize - 1]);
                assert!(matches!(dec.decode(&mut buf), Ok(Some(_))));
            } else {
                assert_eq!(
                    got,
                    Err(WireError::WrongMessageLength {
                        id: message_id,
                        len,
                        expected
                    }),
                    "id {message_id} len {len}"
                );
            }
        }
    }
    // Messages with a minimum size.
    for (message_id, min) in [(id::PIECE, 9u32), (id::EXTENDED, 2)] {
        for len in 1..min {
            let mut buf = BytesMut::new();
            buf.put_u32(len);
            buf.put_u8(message_id);
            assert_eq!(
                dec.decode(&mut buf),
                Err(WireError::MessageTooShort {
                    id: message_id,
                    len,
                    min
                })
            );
        }
    }
}

#[test]
fn bitfield_limit_from_piece_count() {
    let mut dec = MessageDecoder::with_limits(Limits::default().with_piece_count(17));
    assert_eq!(dec.limits().max_bitfield_bytes, 3);
    let mut buf = BytesMut::from(&[0, 0, 0, 4, 5, 0xff, 0xff, 0x80][..]);
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Message::Bitfield(Bytes::from_static(&[
            0xff, 0xff, 0x80
        ]))))
    );
    let mut buf = BytesMut::from(&[0, 0, 0, 5, 5][..]);
    assert_eq!(
        dec.decode(&mut buf),
        Err(WireError::MessageTooLong {
            id: Some(id::BITFIELD),
            len: 5,
            max: 4
        })
    );
    // Tighter general limits still let fixed-size messages through.
    dec.set_limits(Limits {
        max_message_len: 4,
        max_bitfield_bytes: 0,
        max_extended_payload: 0,
    });
    let mut buf = stream(&[Message::Request(block()), Message::Have { piece: 1 }]);
    assert_eq!(decode_all(&mut dec, &mut buf).len(), 2);
}

#[test]
fn bytes_needed_hint() {
    let dec = MessageDecoder::new();
    assert_eq!(dec.bytes_needed(&[]), 4);
    assert_eq!(dec.bytes_needed(&[0, 0]), 2);
    assert_eq!(dec.bytes_needed(&[0, 0, 0, 0]), 0);
    assert_eq!(dec.bytes_needed(&[0, 0, 0x40, 0x09]), 16393);
    assert_eq!(dec.bytes_needed(&[0, 0, 0x40, 0x09, 7, 0, 0]), 16390);
    let full = Message::Have { piece: 1 }.to_bytes();
    assert_eq!(dec.bytes_needed(&full), 0);
}
