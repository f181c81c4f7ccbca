use proptest::prelude::*;

use crate::*;

fn kind_of(input: &[u8]) -> (usize, ErrorKind) {
    let e = decode(input).unwrap_err();
    (e.offset, e.kind)
}

#[test]
fn integers() {
    assert_eq!(decode(b"i0e").unwrap().as_int(), Some(0));
    assert_eq!(decode(b"i42e").unwrap().as_int(), Some(42));
    assert_eq!(decode(b"i-42e").unwrap().as_int(), Some(-42));
    assert_eq!(
        decode(b"i9223372036854775807e").unwrap().as_int(),
        Some(i64::MAX)
    );
    assert_eq!(
        decode(b"i-9223372036854775808e").unwrap().as_int(),
        Some(i64::MIN)
    );
}

#[test]
fn bad_integers_name_offset_and_problem() {
    assert_eq!(
        kind_of(b"i9223372036854775808e"),
        (1, ErrorKind::IntegerOverflow)
    );
    assert_eq!(
        kind_of(b"i-9223372036854775809e"),
        (2, ErrorKind::IntegerOverflow)
    );
    assert_eq!(
        kind_of(b"i99999999999999999999999e").1,
        ErrorKind::IntegerOverflow
    );
    assert_eq!(kind_of(b"i03e"), (1, ErrorKind::LeadingZero));
    assert_eq!(kind_of(b"i-03e"), (2, ErrorKind::LeadingZero));
    assert_eq!(kind_of(b"i00e"), (1, ErrorKind::LeadingZero));
    assert_eq!(kind_of(b"i-0e"), (2, ErrorKind::NegativeZero));
    assert_eq!(
        kind_of(b"ie"),
        (
            1,
            ErrorKind::UnexpectedByte {
                found: b'e',
                expected: "a digit"
            }
        )
    );
    assert_eq!(
        kind_of(b"i12"),
        (
            3,
            ErrorKind::UnexpectedEof {
                expected: "a digit or 'e'"
            }
        )
    );
    assert_eq!(
        kind_of(b"i1x2e"),
        (
            2,
            ErrorKind::UnexpectedByte {
                found: b'x',
                expected: "a digit or 'e'"
            }
        )
    );
    assert!(matches!(
        kind_of(b"i+1e").1,
        ErrorKind::UnexpectedByte { .. }
    ));
}

#[test]
fn byte_strings() {
    assert_eq!(decode(b"0:").unwrap().as_bytes(), Some(&b""[..]));
    assert_eq!(decode(b"4:spam").unwrap().as_str(), Some("spam"));
    assert_eq!(
        decode(b"3:\xff\x00\x01").unwrap().as_bytes(),
        Some(&b"\xff\x00\x01"[..])
    );
    assert_eq!(decode(b"3:\xff\x00\x01").unwrap().as_str(), None);
}

#[test]
fn bad_byte_strings() {
    assert_eq!(
        kind_of(b"5:spam"),
        (
            0,
            ErrorKind::StringPastEnd {
                declared: 5,
                available: 4
            }
        )
    );
    assert_eq!(
        kind_of(b"99999999999999999999:x").1,
        ErrorKind::IntegerOverflow
    );
    assert_eq!(
        kind_of(b"18446744073709551615:x").1,
        ErrorKind::StringPastEnd {
            declared: u64::MAX,
            available: 1
        }
    );
    assert_eq!(kind_of(b"04:spam"), (0, ErrorKind::LeadingZero));
    assert_eq!(
        kind_of(b"4spam").1,
        ErrorKind::UnexpectedByte {
            found: b's',
            expected: "a digit or ':'"
        }
    );
    assert_eq!(
        kind_of(b"4").1,
        ErrorKind::UnexpectedEof {
            expected: "a digit or ':'"
        }
    );
}

#[test]
fn lists_and_dicts() {
    let v = decode(b"l4:spami7ee").unwrap();
    let items = v.as_list().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_str(), Some("spam"));
    assert_eq!(items[1].as_int(), Some(7));
    assert_eq!(decode(b"le").unwrap().as_list().map(<[_]>::len), Some(0));
    assert_eq!(decode(b"de").unwrap().as_dict().map(<[_]>::len), Some(0));

    let d = decode(b"d3:cow3:moo4:spaml1:a1:bee").unwrap();
    assert_eq!(d.get(b"cow").and_then(Value::as_str), Some("moo"));
    assert_eq!(
        d.get(b"spam").and_then(Value::as_list).map(<[_]>::len),
        Some(2)
    );
    assert!(d.get(b"missing").is_none());
    assert_eq!(d.type_name(), "dictionary");
}

#[test]
fn spans_are_the_original_bytes() {
    // Keys deliberately unsorted: the span must still be the input's bytes.
    let input = b"d8:announce3:url4:infod6:lengthi5e4:name1:xe1:ai1ee";
    let v = decode(input).unwrap();
    let info = v.get(b"info").unwrap();
    assert_eq!(info.raw(), b"d6:lengthi5e4:name1:xe");
    assert_eq!(&input[info.span()], info.raw());
    assert_eq!(info.span().start, 22);
}

#[test]
fn unsorted_keys_accepted_and_canonical_reencoding_sorts_them() {
    let v = decode(b"d1:bi1e1:ai2ee").unwrap();
    assert_eq!(v.get(b"a").and_then(Value::as_int), Some(2));
    assert_eq!(v.to_owned_value().to_bytes(), b"d1:ai2e1:bi1ee");
}

