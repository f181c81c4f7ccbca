use rivulet_bencode::OwnedValue as V;

use super::*;

fn hashes(n: usize) -> V {
    V::Bytes(vec![7u8; 20 * n])
}

fn file(len: i64, path: &[&str]) -> V {
    V::dict()
        .with("length", V::Int(len))
        .with("path", V::List(path.iter().map(|p| V::str(p)).collect()))
}

fn multi(files: Vec<V>, piece_length: i64, pieces: usize) -> V {
    V::dict()
        .with("name", "top".into())
        .with("piece length", V::Int(piece_length))
        .with("pieces", hashes(pieces))
        .with("files", V::List(files))
}

fn torrent(info: V) -> Vec<u8> {
    V::dict()
        .with("announce", "http://127.0.0.1:6969/announce".into())
        .with("info", info)
        .to_bytes()
}

fn single(len: i64, piece_length: i64, pieces: usize) -> V {
    V::dict()
        .with("name", "file.bin".into())
        .with("length", V::Int(len))
        .with("piece length", V::Int(piece_length))
        .with("pieces", hashes(pieces))
}

#[test]
fn single_file() {
    let bytes = torrent(single(40_000, 16384, 3));
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info.name, "file.bin");
    assert!(!m.info.multi_file);
    assert_eq!(m.info.files.len(), 1);
    assert_eq!(m.info.files[0].path, vec!["file.bin"]);
    assert_eq!(m.info.total_length(), 40_000);
    assert_eq!(m.info.num_pieces(), 3);
    assert_eq!(
        m.announce.as_deref(),
        Some("http://127.0.0.1:6969/announce")
    );
    assert_eq!(
        m.tracker_tiers(),
        vec![vec!["http://127.0.0.1:6969/announce".to_owned()]]
    );
    let info = rivulet_bencode::decode(&bytes).unwrap();
    let raw = info.get(b"info").unwrap().raw();
    assert_eq!(m.info_bytes, raw);
    assert_eq!(m.info_hash, InfoHash::from_info_bytes(raw));
}

#[test]
fn multi_file_with_all_optional_fields() {
    let info = multi(
        vec![
            file(10, &["a", "b.txt"]),
            file(0, &["empty"]),
            file(16384 * 2, &["c.bin"]),
        ],
        16384,
        3,
    )
    .with("private", V::Int(1))
    .with("source", "TRK".into());
    let bytes = V::dict()
        .with("announce", "http://a/announce".into())
        .with(
            "announce-list",
            V::List(vec![
                V::List(vec![
                    "http://a/announce".into(),
                    "udp://b:1/announce".into(),
                ]),
                V::List(vec![]),
                V::List(vec!["http://c/announce".into(), "http://a/announce".into()]),
            ]),
        )
        .with("url-list", V::List(vec!["http://seed/".into()]))
        .with("comment", "hello".into())
        .with("created by", "mktorrent 1.1".into())
        .with("creation date", V::Int(1_700_000_000))
        .with(
            "nodes",
            V::List(vec![V::List(vec!["127.0.0.1".into(), V::Int(6881)])]),
        )
        .with("info", info)
        .to_bytes();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(m.info.multi_file);
    assert!(m.info.private);
    assert_eq!(m.info.source.as_deref(), Some("TRK"));
    assert_eq!(
        m.info
            .files
            .iter()
            .map(FileEntry::display_path)
            .collect::<Vec<_>>(),
        vec!["top/a/b.txt", "top/empty", "top/c.bin"]
    );
    assert_eq!(
        m.tracker_tiers(),
        vec![
            vec![
                "http://a/announce".to_owned(),
                "udp://b:1/announce".to_owned()
            ],
            vec!["http://c/announce".to_owned()],
        ]
    );
    assert_eq!(m.web_seeds, vec!["http://seed/"]);
    assert_eq!(m.comment.as_deref(), Some("hello"));
    assert_eq!(m.created_by.as_deref(), Some("mktorrent 1.1"));
    assert_eq!(m.creation_date, Some(1_700_000_000));
    assert_eq!(m.nodes, vec![("127.0.0.1".to_owned(), 6881)]);
}

#[test]
fn url_list_as_single_string() {
    let bytes = V::dict()
        .with("url-list", "http://seed/file".into())
        .with("info", single(5, 16384, 1))
        .to_bytes();
    assert_eq!(
        Metainfo::from_bytes(&bytes).unwrap().web_seeds,
        vec!["http://seed/file"]
    );
}

