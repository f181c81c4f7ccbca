use rivulet_bencode::OwnedValue as V;

use super::*;
use crate::InfoHashV2;

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

fn leaf(len: i64) -> V {
    V::dict().with(
        "",
        V::dict()
            .with("length", V::Int(len))
            .with("pieces root", V::Bytes(vec![9u8; 32])),
    )
}

#[test]
fn hybrid_read_through_v1_part_and_v2_only_parsed_but_not_downloadable() {
    let hybrid = single(5, 16384, 1)
        .with("meta version", V::Int(2))
        .with("file tree", V::dict().with("file.bin", leaf(5)));
    let bytes = torrent(hybrid);
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(m.info.hybrid);
    let raw = rivulet_bencode::decode(&bytes).unwrap();
    let info_raw = raw.get(b"info").unwrap().raw();
    assert_eq!(m.info_hash_v2, Some(InfoHashV2::from_info_bytes(info_raw)));
    let v2_only = V::dict()
        .with("name", "x".into())
        .with("piece length", V::Int(16384))
        .with("meta version", V::Int(2))
        .with(
            "file tree",
            V::dict()
                .with("a", leaf(20_000))
                .with("b", V::dict().with("c", leaf(5))),
        );
    let bytes = torrent(v2_only);
    assert_eq!(Metainfo::from_bytes(&bytes), Err(MetainfoError::V2Only));
    let m = Metainfo::from_bytes_any(&bytes).unwrap();
    assert!(m.info.v2_only && !m.info.hybrid);
    assert!(m.info_hash_v2.is_some());
    let real: Vec<(String, u64)> = m
        .info
        .files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| (f.display_path(), f.length))
        .collect();
    assert_eq!(real, [("x/a".into(), 20_000), ("x/b/c".into(), 5)]);
    // "b/c" starts on a piece boundary: 3 pieces in all.
    assert_eq!(m.info.num_pieces(), 3);
    assert_eq!(m.info.total_length(), 32_768 + 5);
}

