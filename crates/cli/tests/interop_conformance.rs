//! Every odd torrent of `conformance/cases.rs` held against libtorrent 2.0.8
//! (`python3-libtorrent`, from `/usr/bin/python3`): rivulet loads exactly
//! what libtorrent loads, with the same info-hashes, name, file paths and
//! sizes, executable bits and symlink targets, and refuses what libtorrent
//! refuses. Deliberate differences are named in the case and checked to
//! still differ, so that the note stays true. Ignored by default (it needs
//! libtorrent); `.ci/run` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "conformance/cases.rs"]
#[allow(dead_code)]
mod cases;

use std::process::Command;

use serde_json::{json, Value};

/// Loads each .torrent named on the command line with libtorrent and prints
/// one JSON line per file: what libtorrent makes of it, or its error.
const LIBTORRENT_LOADER: &str = r#"
import json, sys
import libtorrent as lt
for path in sys.argv[1:]:
    try:
        ti = lt.torrent_info(open(path, "rb").read())
    except Exception as e:
        print(json.dumps({"error": str(e)}))
        continue
    fs = ti.files()
    ih = ti.info_hashes()
    files = []
    for i in range(fs.num_files()):
        flags = int(fs.file_flags(i))
        if flags & 1:
            continue  # padding
        files.append({
            "path": fs.file_path(i),
            "size": fs.file_size(i),
            "executable": bool(flags & 4),
            # libtorrent points a link it will not create at itself.
            "symlink": (None if fs.symlink(i) == fs.file_path(i) else fs.symlink(i)) if flags & 8 else "-",
        })
    print(json.dumps({
        "name": ti.name(),
        "v1": str(ih.v1) if ih.has_v1() else None,
        "v2": str(ih.v2) if ih.has_v2() else None,
        "files": files,
    }))
"#;

/// What libtorrent makes of each of `files`, in order (one JSON value each).
fn libtorrent_views(files: &[std::path::PathBuf]) -> Vec<Value> {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(LIBTORRENT_LOADER)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "libtorrent loader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What rivulet's `info --json` says, in the loader's terms.
fn rivulet_view(v: &Value) -> Value {
    let files: Vec<Value> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["padding"] == false)
        .map(|f| {
            json!({
                "path": f["path"],
                "size": f["size"],
                "executable": f["executable"],
                "symlink": match f["symlink"].is_null() {
                    true => json!("-"),
                    false => f["symlink"]["target"].clone(),
                },
            })
        })
        .collect();
    json!({
        "name": v["name"],
        "v1": v["info_hash"],
        "v2": v["info_hash_v2"],
        "files": files,
    })
}

#[test]
#[ignore = "needs libtorrent (python3-libtorrent); run by .ci/run"]
fn odd_torrents_load_exactly_as_in_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = cases::cases();
    let paths: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = tmp.path().join(format!("{i}.torrent"));
            std::fs::write(&p, &c.bytes).unwrap();
            p
        })
        .collect();
    let lt = libtorrent_views(&paths);
    assert_eq!(lt.len(), cases.len());

    let mut mismatches = Vec::new();
    let mut compared = 0;
    for ((c, path), lt) in cases.iter().zip(&paths).zip(&lt) {
        let o = Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .args(["info", "--json"])
            .arg(path)
            .output()
            .unwrap();
        let ours = o
            .status
            .success()
            .then(|| rivulet_view(&serde_json::from_slice(&o.stdout).unwrap()));
        let same = match (&ours, lt.get("error")) {
            (None, Some(_)) => true,
            (Some(ours), None) => ours == lt,
            _ => false,
        };
        let describe = || {
            format!(
                "{}:\n  rivulet:    {}\n  libtorrent: {lt}",
                c.name,
                ours.as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&o.stderr).trim().to_owned()),
            )
        };
        match (same, c.differs_from_libtorrent) {
            (true, None) => compared += 1,
            (false, Some(_)) => {}
            (false, None) => mismatches.push(describe()),
            (true, Some(why)) => mismatches.push(format!(
                "{} is noted as differing from libtorrent ({why}) but no longer does\n{}",
                c.name,
                describe()
            )),
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    eprintln!("{compared} torrents load (or are refused) exactly as in libtorrent");
}

#[test]
#[ignore = "needs libtorrent (python3-libtorrent); run by .ci/run"]
fn webtorrent_fixtures_hash_as_in_libtorrent() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/webtorrent");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "torrent"))
        .collect();
    files.sort();
    assert!(files.len() >= 9);
    let lt = libtorrent_views(&files);
    for (file, lt) in files.iter().zip(&lt) {
        let o = Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .args(["info", "--json"])
            .arg(file)
            .output()
            .unwrap();
        match lt.get("error") {
            Some(_) => assert_eq!(o.status.code(), Some(2), "{}", file.display()),
            None => {
                assert!(o.status.success(), "{}", file.display());
                let ours = rivulet_view(&serde_json::from_slice(&o.stdout).unwrap());
                assert_eq!(&ours, lt, "{}", file.display());
            }
        }
    }
}