#[test]
fn utf8_names_preferred() {
    let info = multi(
        vec![file(5, &["ignored"]).with("path.utf-8", V::List(vec!["日本.txt".into()]))],
        16384,
        1,
    )
    .with("name.utf-8", "名前".into());
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    assert_eq!(m.info.name, "名前");
    assert_eq!(m.info.files[0].path, vec!["名前", "日本.txt"]);
}

#[test]
fn padding_files_recognised() {
    let info = multi(
        vec![
            file(5, &["a"]),
            file(16379, &[".pad", "16379"]).with("attr", "p".into()),
            file(5, &["b"]).with("attr", "x".into()),
        ],
        16384,
        2,
    );
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    let flags: Vec<(bool, bool)> = m
        .info
        .files
        .iter()
        .map(|f| (f.padding, f.executable))
        .collect();
    assert_eq!(flags, vec![(false, false), (true, false), (false, true)]);
}

#[test]
fn hybrid_read_through_v1_part_and_v2_only_refused() {
    let hybrid = single(5, 16384, 1)
        .with("meta version", V::Int(2))
        .with("file tree", V::dict());
    let m = Metainfo::from_bytes(&torrent(hybrid)).unwrap();
    assert!(m.info.hybrid);
    let v2_only = V::dict()
        .with("name", "x".into())
        .with("piece length", V::Int(16384))
        .with("meta version", V::Int(2))
        .with("file tree", V::dict());
    assert_eq!(
        Metainfo::from_bytes(&torrent(v2_only)),
        Err(MetainfoError::V2Only)
    );
}

#[test]
fn info_hash_uses_original_bytes_even_when_keys_unsorted() {
    // "name" before "length": not canonical, and re-encoding would reorder it.
    let info = b"d4:name1:x6:lengthi5e12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    let mut bytes = b"d4:info".to_vec();
    bytes.extend_from_slice(info);
    bytes.push(b'e');
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info_hash, InfoHash::from_info_bytes(info));
    let reencoded = rivulet_bencode::decode(info)
        .unwrap()
        .to_owned_value()
        .to_bytes();
    assert_ne!(m.info_hash, InfoHash::from_info_bytes(&reencoded));
}

fn refused(info: V) -> MetainfoError {
    Metainfo::from_bytes(&torrent(info)).unwrap_err()
}

#[test]
fn path_traversal_refused() {
    for path in [
        &["..", "etc", "passwd"][..],
        &["a", "..", "b"],
        &["/etc/passwd"],
        &["a/b"],
        &["a\\b"],
        &[""],
        &["."],
        &["C:evil"],
        &["nul\0byte"],
        &[],
    ] {
        let e = refused(multi(vec![file(5, path)], 16384, 1));
        assert!(matches!(e, MetainfoError::UnsafePath(_)), "{path:?}: {e}");
    }
    for name in ["..", ".", "", "a/b", "/abs"] {
        let e = refused(single(5, 16384, 1).with("name", name.into()));
        assert!(matches!(e, MetainfoError::UnsafePath(_)), "{name:?}: {e}");
    }
    // Unicode lookalikes and dots inside names are fine.
    let m = Metainfo::from_bytes(&torrent(multi(
        vec![file(5, &["..hidden", "a..b", "．．"])],
        16384,
        1,
    )))
    .unwrap();
    assert_eq!(m.info.files[0].path.len(), 4);
}

#[test]
fn duplicate_and_conflicting_paths_refused() {
    let e = refused(multi(vec![file(5, &["a"]), file(5, &["a"])], 16384, 1));
    assert_eq!(e, MetainfoError::DuplicatePath("top/a".into()));
    let e = refused(multi(vec![file(5, &["a"]), file(5, &["a", "b"])], 16384, 1));
    assert_eq!(e, MetainfoError::DuplicatePath("top/a".into()));
    let e = refused(multi(vec![file(5, &["a", "b"]), file(5, &["a"])], 16384, 1));
    assert_eq!(e, MetainfoError::DuplicatePath("top/a".into()));
    // "a.txt" sorts between "a" and "a/b" as text; the clash must still be found.
    let e = refused(multi(
        vec![
            file(5, &["a", "b"]),
            file(5, &["a.txt"]),
            file(5, &["a"]),
            file(5, &["a-"]),
        ],
        16384,
        2,
    ));
    assert_eq!(e, MetainfoError::DuplicatePath("top/a".into()));
    // Names that share a prefix but not a folder are fine.
    assert!(Metainfo::from_bytes(&torrent(multi(
        vec![file(5, &["a", "b"]), file(5, &["a.txt"]), file(5, &["ab"])],
        16384,
        1
    )))
    .is_ok());
}