#[test]
fn duplicate_keys_refused_sorted_or_not() {
    assert_eq!(kind_of(b"d1:ai1e1:ai2ee"), (7, ErrorKind::DuplicateKey));
    assert_eq!(
        kind_of(b"d1:bi1e1:ai2e1:bi3ee"),
        (13, ErrorKind::DuplicateKey)
    );
}

#[test]
fn dict_keys_must_be_strings() {
    assert_eq!(
        kind_of(b"di1ei2ee"),
        (
            1,
            ErrorKind::UnexpectedByte {
                found: b'i',
                expected: "a byte-string dictionary key or 'e'"
            }
        )
    );
    assert_eq!(
        kind_of(b"d1:a"),
        (
            4,
            ErrorKind::UnexpectedEof {
                expected: "a dictionary value"
            }
        )
    );
}

#[test]
fn trailing_data_and_truncation() {
    assert_eq!(kind_of(b"i1ei2e"), (3, ErrorKind::TrailingData));
    assert_eq!(kind_of(b"i1e\n"), (3, ErrorKind::TrailingData));
    assert!(matches!(kind_of(b"l").1, ErrorKind::UnexpectedEof { .. }));
    assert!(matches!(kind_of(b"d").1, ErrorKind::UnexpectedEof { .. }));
    assert!(matches!(kind_of(b"").1, ErrorKind::UnexpectedEof { .. }));
    assert!(matches!(kind_of(b"x").1, ErrorKind::UnexpectedByte { .. }));
    let (v, used) = decode_prefix(b"d1:ai1eeRAW DATA").unwrap();
    assert_eq!(used, 8);
    assert_eq!(v.get(b"a").and_then(Value::as_int), Some(1));
}

#[test]
fn depth_limit_stops_deep_nesting() {
    let mut deep = vec![b'l'; 100_000];
    deep.extend(vec![b'e'; 100_000]);
    assert_eq!(kind_of(&deep), (64, ErrorKind::TooDeep { limit: 64 }));
    let ok = [&[b'l'; 64][..], &[b'e'; 64][..]].concat();
    assert!(decode(&ok).is_ok());
    let limits = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    assert!(decode_with(b"llee", limits).is_ok());
    assert_eq!(
        decode_with(b"llleee", limits).unwrap_err().kind,
        ErrorKind::TooDeep { limit: 2 }
    );
}

#[test]
fn value_count_limit() {
    let limits = Limits {
        max_values: 3,
        ..Limits::default()
    };
    assert!(decode_with(b"li1ei2ee", limits).is_ok());
    assert_eq!(
        decode_with(b"li1ei2ei3ee", limits).unwrap_err().kind,
        ErrorKind::TooManyValues { limit: 3 }
    );
}

#[test]
fn error_messages_are_readable() {
    let e = decode(b"d4:name9:helloe").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid bencode at byte 7: byte string of 9 bytes but only 6 bytes remain"
    );
    let e = decode(b"d4:namei1ex").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid bencode at byte 10: found 'x', expected a byte-string dictionary key or 'e'"
    );
}

#[test]
fn encoder_writes_canonical_form() {
    let v = OwnedValue::dict()
        .with("zeta", OwnedValue::Int(-3))
        .with(
            "alpha",
            OwnedValue::List(vec!["x".into(), OwnedValue::Int(0)]),
        )
        .with("", OwnedValue::Bytes(vec![0xff]));
    assert_eq!(v.to_bytes(), b"d0:1:\xff5:alphal1:xi0ee4:zetai-3ee");
}

fn owned_value() -> impl Strategy<Value = OwnedValue> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(OwnedValue::Int),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(OwnedValue::Bytes),
    ];
    leaf.prop_recursive(6, 200, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
            prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..12), inner, 0..8)
                .prop_map(OwnedValue::Dict),
        ]
    })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(v in owned_value()) {
        let bytes = v.to_bytes();
        let decoded = decode(&bytes).unwrap();
        prop_assert_eq!(decoded.raw(), &bytes[..]);
        prop_assert_eq!(decoded.to_owned_value(), v);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = decode(&bytes) {
            // Whatever decodes re-encodes to the same length (same values, maybe reordered keys).
            prop_assert_eq!(v.to_owned_value().to_bytes().len(), bytes.len());
        }
    }

    #[test]
    fn mutated_valid_input_never_panics(
        v in owned_value(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = v.to_bytes();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = decode(&bytes);
        let cut = cut.index(bytes.len() + 1);
        prop_assert!(decode(&bytes[..cut]).is_err() || cut == bytes.len());
    }

    #[test]
    fn every_nested_span_matches_input(v in owned_value()) {
        let bytes = v.to_bytes();
        let decoded = decode(&bytes).unwrap();
        fn check(v: &Value<'_>, input: &[u8]) -> bool {
            input.get(v.span()) == Some(v.raw())
                && match v.kind() {
                    Kind::List(items) => items.iter().all(|i| check(i, input)),
                    Kind::Dict(entries) => entries.iter().all(|(_, i)| check(i, input)),
                    _ => true,
                }
        }
        prop_assert!(check(&decoded, &bytes));
    }
}
