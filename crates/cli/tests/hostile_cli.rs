//! A hostile torrent, downloaded the way a user would: names that try to
//! climb out of the folder, absolute paths, duplicates, a symlink out of the
//! torrent and one inside it, an executable. `rivulet seed` serves it from a
//! folder laid out as `rivulet info` says (and as libtorrent would lay it
//! out), `rivulet download` fetches it into `-o DIR`, and nothing is written
//! anywhere else. Needs only the rivulet binary: runs with `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

#[path = "conformance/cases.rs"]
#[allow(dead_code)]
mod cases;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cases::{link, path, torrent, B};
use support::{next_loopback, RivuletCmd};

const MINUTE: Duration = Duration::from_secs(60);
const PIECE: usize = 16384;

/// Every path below `dir`, relative to it; symlinks are listed, not followed.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_owned())
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

fn data_of(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7 % 251) as u8).collect()
}

#[test]
fn a_hostile_torrent_lands_inside_the_output_folder_only() {
    use sha1::{Digest, Sha1};
    let tmp = tempfile::tempdir().unwrap();
    // (path as the torrent says, length, attr)
    let entries: Vec<(Vec<&[u8]>, usize, &str)> = vec![
        (vec![b"..", b"..", b"escape.txt"], 20_000, ""),
        (vec![b"/etc", b"passwd"], 3_000, ""),
        (vec![b"a.txt"], 5_000, ""),
        (vec![b"a.txt"], 7_000, ""),
        (vec![b"bin", b"run.sh"], 100, "x"),
    ];
    let mut files: Vec<B> = Vec::new();
    let mut all = Vec::new();
    for (i, (p, len, attr)) in entries.iter().enumerate() {
        let mut f = B::d(&[("length", B::I(*len as i64)), ("path", path(p))]);
        if !attr.is_empty() {
            f = f.with("attr", B::s(attr));
        }
        files.push(f);
        all.extend(data_of(i, *len));
    }
    files.push(link(&[b"latest.txt"], &[b"a.txt"]));
    files.push(link(&[b"usr"], &[b"..", b"..", b"..", b"..", b"usr"]));
    let pieces: Vec<u8> = all
        .chunks(PIECE)
        .flat_map(|c| Sha1::digest(c).to_vec())
        .collect();
    let info = B::d(&[
        ("name", B::s("..")),
        ("piece length", B::I(PIECE as i64)),
        ("pieces", B::S(pieces)),
        ("files", B::L(files)),
    ]);
    let torrent_file = tmp.path().join("hostile.torrent");
    std::fs::write(&torrent_file, torrent(info)).unwrap();

    // Where rivulet (like libtorrent) puts each file.
    let o = support::rivulet::command()
        .args(["info", "--json"])
        .arg(&torrent_file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hash = v["info_hash"].as_str().unwrap().to_owned();
    let on_disk: Vec<String> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        on_disk,
        [
            format!("{hash}/escape.txt"),
            format!("{hash}/etc/passwd"),
            format!("{hash}/a.txt"),
            format!("{hash}/a.1.txt"),
            format!("{hash}/bin/run.sh"),
            format!("{hash}/latest.txt"),
            format!("{hash}/usr"),
        ]
    );

    // The seeder's folder, as a libtorrent-based client would have left it.
    let seed_dir = tmp.path().join("seed");
    for (i, (_, len, _)) in entries.iter().enumerate() {
        let p = seed_dir.join(&on_disk[i]);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data_of(i, *len)).unwrap();
    }
    let mut seeder = RivuletCmd::seed(&torrent_file, &seed_dir)
        .bind(next_loopback())
        .port(0)
        .spawn();
    let addr = *seeder.wait_listening_lines(MINUTE).first().unwrap();

    // Deep enough that a climbing path would land in `tmp/deep/...`.
    let out = tmp.path().join("deep").join("er").join("out");
    let before = tree(tmp.path());
    let leecher = RivuletCmd::download(&torrent_file, &out)
        .bind(next_loopback())
        .port(0)
        .peer(addr)
        .run(MINUTE);
    leecher.assert_success();
    seeder.stop(MINUTE).assert_success();

    // Nothing new outside `out` and the seeder's folder.
    let after = tree(tmp.path());
    let outside: Vec<_> = after
        .difference(&before)
        .filter(|p| !p.starts_with("deep/er/out") && !p.starts_with("seed"))
        .filter(|p| !Path::new("deep/er/out").starts_with(p))
        .collect();
    assert!(outside.is_empty(), "written outside -o DIR: {outside:?}");

    // Every file has its data, at the path `info` named.
    let root = out.join(&hash);
    for (i, (_, len, _)) in entries.iter().enumerate() {
        let got = std::fs::read(out.join(&on_disk[i])).unwrap();
        assert!(got == data_of(i, *len), "{} differs", on_disk[i]);
    }
    // The link inside the torrent exists and points at its file; the one
    // leaving the torrent was not made.
    let latest = root.join("latest.txt");
    assert!(std::fs::symlink_metadata(&latest)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_link(&latest).unwrap(), Path::new("a.txt"));
    assert_eq!(std::fs::read(&latest).unwrap(), data_of(2, 5_000));
    assert!(std::fs::symlink_metadata(root.join("usr")).is_err());
    // The executable attribute sets the execute bits.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("bin/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "mode {mode:o}");
    let mode = std::fs::metadata(root.join("a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0, "mode {mode:o}");
    assert!(
        leecher.output.contains("not created") || leecher.output.contains("not in the torrent"),
        "the skipped link is reported: {}",
        leecher.output
    );
}