#[test]
fn piece_geometry_checked() {
    assert_eq!(
        refused(single(40_000, 16384, 2)),
        MetainfoError::PieceCountMismatch {
            hashes: 2,
            expected: 3,
            total_length: 40_000
        }
    );
    assert_eq!(
        refused(single(5, 16384, 1).with("pieces", V::Bytes(vec![0; 21]))),
        MetainfoError::PiecesNotMultipleOf20(21)
    );
    assert_eq!(refused(single(5, 0, 1)), MetainfoError::BadPieceLength(0));
    assert_eq!(refused(single(5, -1, 1)), MetainfoError::BadPieceLength(-1));
    assert_eq!(
        refused(single(5, 1 << 40, 1)),
        MetainfoError::BadPieceLength(1 << 40)
    );
    assert_eq!(
        refused(single(-5, 16384, 1)),
        MetainfoError::Negative("info.length".into())
    );
    assert_eq!(
        refused(multi(vec![file(-1, &["a"])], 16384, 1)),
        MetainfoError::Negative("info.files[0].length".into())
    );
    assert_eq!(refused(single(0, 16384, 0)), MetainfoError::Empty);
    assert_eq!(refused(multi(vec![], 16384, 0)), MetainfoError::NoFiles);
    assert_eq!(
        refused(multi(
            vec![
                file(i64::MAX, &["a"]),
                file(i64::MAX, &["b"]),
                file(i64::MAX, &["c"])
            ],
            16384,
            1
        )),
        MetainfoError::TooLarge
    );
}

#[test]
fn missing_keys_and_wrong_types() {
    let base = single(5, 16384, 1);
    let without = |key: &str| {
        let V::Dict(mut m) = base.clone() else {
            unreachable!()
        };
        m.remove(key.as_bytes());
        V::Dict(m)
    };
    assert_eq!(
        refused(without("pieces")),
        MetainfoError::MissingKey("info.pieces")
    );
    assert_eq!(
        refused(without("piece length")),
        MetainfoError::MissingKey("info.piece length")
    );
    assert_eq!(
        refused(without("name")),
        MetainfoError::MissingKey("info.name")
    );
    assert_eq!(
        refused(without("length")),
        MetainfoError::MissingKey("info.length or info.files")
    );
    assert!(matches!(
        refused(base.clone().with("name", V::Int(3))),
        MetainfoError::WrongType { .. }
    ));
    assert_eq!(
        Metainfo::from_bytes(b"d8:announce1:xe"),
        Err(MetainfoError::MissingKey("info"))
    );
    assert!(matches!(
        Metainfo::from_bytes(b"li1ee"),
        Err(MetainfoError::WrongType { .. })
    ));
    assert!(matches!(
        Metainfo::from_bytes(b"d4:infoi1ee"),
        Err(MetainfoError::WrongType { .. })
    ));
}

#[test]
fn truncated_and_garbage_input() {
    let bytes = torrent(single(40_000, 16384, 3));
    for cut in 0..bytes.len() {
        assert!(Metainfo::from_bytes(&bytes[..cut]).is_err());
    }
    let e = Metainfo::from_bytes(b"<html>404</html>").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid bencode at byte 0: found '<', expected a value ('i', 'l', 'd' or a digit)"
    );
}

#[test]
fn malformed_optional_fields_are_tolerated() {
    let bytes = V::dict()
        .with("announce-list", V::Int(3))
        .with("nodes", "x".into())
        .with("creation date", "yesterday".into())
        .with("info", single(5, 16384, 1))
        .to_bytes();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(m.announce_list.is_empty());
    assert!(m.nodes.is_empty());
    assert_eq!(m.creation_date, None);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = Metainfo::from_bytes(&bytes);
    }
}

#[test]
fn padding_files_may_share_a_path() {
    // libtorrent names padding files `.pad/<length>`, so equal sizes repeat.
    let pad = || file(16379, &[".pad", "16379"]).with("attr", "p".into());
    let info = multi(
        vec![
            file(5, &["a"]),
            pad(),
            file(5, &["b"]),
            pad(),
            file(5, &["c"]),
        ],
        16384,
        3,
    );
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    assert_eq!(m.info.files.iter().filter(|f| f.padding).count(), 2);
}
