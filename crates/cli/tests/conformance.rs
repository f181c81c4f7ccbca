//! `rivulet info` on odd but real-world torrents (see `conformance/cases.rs`):
//! each loads with the on-disk paths libtorrent 2.0.8 gives, or is refused
//! with a clear message and exit status 2; nothing panics. The same cases
//! are held against libtorrent itself in `interop_conformance.rs`; the
//! webtorrent-fixtures torrents (real files from the wild) are checked here
//! against the info-hashes libtorrent reports for them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "conformance/cases.rs"]
#[allow(dead_code)]
mod cases;
mod support;

use std::path::Path;
use std::process::Output;

use cases::Expect;

fn rivulet(args: &[&std::ffi::OsStr]) -> Output {
    support::rivulet::command().args(args).output().unwrap()
}

fn info_json(file: &Path) -> (Output, Option<serde_json::Value>) {
    let o = rivulet(&["info".as_ref(), "--json".as_ref(), file.as_os_str()]);
    let v = serde_json::from_slice(&o.stdout).ok();
    (o, v)
}

#[test]
fn odd_torrents_load_like_libtorrent_or_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, c) in cases::cases().into_iter().enumerate() {
        let file = tmp.path().join(format!("{i}.torrent"));
        std::fs::write(&file, &c.bytes).unwrap();
        let (o, json) = info_json(&file);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{}: {stderr}", c.name);
        // The text form must not panic either, whatever the JSON said.
        let text = rivulet(&["info".as_ref(), file.as_os_str()]);
        assert!(
            !String::from_utf8_lossy(&text.stderr).contains("panicked"),
            "{}",
            c.name
        );
        assert_eq!(text.status.success(), o.status.success(), "{}", c.name);
        match c.expect {
            Expect::Refused => {
                if o.status.code() != Some(2) || !stderr.contains("is not a valid torrent") {
                    failures.push(format!(
                        "{}: not refused ({:?}): {stderr}",
                        c.name, o.status
                    ));
                }
            }
            Expect::Paths(want) => {
                let Some(v) = json.filter(|_| o.status.success()) else {
                    failures.push(format!("{}: refused: {stderr}", c.name));
                    continue;
                };
                let hash = v["info_hash"].as_str().unwrap_or_default().to_owned();
                let got: Vec<String> = v["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|f| f["padding"] == false)
                    .map(|f| f["path"].as_str().unwrap().to_owned())
                    .collect();
                let want: Vec<String> = want.iter().map(|p| p.replace("{hash}", &hash)).collect();
                if got != want {
                    failures.push(format!("{}: paths {got:?}, want {want:?}", c.name));
                }
                // Every changed path says so, with what the torrent said.
                for f in v["files"].as_array().unwrap() {
                    assert_eq!(
                        f["path_changed"].as_bool(),
                        Some(!f["torrent_path"].is_null()),
                        "{}",
                        c.name
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn info_marks_changed_paths_and_links() {
    use cases::*;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("odd.torrent");
    let bytes = torrent(multi(
        b"t",
        vec![
            file(5, &[b"..", b"a"]),
            file(5, &[b"a"]),
            link(&[b"in"], &[b"a"]),
            link(&[b"out"], &[b"..", b"..", b"etc"]),
        ],
    ));
    std::fs::write(&path, bytes).unwrap();
    let (o, v) = info_json(&path);
    assert!(o.status.success());
    let v = v.unwrap();
    let files = v["files"].as_array().unwrap();
    assert_eq!(files[0]["path"], "t/a");
    assert_eq!(files[0]["torrent_path"], "t/../a");
    assert_eq!(files[1]["path"], "t/a.1");
    assert_eq!(files[1]["torrent_path"], "t/a");
    assert_eq!(files[2]["symlink"]["target"], "t/a");
    assert!(files[3]["symlink"]["target"].is_null());
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2);
    let text = rivulet(&["info".as_ref(), path.as_os_str()]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("t/a  [torrent says \"t/../a\"]"), "{text}");
    assert!(text.contains("t/a.1  [torrent says \"t/a\"]"), "{text}");
    assert!(text.contains("t/in -> t/a"), "{text}");
    assert!(
        text.contains("(outside the torrent: not created)"),
        "{text}"
    );
}

/// The torrents of the `webtorrent-fixtures` npm package (MIT, see
/// `LICENSE` beside them) with the v1 info-hash libtorrent 2.0.8 reports
/// for each, or `None` where libtorrent refuses the file.
const WEBTORRENT: &[(&str, Option<&str>)] = &[
    (
        "alice.torrent",
        Some("722fe65b2aa26d14f35b4ad627d20236e481d924"),
    ),
    (
        "bunny.torrent",
        Some("af8f10f30bf9aefecf3686922bfa0d5bd290a395"),
    ),
    ("corrupt.torrent", None),
    (
        "folder.torrent",
        Some("b88da2caac6648e6c7d7687e3f89085f7e230e6b"),
    ),
    (
        "leaves-metadata.torrent",
        Some("d2474e86c95b19b8bcfdb92bc12c9d44667cfa36"),
    ),
    (
        "leaves.torrent",
        Some("d2474e86c95b19b8bcfdb92bc12c9d44667cfa36"),
    ),
    (
        "lots-of-numbers.torrent",
        Some("114ead6243792ba56297edbb9a78dfba84d4fc00"),
    ),
    (
        "numbers.torrent",
        Some("89d97c2261a21b040cf11caa661a3ba7233bb7e6"),
    ),
    (
        "sintel.torrent",
        Some("c334138ef5bfc2d568ea7324e0e2a3a7ec229bdd"),
    ),
];

fn webtorrent_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/webtorrent")
}

#[test]
fn webtorrent_fixtures_parse_to_libtorrents_info_hashes() {
    for (name, want) in WEBTORRENT {
        let file = webtorrent_dir().join(name);
        let (o, v) = info_json(&file);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        match want {
            Some(hash) => {
                assert!(o.status.success(), "{name}: {stderr}");
                assert_eq!(v.unwrap()["info_hash"], *hash, "{name}");
                let text = rivulet(&["info".as_ref(), file.as_os_str()]);
                assert!(text.status.success(), "{name}");
            }
            None => {
                assert_eq!(o.status.code(), Some(2), "{name}");
                assert!(
                    stderr.contains("is not a valid torrent"),
                    "{name}: {stderr}"
                );
            }
        }
    }
}

#[test]
fn creation_dates_in_milliseconds_print_as_numbers() {
    let (o, v) = info_json(&webtorrent_dir().join("alice.torrent"));
    assert!(o.status.success());
    assert_eq!(v.unwrap()["creation_date"], 1_452_468_725_091i64);
    let text = rivulet(&[
        "info".as_ref(),
        webtorrent_dir().join("alice.torrent").as_os_str(),
    ]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(
            "Created on:  1452468725091 (not a date in seconds; in milliseconds it is 2016-01-10T23:32:05Z)"
        ),
        "{text}"
    );
}

/// Torrents `info` shows but `download`, `seed` and `verify` cannot handle
/// yet (v2-only) are refused at once, with exit status 2 and the reason,
/// before anything is written.
#[test]
fn torrents_that_cannot_be_downloaded_yet_are_refused_clearly() {
    use cases::*;
    let tmp = tempfile::tempdir().unwrap();
    let v2 = tmp.path().join("v2.torrent");
    std::fs::write(&v2, torrent(v2_only(B::d(&[("a", leaf(5))])))).unwrap();
    let out = tmp.path().join("out");
    for cmd in ["download", "seed", "verify"] {
        let mut c = support::rivulet::command();
        c.arg(cmd).arg(&v2).arg("-o").arg(&out);
        if cmd != "verify" {
            c.args(["--peer", "127.0.0.1:9"]);
        }
        let o = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {stderr}");
        assert!(
            stderr.contains("v2-only torrents (BEP 52) cannot be downloaded yet"),
            "{cmd}: {stderr}"
        );
        assert!(!out.exists(), "{cmd} wrote {}", out.display());
    }
    let o = rivulet(&["info".as_ref(), v2.as_os_str()]);
    assert!(o.status.success());
}

/// Pieces of any size the format allows are downloaded and verified: blocks
/// go to disk as they arrive and are hashed there, so a 512 MiB piece costs
/// no 512 MiB of memory. Here one such piece (its file is 300 KiB) goes
/// from `rivulet seed` to `rivulet download`, and `verify` checks it.
#[test]
fn a_torrent_with_512_mib_pieces_downloads() {
    use cases::*;
    use sha1::{Digest, Sha1};
    use support::{next_loopback, RivuletCmd};
    const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    let info = B::d(&[
        ("name", B::s(b"big-pieces.bin")),
        ("piece length", B::I(512 << 20)),
        ("pieces", B::S(Sha1::digest(&data).to_vec())),
        ("length", B::I(data.len() as i64)),
    ]);
    let file = tmp.path().join("big.torrent");
    std::fs::write(&file, torrent(info)).unwrap();
    let seed_dir = tmp.path().join("seed");
    std::fs::create_dir(&seed_dir).unwrap();
    std::fs::write(seed_dir.join("big-pieces.bin"), &data).unwrap();
    let mut seeder = RivuletCmd::seed(&file, &seed_dir)
        .bind(next_loopback())
        .port(0)
        .spawn();
    let addr = *seeder.wait_listening_lines(MINUTE).first().unwrap();
    let out = tmp.path().join("out");
    RivuletCmd::download(&file, &out)
        .bind(next_loopback())
        .port(0)
        .peer(addr)
        .run(MINUTE)
        .assert_success();
    seeder.stop(MINUTE).assert_success();
    assert!(std::fs::read(out.join("big-pieces.bin")).unwrap() == data);
    let o = rivulet(&[
        "verify".as_ref(),
        file.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}");
}

/// A hybrid torrent shows both info-hashes; a v2-only one its v2 hash, and
/// says it cannot be downloaded yet.
#[test]
fn info_shows_v1_and_v2_hashes() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures/libtorrent-hybrid-multi.torrent");
    let text = rivulet(&["info".as_ref(), fixture.as_os_str()]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(
            "Info-hash:   a27d3eeea8c5a3d851565e54f5f92b10ab5ef79e (v1)\n             028e83cc361c6bdc20382a272809dbb0d1d28482d64b4002c2f06f7965fc090e (v2)\n"
        ),
        "{text}"
    );
    let (_, v) = info_json(&fixture);
    let v = v.unwrap();
    assert_eq!(v["format"], "hybrid");
    assert_eq!(
        v["info_hash_v2"],
        "028e83cc361c6bdc20382a272809dbb0d1d28482d64b4002c2f06f7965fc090e"
    );

    use cases::*;
    let tmp = tempfile::tempdir().unwrap();
    let v2 = tmp.path().join("v2.torrent");
    std::fs::write(
        &v2,
        torrent(v2_only(B::d(&[("a", leaf(5)), ("b", leaf(40000))]))),
    )
    .unwrap();
    let text = String::from_utf8(rivulet(&["info".as_ref(), v2.as_os_str()]).stdout).unwrap();
    assert!(text.contains(" (v2)\n"), "{text}");
    assert!(text.contains("Format:      v2 only"), "{text}");
    assert!(text.contains("Pieces:      4 x 16.00 KiB"), "{text}");
    assert!(text.contains("t/b"), "{text}");
    let (_, v) = info_json(&v2);
    let v = v.unwrap();
    assert_eq!(v["format"], "v2");
    assert!(v["info_hash"].is_null());
}