#[test]
fn broken_v2_and_hybrid_torrents_refused() {
    let v1 = || single(5, 16384, 1);
    // The v2 tree names another file than the v1 part.
    let e = refused(
        v1().with("meta version", V::Int(2))
            .with("file tree", V::dict().with("other.bin", leaf(5))),
    );
    assert!(matches!(e, MetainfoError::InconsistentHybrid(_)), "{e}");
    // ... or another length.
    let e = refused(
        v1().with("meta version", V::Int(2))
            .with("file tree", V::dict().with("file.bin", leaf(6))),
    );
    assert!(matches!(e, MetainfoError::InconsistentHybrid(_)), "{e}");
    // Multi-file: same files, but in v1 the second one is not piece-aligned.
    let info = multi(vec![file(5, &["a"]), file(5, &["b"])], 16384, 1)
        .with("meta version", V::Int(2))
        .with("file tree", V::dict().with("a", leaf(5)).with("b", leaf(5)));
    let e = refused(info);
    assert!(matches!(e, MetainfoError::InconsistentHybrid(_)), "{e}");
    // With the padding file, the same torrent is fine.
    let info = multi(
        vec![
            file(5, &["a"]),
            file(16379, &[".pad", "16379"]).with("attr", "p".into()),
            file(5, &["b"]),
        ],
        16384,
        2,
    )
    .with("meta version", V::Int(2))
    .with("file tree", V::dict().with("a", leaf(5)).with("b", leaf(5)));
    Metainfo::from_bytes(&torrent(info)).unwrap();

    assert_eq!(
        refused(v1().with("meta version", V::Int(3))),
        MetainfoError::UnknownVersion(3)
    );
    assert_eq!(
        refused(v1().with("meta version", V::Int(2))),
        MetainfoError::MissingFileTree
    );
    assert_eq!(
        refused(v1().with("file tree", V::dict().with("file.bin", leaf(5)))),
        MetainfoError::FileTreeWithoutVersion
    );
    // v2 piece lengths are powers of two of at least 16 KiB.
    let e = refused(
        single(5, 20_000, 1)
            .with("meta version", V::Int(2))
            .with("file tree", V::dict().with("file.bin", leaf(5))),
    );
    assert_eq!(e, MetainfoError::BadPieceLength(20_000));
    // Broken trees.
    for tree in [
        V::dict().with("a", V::Int(1)),
        V::dict().with("a", V::dict().with("", V::dict().with("length", V::Int(5)))),
        V::dict().with(
            "a",
            V::dict().with("", V::dict().with("length", V::Int(-5))),
        ),
        V::dict().with(
            "a",
            V::dict().with(
                "",
                V::dict()
                    .with("length", V::Int(5))
                    .with("pieces root", V::Bytes(vec![0; 32])),
            ),
        ),
        V::dict().with(
            "a",
            V::dict().with(
                "",
                V::dict()
                    .with("length", V::Int(5))
                    .with("attr", "p".into())
                    .with("pieces root", V::Bytes(vec![1; 32])),
            ),
        ),
    ] {
        let e = refused(
            V::dict()
                .with("name", "x".into())
                .with("piece length", V::Int(16384))
                .with("meta version", V::Int(2))
                .with("file tree", tree),
        );
        assert!(matches!(e, MetainfoError::BadFileTree(_)), "{e}");
    }
    // A tree nested deeper than bencode's depth limit: refused, no stack
    // overflow.
    let mut tree = leaf(5);
    for _ in 0..100 {
        tree = V::dict().with("d", tree);
    }
    let e = refused(
        V::dict()
            .with("name", "x".into())
            .with("piece length", V::Int(16384))
            .with("meta version", V::Int(2))
            .with("file tree", tree),
    );
    assert!(matches!(e, MetainfoError::Bencode(_)), "{e}");
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

fn paths(info: V) -> Vec<String> {
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    m.info.files.iter().map(FileEntry::display_path).collect()
}

#[test]
fn unsafe_paths_are_sanitized_like_libtorrent() {
    for (path, want) in [
        (&["..", "etc", "passwd"][..], "top/etc/passwd"),
        (&["a", "..", "b"], "top/a/b"),
        (&["/etc/passwd"], "top/etcpasswd"),
        (&["a/b"], "top/ab"),
        (&["a\\b"], "top/ab"),
        (&["", "a"], "top/_/a"),
        (&[".", "a"], "top/a"),
        (&[".."], "top/_"),
        (&["/"], "top/_"),
        (&["C:evil"], "top/C:evil"),
        (&["nul\0byte"], "top/nul_byte"),
        (&["a\u{202e}txt.exe"], "top/atxt.exe"),
    ] {
        let got = paths(multi(vec![file(5, path)], 16384, 1));
        assert_eq!(got, [want], "{path:?}");
    }
    let m = Metainfo::from_bytes(&torrent(multi(vec![file(5, &["..", "a"])], 16384, 1))).unwrap();
    assert_eq!(m.info.files[0].torrent_path.as_deref(), Some("top/../a"));
    let m = Metainfo::from_bytes(&torrent(multi(vec![file(5, &["a"])], 16384, 1))).unwrap();
    assert_eq!(m.info.files[0].torrent_path, None);
    // An empty path list is not a file.
    let e = refused(multi(vec![file(5, &[])], 16384, 1));
    assert!(matches!(e, MetainfoError::UnsafePath(_)), "{e}");
    // Names: made safe, or replaced by the info-hash when nothing is left.
    for (name, want) in [("a/b", Some("ab")), ("/abs", Some("abs")), ("", Some("_"))] {
        let m =
            Metainfo::from_bytes(&torrent(single(5, 16384, 1).with("name", name.into()))).unwrap();
        assert_eq!(Some(m.info.name.as_str()), want, "{name:?}");
    }
    for name in ["..", ".", "/", "//.."] {
        let m = Metainfo::from_bytes(&torrent(
            multi(vec![file(5, &["a"])], 16384, 1).with("name", name.into()),
        ))
        .unwrap();
        assert_eq!(m.info.name, m.info_hash.to_hex(), "{name:?}");
        assert_eq!(m.info.files[0].path, [m.info_hash.to_hex(), "a".into()]);
        assert_eq!(m.info.warnings.len(), 1);
        let m =
            Metainfo::from_bytes(&torrent(single(5, 16384, 1).with("name", name.into()))).unwrap();
        assert_eq!(m.info.files[0].path, [m.info_hash.to_hex()], "{name:?}");
    }
    // Unicode lookalikes and dots inside names are kept.
    let m = Metainfo::from_bytes(&torrent(multi(
        vec![file(5, &["..hidden", "a..b", "．．"])],
        16384,
        1,
    )))
    .unwrap();
    assert_eq!(m.info.files[0].display_path(), "top/..hidden/a..b/．．");
    // `path.utf-8` wins whenever it is a list.
    let f = file(5, &["legacy"]).with("path.utf-8", V::List(vec![V::str("utf8")]));
    assert_eq!(paths(multi(vec![f], 16384, 1)), ["top/utf8"]);
}

#[test]
fn duplicate_and_conflicting_paths_renamed() {
    assert_eq!(
        paths(multi(vec![file(5, &["a"]), file(5, &["a"])], 16384, 1)),
        ["top/a", "top/a.1"]
    );
    assert_eq!(
        paths(multi(vec![file(5, &["a"]), file(5, &["a", "b"])], 16384, 1)),
        ["top/a.1", "top/a/b"]
    );
    assert_eq!(
        paths(multi(
            vec![
                file(5, &["x.txt"]),
                file(5, &["X.TXT"]),
                file(5, &["x.txt"])
            ],
            16384,
            1
        )),
        ["top/x.txt", "top/X.1.TXT", "top/x.2.txt"]
    );
    // Sanitizing can make two paths equal.
    let m = Metainfo::from_bytes(&torrent(multi(
        vec![file(5, &["a", "b"]), file(5, &["a/b"]), file(5, &["ab"])],
        16384,
        1,
    )))
    .unwrap();
    let got: Vec<String> = m.info.files.iter().map(FileEntry::display_path).collect();
    assert_eq!(got, ["top/a/b", "top/ab", "top/ab.1"]);
    assert_eq!(m.info.files[2].torrent_path.as_deref(), Some("top/ab"));
    assert_eq!(m.info.warnings.len(), 1, "{:?}", m.info.warnings);
}

#[test]
fn bep47_padding_symlinks_and_attributes() {
    // A padding file needs no path; a symlink holds no data.
    let info = multi(
        vec![
            file(5, &["a"]).with("attr", "x".into()),
            V::dict()
                .with("length", V::Int(16379))
                .with("attr", "p".into()),
            file(5, &["d", "b"]),
            file(0, &["in"])
                .with("attr", "l".into())
                .with("symlink path", V::List(vec![V::str("a")])),
            file(999, &["dir"])
                .with("attr", "l".into())
                .with("symlink path", V::List(vec![V::str("d")])),
            file(0, &["d", "rel"])
                .with("attr", "l".into())
                .with("symlink path", V::List(vec![V::str("b")])),
            file(0, &["out"]).with("attr", "l".into()).with(
                "symlink path",
                V::List(vec![V::str(".."), V::str(".."), V::str("etc")]),
            ),
            file(0, &["abs"])
                .with("attr", "l".into())
                .with("symlink path", V::List(vec![V::str("/etc/passwd")])),
            file(0, &["self"])
                .with("attr", "l".into())
                .with("symlink path", V::List(vec![V::str("self")])),
        ],
        16384,
        2,
    );
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    let f = &m.info.files;
    assert!(f[0].executable && f[0].is_stored());
    assert!(f[1].padding && !f[1].is_stored());
    assert_eq!(f[1].length, 16379);
    let target = |i: usize| {
        f[i].symlink
            .as_ref()
            .map(|s| s.target.as_ref().map(|t| t.join("/")))
    };
    assert_eq!(target(3), Some(Some("top/a".into())));
    assert_eq!(f[4].length, 0, "a symlink's length counts for nothing");
    assert_eq!(target(4), Some(Some("top/d".into())));
    assert_eq!(target(5), Some(Some("top/d/b".into())));
    assert_eq!(target(6), Some(None), "outside the torrent");
    assert_eq!(target(7), Some(None), "absolute");
    assert_eq!(target(8), Some(None), "itself");
    assert!(!f[3].is_stored());
    assert_eq!(m.info.warnings.len(), 3, "{:?}", m.info.warnings);
    // A symlink without `symlink path` is an ordinary empty file.
    let info = multi(
        vec![file(5, &["a"]), file(0, &["l"]).with("attr", "l".into())],
        16384,
        1,
    );
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    assert!(m.info.files[1].is_stored());
}

#[test]
fn trailing_bytes_after_the_torrent_are_ignored() {
    let bytes = torrent(single(5, 16384, 1));
    let clean = Metainfo::from_bytes(&bytes).unwrap();
    for tail in [&b"\n"[..], b"\r\n", b"garbage", b"d", b"\0\0\0"] {
        let mut b = bytes.clone();
        b.extend_from_slice(tail);
        assert_eq!(Metainfo::from_bytes(&b).unwrap(), clean, "{tail:?}");
    }
    // Inside the info dictionary nothing is forgiven.
    let info = b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaXe";
    let mut b = b"d4:info".to_vec();
    b.extend_from_slice(info);
    b.push(b'e');
    assert!(Metainfo::from_bytes(&b).is_err());
}

#[test]
fn piece_lengths_up_to_libtorrents_limit() {
    let m = Metainfo::from_bytes(&torrent(single(5, 512 << 20, 1))).unwrap();
    assert_eq!(m.info.piece_length, 512 << 20);
    Metainfo::from_bytes(&torrent(single(5, (1 << 30) - 1, 1))).unwrap();
    assert_eq!(
        refused(single(5, 1 << 30, 1)),
        MetainfoError::BadPieceLength(1 << 30)
    );
}

#[test]
fn private_is_any_nonzero_value() {
    for (v, want) in [(0, false), (1, true), (2, true), (-1, true)] {
        let m =
            Metainfo::from_bytes(&torrent(single(5, 16384, 1).with("private", V::Int(v)))).unwrap();
        assert_eq!(m.info.private, want, "{v}");
    }
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
