//! Odd but real-world torrents, each built here with a small bencode writer,
//! and what loading them must give: the on-disk paths libtorrent 2.0.8 gives
//! (checked against libtorrent itself by `interop_conformance.rs`) or a
//! refusal. `conformance.rs` checks rivulet against these expectations with
//! nothing else installed.

use std::collections::BTreeMap;

/// A bencode value; dictionaries are written with sorted keys (libtorrent
/// refuses unsorted keys in v2 torrents).
#[derive(Clone)]
pub enum B {
    I(i64),
    S(Vec<u8>),
    L(Vec<B>),
    D(BTreeMap<Vec<u8>, B>),
}

impl B {
    pub fn s(s: impl AsRef<[u8]>) -> B {
        B::S(s.as_ref().to_vec())
    }

    pub fn d(pairs: &[(&str, B)]) -> B {
        B::D(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        )
    }

    /// Adds or replaces `key`.
    pub fn with(mut self, key: &str, v: B) -> B {
        if let B::D(m) = &mut self {
            m.insert(key.as_bytes().to_vec(), v);
        }
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            B::I(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            B::S(s) => {
                out.extend_from_slice(format!("{}:", s.len()).as_bytes());
                out.extend_from_slice(s);
            }
            B::L(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.write(out));
                out.push(b'e');
            }
            B::D(m) => {
                out.push(b'd');
                for (k, v) in m {
                    B::S(k.clone()).write(out);
                    v.write(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// A path list.
pub fn path(components: &[&[u8]]) -> B {
    B::L(components.iter().map(B::s).collect())
}

/// A file entry of a v1 `files` list.
pub fn file(len: i64, components: &[&[u8]]) -> B {
    B::d(&[("length", B::I(len)), ("path", path(components))])
}

/// A padding file with no path (BEP 47 allows it).
pub fn pad(len: i64) -> B {
    B::d(&[("length", B::I(len)), ("attr", B::s("p"))])
}

/// A BEP 47 symlink entry.
pub fn link(components: &[&[u8]], target: &[&[u8]]) -> B {
    B::d(&[
        ("length", B::I(0)),
        ("attr", B::s("l")),
        ("path", path(components)),
        ("symlink path", path(target)),
    ])
}

/// A multi-file info dict named `name` with 16 KiB pieces; the piece count
/// follows the data (symlinks hold none).
pub fn multi(name: &[u8], files: Vec<B>) -> B {
    let total: i64 = files
        .iter()
        .map(|f| match f {
            B::D(m)
                if m.get(&b"attr"[..])
                    .is_some_and(|a| matches!(a, B::S(s) if s.contains(&b'l'))) =>
            {
                0
            }
            B::D(m) => match m.get(&b"length"[..]) {
                Some(B::I(l)) => *l,
                _ => 0,
            },
            _ => 0,
        })
        .sum();
    let pieces = ((total.max(1) + 16383) / 16384) as usize;
    B::d(&[
        ("name", B::s(name)),
        ("piece length", B::I(16384)),
        ("pieces", B::S(vec![7; 20 * pieces])),
        ("files", B::L(files)),
    ])
}

/// A single-file info dict of 5 bytes.
pub fn single(name: &[u8]) -> B {
    B::d(&[
        ("name", B::s(name)),
        ("piece length", B::I(16384)),
        ("pieces", B::S(vec![7; 20])),
        ("length", B::I(5)),
    ])
}

/// A v2 file tree leaf.
pub fn leaf(len: i64) -> B {
    B::d(&[(
        "",
        B::d(&[("length", B::I(len)), ("pieces root", B::S(vec![9; 32]))]),
    )])
}

/// A v2-only info dict named `t` with 16 KiB pieces and `tree` as its
/// file tree.
pub fn v2_only(tree: B) -> B {
    B::d(&[
        ("name", B::s("t")),
        ("piece length", B::I(16384)),
        ("meta version", B::I(2)),
        ("file tree", tree),
    ])
}

/// The .torrent around an info dict.
pub fn torrent(info: B) -> Vec<u8> {
    B::d(&[("info", info)]).encode()
}

/// What loading a case must give.
pub enum Expect {
    /// Loaded; the on-disk paths of the files that are not padding, in
    /// order; `{hash}` stands for the v1 info-hash in hex.
    Paths(&'static [&'static str]),
    /// Refused.
    Refused,
}

pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expect,
    /// Where rivulet deliberately differs from libtorrent 2.0.8, and why.
    pub differs_from_libtorrent: Option<&'static str>,
}

fn case(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        bytes,
        expect,
        differs_from_libtorrent: None,
    }
}

use Expect::{Paths, Refused};

/// Every rule of "load what libtorrent loads" and "refuse what it refuses".
pub fn cases() -> Vec<Case> {
    let t = |files: Vec<B>| torrent(multi(b"t", files));
    let hybrid = |info: B, tree: B| info.with("meta version", B::I(2)).with("file tree", tree);
    let long = format!("{}.txt", "x".repeat(300));
    let long_want: &'static str = Box::leak(format!("t/{}.txt", "x".repeat(240)).into_boxed_str());
    let long_want: &'static [&'static str] = Box::leak(vec![long_want].into_boxed_slice());
    let mut with_nl = torrent(single(b"a"));
    with_nl.push(b'\n');
    let mut with_garbage = torrent(single(b"a"));
    with_garbage.extend_from_slice(b"<html>garbage</html>");
    let pads_tree = || B::d(&[("a", leaf(5)), ("b", leaf(5))]);
    let v2_with_layers = |layer_bytes: usize| {
        B::d(&[
            (
                "info",
                B::d(&[
                    ("name", B::s("t")),
                    ("piece length", B::I(16384)),
                    ("meta version", B::I(2)),
                    ("file tree", B::d(&[("a", leaf(20000))])),
                ]),
            ),
            (
                "piece layers",
                B::D(
                    [(vec![9u8; 32], B::S(vec![1; layer_bytes]))]
                        .into_iter()
                        .collect(),
                ),
            ),
        ])
        .encode()
    };
    // "name" before "meta version": not canonical, which v2 forbids.
    let unsorted_v2 = {
        let mut info =
            b"d4:name1:t12:meta versioni2e9:file treed1:ad0:d6:lengthi5e11:pieces root32:".to_vec();
        info.extend_from_slice(&[9; 32]);
        info.extend_from_slice(b"eee12:piece lengthi16384ee");
        let mut t = b"d4:info".to_vec();
        t.extend_from_slice(&info);
        t.push(b'e');
        t
    };
    let near_limit: i64 = 1_073_741_823 * 16384;
    vec![
        // Path components (item 2).
        case("dotdot components", t(vec![file(5, &[b"..", b"..", b"etc", b"passwd"])]), Paths(&["t/etc/passwd"])),
        case("absolute component", t(vec![file(5, &[b"/etc", b"passwd"])]), Paths(&["t/etc/passwd"])),
        case("dot component", t(vec![file(5, &[b".", b"a"])]), Paths(&["t/a"])),
        case("dotdot last", t(vec![file(5, &[b"a", b".."])]), Paths(&["t/a"])),
        case("empty component", t(vec![file(5, &[b"", b"a"])]), Paths(&["t/_/a"])),
        case("separator inside", t(vec![file(5, &[b"a/b", b"c"])]), Paths(&["t/ab/c"])),
        case("backslash inside", t(vec![file(5, &[b"a\\b"])]), Paths(&["t/ab"])),
        case("only a separator", t(vec![file(5, &[b"/"])]), Paths(&["t/_"])),
        case("control character", t(vec![file(5, &[b"a\x01b"])]), Paths(&["t/a_b"])),
        case("escape sequence", t(vec![file(5, &[b"a\x1b[31mb"])]), Paths(&["t/a_[31mb"])),
        case("direction override", t(vec![file(5, &["a\u{202e}txt.exe".as_bytes()])]), Paths(&["t/atxt.exe"])),
        case("invalid utf-8", t(vec![file(5, &[b"a\xffb"])]), Paths(&["t/a_b"])),
        case("long component", t(vec![file(5, &[long.as_bytes()])]), Paths(long_want)),
        case("path.utf-8 preferred", t(vec![file(5, &[b"legacy"]).with("path.utf-8", path(&[b"utf8"]))]), Paths(&["t/utf8"])),
        // Names.
        case("name dotdot", torrent(multi(b"..", vec![file(5, &[b"a"])])), Paths(&["{hash}/a"])),
        case("name dot", torrent(multi(b".", vec![file(5, &[b"a"])])), Paths(&["{hash}/a"])),
        case("name absolute", torrent(multi(b"/abs/x", vec![file(5, &[b"a"])])), Paths(&["absx/a"])),
        case("name empty", torrent(multi(b"", vec![file(5, &[b"a"])])), Paths(&["_/a"])),
        case("single-file name absolute", torrent(single(b"/etc/passwd")), Paths(&["etcpasswd"])),
        Case {
            name: "single-file name dotdot",
            bytes: torrent(single(b"..")),
            expect: Paths(&["{hash}"]),
            differs_from_libtorrent: Some(
                "libtorrent refuses it (\"missing name\"); rivulet names the file by the info-hash, as libtorrent does for a multi-file torrent named `..`",
            ),
        },
        // Duplicates.
        case("same path three times", t(vec![file(5, &[b"a.txt"]), file(5, &[b"a.txt"]), file(5, &[b"a.txt"])]), Paths(&["t/a.txt", "t/a.1.txt", "t/a.2.txt"])),
        case("same path but case", t(vec![file(5, &[b"A.txt"]), file(5, &[b"a.txt"])]), Paths(&["t/A.txt", "t/a.1.txt"])),
        case("file then folder", t(vec![file(5, &[b"a"]), file(5, &[b"a", b"b"])]), Paths(&["t/a.1", "t/a/b"])),
        case("folder then file", t(vec![file(5, &[b"a", b"b"]), file(5, &[b"a"])]), Paths(&["t/a/b", "t/a.1"])),
        case("same after sanitizing", t(vec![file(5, &[b"a", b"b"]), file(5, &[b"a/b"]), file(5, &[b"ab"])]), Paths(&["t/a/b", "t/ab", "t/ab.1"])),
        case("hidden file twice", t(vec![file(5, &[b".bashrc"]), file(5, &[b".bashrc"])]), Paths(&["t/.bashrc", "t/.1.bashrc"])),
        case("rename taken", t(vec![file(5, &[b"a.1"]), file(5, &[b"a"]), file(5, &[b"a"])]), Paths(&["t/a.1", "t/a", "t/a.2"])),
        // BEP 47.
        case("padding without path", t(vec![file(5, &[b"a"]), pad(16379), file(5, &[b"b"])]), Paths(&["t/a", "t/b"])),
        case("padding files share a path", t(vec![
            file(5, &[b"a"]),
            file(16379, &[b".pad", b"16379"]).with("attr", B::s("p")),
            file(5, &[b"b"]),
            file(16379, &[b".pad", b"16379"]).with("attr", B::s("p")),
            file(5, &[b"c"]),
        ]), Paths(&["t/a", "t/b", "t/c"])),
        case("symlink to a file", t(vec![file(5, &[b"a"]), link(&[b"ln"], &[b"a"])]), Paths(&["t/a", "t/ln"])),
        case("symlink to a folder", t(vec![file(5, &[b"d", b"a"]), link(&[b"ln"], &[b"d"])]), Paths(&["t/d/a", "t/ln"])),
        case("symlink relative to itself", t(vec![file(5, &[b"d", b"a"]), link(&[b"d", b"ln"], &[b"a"])]), Paths(&["t/d/a", "t/d/ln"])),
        case("symlink leaving the torrent", t(vec![file(5, &[b"a"]), link(&[b"ln"], &[b"..", b"..", b"etc"])]), Paths(&["t/a", "t/ln"])),
        case("symlink absolute", t(vec![file(5, &[b"a"]), link(&[b"ln"], &[b"/etc/passwd"])]), Paths(&["t/a", "t/ln"])),
        case("symlink with a length", t(vec![file(5, &[b"a"]), link(&[b"ln"], &[b"a"]).with("length", B::I(7))]), Paths(&["t/a", "t/ln"])),
        case("symlink through a symlink", t(vec![
            file(5, &[b"d", b"a"]),
            link(&[b"ln"], &[b"cur", b"a"]),
            link(&[b"cur"], &[b"d"]),
        ]), Paths(&["t/d/a", "t/ln", "t/cur"])),
        case("symlink loop", t(vec![file(5, &[b"a"]), link(&[b"x"], &[b"y"]), link(&[b"y"], &[b"x"])]), Paths(&["t/a", "t/x", "t/y"])),
        case("executable", t(vec![file(5, &[b"run.sh"]).with("attr", B::s("x")), file(5, &[b"b"])]), Paths(&["t/run.sh", "t/b"])),
        // Bytes after the torrent.
        case("trailing newline", with_nl, Paths(&["a"])),
        case("trailing garbage", with_garbage, Paths(&["a"])),
        // Piece lengths.
        case("512 MiB pieces", torrent(single(b"a").with("piece length", B::I(512 << 20))), Paths(&["a"])),
        case("1 GiB pieces", torrent(single(b"a").with("piece length", B::I(1 << 30))), Refused),
        // v2 and hybrids (items 3 and 4).
        case("hybrid", torrent(hybrid(multi(b"t", vec![file(5, &[b"a"]), pad(16379), file(5, &[b"b"])]), pads_tree())), Paths(&["t/a", "t/b"])),
        case("hybrid single file", torrent(hybrid(single(b"a"), B::d(&[("a", leaf(5))]))), Paths(&["a"])),
        case("v2 only", torrent(v2_only(B::d(&[("a", leaf(20000)), ("d", B::d(&[("b", leaf(5))]))]))), Paths(&["t/a", "t/d/b"])),
        case("hybrid, other name in v2", torrent(hybrid(single(b"a"), B::d(&[("b", leaf(5))]))), Refused),
        case("hybrid, other length in v2", torrent(hybrid(single(b"a"), B::d(&[("a", leaf(6))]))), Refused),
        case("hybrid, v1 not aligned", torrent(hybrid(multi(b"t", vec![file(5, &[b"a"]), file(5, &[b"b"])]), pads_tree())), Refused),
        case("hybrid, files swapped", torrent(hybrid(multi(b"t", vec![file(5, &[b"b"]), pad(16379), file(5, &[b"a"])]), pads_tree())), Refused),
        case("meta version 3", torrent(single(b"a").with("meta version", B::I(3))), Refused),
        case("meta version 2 without tree", torrent(single(b"a").with("meta version", B::I(2))), Refused),
        case("tree without meta version", torrent(single(b"a").with("file tree", B::d(&[("a", leaf(5))]))), Refused),
        case("v2 piece length not a power of two", torrent(hybrid(single(b"a").with("piece length", B::I(20000)), B::d(&[("a", leaf(5))]))), Refused),
        case("v2 padding in tree", torrent(hybrid(single(b"a"), B::d(&[("a", B::d(&[("", B::d(&[("length", B::I(5)), ("attr", B::s("p")), ("pieces root", B::S(vec![9; 32]))]))]))]))), Refused),
        case("v2 zero pieces root", torrent(hybrid(single(b"a"), B::d(&[("a", B::d(&[("", B::d(&[("length", B::I(5)), ("pieces root", B::S(vec![0; 32]))]))]))]))), Refused),
        case("v2 piece layers fit", v2_with_layers(64), Paths(&["a"])),
        case("v2 piece layer too short", v2_with_layers(32), Refused),
        case("v2 piece layer not whole hashes", v2_with_layers(40), Refused),
        case("v2 keys not sorted", unsorted_v2, Refused),
        // Limits.
        case("too many pieces", torrent(single(b"a").with("length", B::I(16384 * 0x20_0001))), Refused),
        case("file of 16 TiB", torrent(single(b"a").with("length", B::I(near_limit)).with("piece length", B::I(1 << 29)).with("pieces", B::S(vec![7; 20 * 32768]))), Refused),
        case("file just under 16 TiB", torrent(single(b"a").with("length", B::I(near_limit - 1)).with("piece length", B::I(1 << 29)).with("pieces", B::S(vec![7; 20 * 32768]))), Paths(&["a"])),
        // Broken in other ways.
        case("no data", torrent(single(b"a").with("length", B::I(0)).with("pieces", B::s(""))), Refused),
        case("no files", torrent(multi(b"t", vec![])), Refused),
        case("empty path list", t(vec![file(5, &[])]), Refused),
        case("negative length", t(vec![file(-5, &[b"a"])]), Refused),
        case("too few piece hashes", torrent(single(b"a").with("length", B::I(20000))), Refused),
        case("name not a string", torrent(single(b"a").with("name", B::I(5))), Refused),
        case("path component not a string", t(vec![B::d(&[("length", B::I(5)), ("path", B::L(vec![B::s("a"), B::I(5)]))])]), Refused),
    ]
}
