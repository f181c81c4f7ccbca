//! Interop tests: real BitTorrent programs accept what `rivulet create` makes,
//! and `rivulet info` / `rivulet verify` read what they make.
//!
//! The other side is played by libtorrent 2.0 (through `/usr/bin/python3` and
//! the helper script `tests/interop/lt_helper.py`), aria2, and Transmission's
//! and mktorrent's command-line tools. They are not always installed, so every
//! test here is ignored by default; CI installs them and runs
//!
//! ```text
//! cargo test -p rivulet --test interop_create -- --ignored
//! ```
//!
//! A test whose program is missing fails with a message saying what to
//! install: it never passes silently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
// The program checks are the harness's: they fail the test with the Debian
// package to install.
use support::{require_libtorrent, require_program};

mod support;

/// The python that has `python3-libtorrent` (not a pyenv one on PATH).
const PYTHON: &str = "/usr/bin/python3";

const HTTP_TRACKER: &str = "http://127.0.0.1:6969/announce";
const UDP_TRACKER: &str = "udp://127.0.0.1:6969";
const WEB_SEED: &str = "http://127.0.0.1:8080/";
const COMMENT: &str = "rivulet interop test: ça marche ✓";

// ---------------------------------------------------------------------------
// Running programs

fn rivulet() -> Command {
    support::rivulet::command()
}

fn helper_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_helper.py")
}

fn require_aria2() {
    require_program("aria2c", "aria2");
}

fn require_transmission() {
    require_program("transmission-show", "transmission-cli");
}

fn require_transmission_create() {
    require_program("transmission-create", "transmission-cli");
}

fn require_mktorrent() {
    require_program("mktorrent", "mktorrent");
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to the end; panics if it cannot be started.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(cmd)))
}

/// Runs `cmd`, insists on exit status 0, and returns its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "`{}` failed ({}):\n--- stdout\n{}--- stderr\n{}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is not UTF-8")
}

fn parse_json(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: bad JSON ({e}):\n{text}"))
}

/// `rivulet create PATH -o OUT -q EXTRA...`; returns the printed info-hash.
fn rivulet_create(source: &Path, out: &Path, extra: &[&str]) -> String {
    let stdout = run_ok(
        rivulet()
            .arg("create")
            .arg(source)
            .arg("-o")
            .arg(out)
            .arg("-q")
            .args(extra),
    );
    let hash = stdout.trim().to_owned();
    assert!(
        hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "rivulet create printed {stdout:?}, not a 40-hex info-hash"
    );
    hash
}

fn rivulet_info(torrent: &Path) -> Value {
    let out = run_ok(rivulet().arg("info").arg("--json").arg(torrent));
    parse_json(&out, "rivulet info --json")
}

/// `rivulet verify TORRENT -o DIR -q`: exit code and stdout.
fn rivulet_verify(torrent: &Path, dir: &Path) -> (i32, String) {
    let mut cmd = rivulet();
    cmd.arg("verify").arg(torrent).arg("-o").arg(dir).arg("-q");
    let out = run(&mut cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("`{}` died: {}", describe(&cmd), out.status));
    (code, text)
}

/// What libtorrent reads from `torrent`, and the status of the torrent after
/// libtorrent checked the data under `save_path` (see `lt_helper.py`).
fn libtorrent_inspect(torrent: &Path, save_path: &Path) -> Value {
    let out = run_ok(
        Command::new(PYTHON)
            .arg(helper_script())
            .arg("inspect")
            .arg(torrent)
            .arg(save_path)
            .arg("60"),
    );
    parse_json(&out, "lt_helper.py inspect")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn bool_of(v: &Value, key: &str) -> bool {
    v[key]
        .as_bool()
        .unwrap_or_else(|| panic!("{key} is not a bool in {v}"))
}

/// `[(path, size, padding)]` from a `files` list of rivulet's or the helper's JSON.
fn files_of(v: &Value) -> Vec<(String, u64, bool)> {
    v["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files list in {v}"))
        .iter()
        .map(|f| {
            (
                str_of(f, "path").to_owned(),
                u64_of(f, "size"),
                bool_of(f, "padding"),
            )
        })
        .collect()
}

/// The non-padding files of a `files` list, as a set of (path, size).
fn real_files(v: &Value) -> BTreeSet<(String, u64)> {
    files_of(v)
        .into_iter()
        .filter(|(_, _, pad)| !pad)
        .map(|(p, s, _)| (p, s))
        .collect()
}

// ---------------------------------------------------------------------------
// Test data

/// xorshift64*: deterministic, dependency-free pseudo-random bytes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Some data to share: the file or folder to hand to `create`, and the files
/// a torrent of it holds, as (path inside the torrent, size), e.g.
/// `("payload/a.bin", 1100003)`.
struct Fixture {
    /// The folder holding `source` (the save path / `verify -o` folder).
    dir: PathBuf,
    /// The file or top folder shared.
    source: PathBuf,
    files: BTreeSet<(String, u64)>,
}

impl Fixture {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn non_empty_files(&self) -> BTreeSet<(String, u64)> {
        self.files.iter().filter(|(_, s)| *s > 0).cloned().collect()
    }
}

fn write_file(dir: &Path, rel: &str, len: usize, seed: u64) -> (String, u64) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, Rng::new(seed).bytes(len)).unwrap();
    (rel.to_owned(), len as u64)
}

/// One ~3 MB file, not a multiple of any piece length.
fn single_file(dir: &Path) -> Fixture {
    let (rel, size) = write_file(dir, "sample.bin", 3_000_017, 1);
    Fixture {
        dir: dir.to_owned(),
        source: dir.join(&rel),
        files: [(rel, size)].into(),
    }
}

/// A folder with nested folders, an empty file, files smaller than a piece
/// (a run of them shares one piece), and a non-ASCII name.
fn folder(dir: &Path) -> Fixture {
    let mut files = BTreeSet::new();
    let specs: &[(&str, usize)] = &[
        ("payload/a.bin", 1_100_003),
        ("payload/données/日本語.txt", 5_000),
        ("payload/données/sub/deep/c.bin", 333_333),
        ("payload/empty.txt", 0),
        ("payload/small/1.txt", 1_000),
        ("payload/small/2.txt", 2_000),
        ("payload/small/3.txt", 3_000),
        ("payload/small/4.txt", 700),
        ("payload/z.bin", 200_001),
    ];
    for (seed, (rel, len)) in (10..).zip(specs) {
        files.insert(write_file(dir, rel, *len, seed));
    }
    Fixture {
        dir: dir.to_owned(),
        source: dir.join("payload"),
        files,
    }
}

/// The largest number of non-empty files any one piece of `info` (rivulet's
/// JSON) overlaps.
fn most_files_in_a_piece(info: &Value) -> usize {
    let piece = u64_of(info, "piece_length");
    let pieces = u64_of(info, "piece_count");
    let mut spans = Vec::new();
    let mut offset = 0;
    for (_, size, _) in files_of(info) {
        if size > 0 {
            spans.push((offset, offset + size));
        }
        offset += size;
    }
    (0..pieces)
        .map(|p| {
            let (start, end) = (p * piece, (p + 1) * piece);
            spans.iter().filter(|(a, b)| *a < end && *b > start).count()
        })
        .max()
        .unwrap_or(0)
}

/// 3000017 -> "3,000,017", the way aria2 prints sizes.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what}: expected to find {needle:?} in:\n{haystack}"
    );
}

/// The files (paths inside the torrent) that `rivulet verify` output names as
/// damaged.
fn damaged_files(verify_out: &str, fx: &Fixture) -> BTreeSet<String> {
    let prefix = format!("{}/", fx.dir.display());
    verify_out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("damaged: "))
        .map(|p| p.strip_prefix(&prefix).unwrap_or(p).to_owned())
        .collect()
}

/// The non-empty, non-padding files of `info` (rivulet's JSON) that share the
/// piece holding byte `at` of file `path`.
fn files_sharing_piece(info: &Value, path: &str, at: u64) -> BTreeSet<String> {
    let piece = u64_of(info, "piece_length");
    let mut spans = Vec::new();
    let mut offset = 0;
    for (p, size, pad) in files_of(info) {
        spans.push((p, offset, offset + size, pad));
        offset += size;
    }
    let (_, start, _, _) = spans
        .iter()
        .find(|(p, ..)| p == path)
        .unwrap_or_else(|| panic!("{path} is not in {info}"));
    let index = (start + at) / piece;
    let (lo, hi) = (index * piece, (index + 1) * piece);
    spans
        .into_iter()
        .filter(|(_, a, b, pad)| !pad && a < b && *a < hi && *b > lo)
        .map(|(p, ..)| p)
        .collect()
}

fn flip_byte(path: &Path, at: usize) {
    let mut data = fs::read(path).unwrap();
    data[at] ^= 0xff;
    fs::write(path, data).unwrap();
}

// ---------------------------------------------------------------------------
// Checks by each program

/// libtorrent loads `torrent`, reads in it what rivulet says it holds, and,
/// after checking the data in `fx.dir`, considers it complete and seeds.
fn check_with_libtorrent(torrent: &Path, hash: &str, info: &Value, fx: &Fixture) -> Value {
    let lt = libtorrent_inspect(torrent, &fx.dir);
    let ctx = format!("libtorrent on {}: {lt}", torrent.display());
    assert_eq!(str_of(&lt, "info_hash_v1"), hash, "{ctx}");
    assert_eq!(str_of(&lt, "name"), str_of(info, "name"), "{ctx}");
    assert_eq!(
        u64_of(&lt, "total_size"),
        u64_of(info, "total_size"),
        "{ctx}"
    );
    assert_eq!(
        u64_of(&lt, "num_pieces"),
        u64_of(info, "piece_count"),
        "{ctx}"
    );
    assert_eq!(
        u64_of(&lt, "piece_length"),
        u64_of(info, "piece_length"),
        "{ctx}"
    );
    // Same files, in the same order, and they are the files on disk.
    assert_eq!(files_of(&lt), files_of(info), "{ctx}");
    assert_eq!(real_files(&lt), fx.files, "{ctx}");
    assert_eq!(lt["trackers"], info["trackers"], "{ctx}");
    assert_eq!(lt["web_seeds"], info["web_seeds"], "{ctx}");
    assert_eq!(bool_of(&lt, "private"), bool_of(info, "private"), "{ctx}");

    let st = &lt["status"];
    assert!(
        bool_of(st, "checked"),
        "libtorrent never finished checking the data: {ctx}"
    );
    assert_eq!(st["errors"], Value::Array(vec![]), "{ctx}");
    assert_eq!(str_of(st, "state"), "seeding", "{ctx}");
    assert!(bool_of(st, "is_seeding"), "{ctx}");
    assert_eq!(st["progress"].as_f64(), Some(1.0), "{ctx}");
    assert_eq!(
        u64_of(st, "num_pieces"),
        u64_of(info, "piece_count"),
        "{ctx}"
    );
    assert_eq!(
        u64_of(st, "total_done"),
        u64_of(info, "total_size"),
        "{ctx}"
    );
    lt
}

/// `aria2c -S` lists the torrent with the right hash, name and files.
fn check_with_aria2(torrent: &Path, hash: &str, info: &Value) {
    let out = run_ok(Command::new("aria2c").arg("-S").arg(torrent));
    let what = "aria2c -S";
    assert_contains(&out, &format!("Info Hash: {hash}\n"), what);
    assert_contains(&out, &format!("Name: {}\n", str_of(info, "name")), what);
    assert_contains(
        &out,
        &format!("The Number of Pieces: {}\n", u64_of(info, "piece_count")),
        what,
    );
    assert_contains(
        &out,
        &format!("({})\n", thousands(u64_of(info, "total_size"))),
        what,
    );
    for (path, size, _) in files_of(info) {
        assert_contains(&out, &format!("|./{path}\n"), what);
        assert_contains(&out, &format!("({})\n", thousands(size)), what);
    }
}

/// `transmission-show` lists the torrent with the right hash, name, piece
/// count, files and private flag.
fn check_with_transmission(torrent: &Path, hash: &str, info: &Value) -> String {
    let out = run_ok(Command::new("transmission-show").arg(torrent));
    let what = "transmission-show";
    assert_contains(&out, &format!("  Hash: {hash}\n"), what);
    assert_contains(&out, &format!("  Name: {}\n", str_of(info, "name")), what);
    assert_contains(
        &out,
        &format!("  Piece Count: {}\n", u64_of(info, "piece_count")),
        what,
    );
    let privacy = if bool_of(info, "private") {
        "  Privacy: Private torrent\n"
    } else {
        "  Privacy: Public torrent\n"
    };
    assert_contains(&out, privacy, what);
    for (path, _, _) in files_of(info) {
        assert_contains(&out, &format!("\n  {path} ("), what);
    }
    for tier in info["trackers"].as_array().unwrap() {
        for url in tier.as_array().unwrap() {
            assert_contains(&out, &format!("  {}\n", url.as_str().unwrap()), what);
        }
    }
    out
}

/// The shared body of the two "others accept what rivulet makes" tests.
fn created_torrent_is_accepted(fx: &Fixture, multi_file: bool) {
    let out_dir = tempfile::tempdir().unwrap();
    let torrent = out_dir.path().join("made-by-rivulet.torrent");
    let hash = rivulet_create(
        &fx.source,
        &torrent,
        &[
            "-t",
            HTTP_TRACKER,
            "-t",
            UDP_TRACKER,
            "--web-seed",
            WEB_SEED,
            "--comment",
            COMMENT,
        ],
    );
    let info = rivulet_info(&torrent);
    assert_eq!(str_of(&info, "info_hash"), hash);
    assert_eq!(bool_of(&info, "multi_file"), multi_file);
    assert_eq!(real_files(&info), fx.files, "rivulet info: {info}");
    let total: u64 = fx.files.iter().map(|(_, s)| s).sum();
    assert_eq!(u64_of(&info, "total_size"), total);
    assert_ne!(
        total % u64_of(&info, "piece_length"),
        0,
        "the data should end in a short last piece"
    );
    if multi_file {
        assert!(
            most_files_in_a_piece(&info) >= 3,
            "test data should have a piece spanning 3+ files: {info}"
        );
    }

    let lt = check_with_libtorrent(&torrent, &hash, &info, fx);
    assert_eq!(
        lt["trackers"],
        serde_json::json!([[HTTP_TRACKER], [UDP_TRACKER]])
    );
    assert_eq!(lt["web_seeds"], serde_json::json!([WEB_SEED]));
    assert_eq!(str_of(&lt, "comment"), COMMENT);
    assert!(
        str_of(&lt, "creator").starts_with("rivulet "),
        "created by: {lt}"
    );
    assert!(
        u64_of(&lt, "creation_date") > 1_600_000_000,
        "no creation date: {lt}"
    );
    assert_eq!(
        Some(u64_of(&lt, "creation_date")),
        info["creation_date"].as_u64()
    );
    assert!(!bool_of(&lt, "has_v2"));

    check_with_aria2(&torrent, &hash, &info);
    let shown = check_with_transmission(&torrent, &hash, &info);
    assert_contains(
        &shown,
        &format!("  Comment: {COMMENT}\n"),
        "transmission-show",
    );
    assert_contains(&shown, &format!("  {WEB_SEED}\n"), "transmission-show");
}

// ---------------------------------------------------------------------------
// The tests

#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-cli, mktorrent (installed by .ci/run)"]
fn single_file_torrent_is_accepted_by_libtorrent_aria2_and_transmission() {
    require_libtorrent();
    require_aria2();
    require_transmission();
    let data = tempfile::tempdir().unwrap();
    let fx = single_file(data.path());
    created_torrent_is_accepted(&fx, false);
}

#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-cli, mktorrent (installed by .ci/run)"]
fn folder_torrent_is_accepted_by_libtorrent_aria2_and_transmission() {
    require_libtorrent();
    require_aria2();
    require_transmission();
    let data = tempfile::tempdir().unwrap();
    let fx = folder(data.path());
    created_torrent_is_accepted(&fx, true);
}

#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-cli, mktorrent (installed by .ci/run)"]
fn private_piece_length_and_no_date_are_honoured() {
    require_libtorrent();
    require_transmission();
    let data = tempfile::tempdir().unwrap();
    let fx = folder(data.path());
    let out_dir = tempfile::tempdir().unwrap();
    let torrent = out_dir.path().join("private.torrent");
    let flags = [
        "-t",
        HTTP_TRACKER,
        "--private",
        "--piece-length",
        "256K",
        "--no-date",
    ];
    let hash = rivulet_create(&fx.source, &torrent, &flags);
    let info = rivulet_info(&torrent);
    assert!(bool_of(&info, "private"), "{info}");
    assert_eq!(u64_of(&info, "piece_length"), 256 * 1024, "{info}");
    assert!(info["creation_date"].is_null(), "{info}");

    let lt = check_with_libtorrent(&torrent, &hash, &info, &fx);
    assert!(bool_of(&lt, "private"), "libtorrent: priv() is false: {lt}");
    assert_eq!(u64_of(&lt, "piece_length"), 262_144, "{lt}");
    assert_eq!(
        u64_of(&lt, "creation_date"),
        0,
        "libtorrent sees a date: {lt}"
    );

    let shown = check_with_transmission(&torrent, &hash, &info);
    assert_contains(&shown, "  Privacy: Private torrent\n", "transmission-show");
    assert_contains(&shown, "  Piece Size: 256.0 KiB\n", "transmission-show");
    assert_contains(&shown, "  Created on: Unknown\n", "transmission-show");

    // No date: the same data and options give the very same file.
    let again = out_dir.path().join("again.torrent");
    assert_eq!(rivulet_create(&fx.source, &again, &flags), hash);
    assert_eq!(fs::read(&torrent).unwrap(), fs::read(&again).unwrap());

    // And the private flag is part of the info dictionary: without it the
    // info-hash changes.
    let public = out_dir.path().join("public.torrent");
    let public_hash = rivulet_create(
        &fx.source,
        &public,
        &["-t", HTTP_TRACKER, "--piece-length", "256K", "--no-date"],
    );
    assert_ne!(public_hash, hash);
}

/// `rivulet info` and `rivulet verify` on a torrent another program made of
/// `fx`; damages and then deletes files of `fx` (and puts them back).
fn read_and_verify_foreign_torrent(torrent: &Path, fx: &Fixture, maker: &str) {
    let ctx = format!("torrent made by {maker}");
    let info = rivulet_info(torrent);
    let shown = run_ok(Command::new("transmission-show").arg(torrent));
    let hash = str_of(&info, "info_hash");
    assert_contains(&shown, &format!("  Hash: {hash}\n"), &ctx);
    assert_contains(
        &shown,
        &format!("  Name: {}\n", str_of(&info, "name")),
        &ctx,
    );
    assert_contains(
        &shown,
        &format!("  Piece Count: {}\n", u64_of(&info, "piece_count")),
        &ctx,
    );
    // Some makers leave out empty files; all the others must be there.
    assert_eq!(
        real_files(&info)
            .into_iter()
            .filter(|(_, s)| *s > 0)
            .collect::<BTreeSet<_>>(),
        fx.non_empty_files(),
        "{ctx}: {info}"
    );

    let (code, out) = rivulet_verify(torrent, &fx.dir);
    assert_eq!(code, 0, "{ctx}: verify of the source data:\n{out}");
    assert_contains(&out, "\ncomplete\n", &ctx);

    // One flipped byte in one file.
    let victim = "payload/données/日本語.txt";
    flip_byte(&fx.path(victim), 2_500);
    let (code, out) = rivulet_verify(torrent, &fx.dir);
    assert_eq!(code, 1, "{ctx}: verify after damaging {victim}:\n{out}");
    assert_contains(&out, ", 1 bad,", &ctx);
    assert_eq!(
        damaged_files(&out, fx),
        files_sharing_piece(&info, victim, 2_500),
        "{ctx}: verify should name the files of the one bad piece:\n{out}"
    );
    flip_byte(&fx.path(victim), 2_500);
    let (code, out) = rivulet_verify(torrent, &fx.dir);
    assert_eq!(code, 0, "{ctx}: verify after repairing {victim}:\n{out}");

    // One deleted file.
    let victim = "payload/z.bin";
    let saved = fs::read(fx.path(victim)).unwrap();
    fs::remove_file(fx.path(victim)).unwrap();
    let (code, out) = rivulet_verify(torrent, &fx.dir);
    assert_eq!(code, 1, "{ctx}: verify after deleting {victim}:\n{out}");
    assert_contains(&out, &fx.path(victim).display().to_string(), &ctx);
    fs::write(fx.path(victim), saved).unwrap();
    let (code, out) = rivulet_verify(torrent, &fx.dir);
    assert_eq!(code, 0, "{ctx}: verify after restoring {victim}:\n{out}");
}

#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-cli, mktorrent (installed by .ci/run)"]
fn rivulet_reads_and_verifies_mktorrent_and_transmission_torrents() {
    require_mktorrent();
    require_transmission_create();
    require_transmission();
    let data = tempfile::tempdir().unwrap();
    let fx = folder(data.path());
    let out_dir = tempfile::tempdir().unwrap();

    let mk = out_dir.path().join("mktorrent.torrent");
    run_ok(
        Command::new("mktorrent")
            .args(["-a", HTTP_TRACKER, "-l", "15", "-o"])
            .arg(&mk)
            .arg(&fx.source),
    );
    read_and_verify_foreign_torrent(&mk, &fx, "mktorrent");

    let tr = out_dir.path().join("transmission.torrent");
    run_ok(
        Command::new("transmission-create")
            .args(["-t", HTTP_TRACKER, "-s", "32", "-o"])
            .arg(&tr)
            .arg(&fx.source),
    );
    read_and_verify_foreign_torrent(&tr, &fx, "transmission-create");
}

#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-cli, mktorrent (installed by .ci/run)"]
fn rivulet_verifies_libtorrent_hybrid_torrent_with_padding_files() {
    require_libtorrent();
    let data = tempfile::tempdir().unwrap();
    let fx = folder(data.path());
    let out_dir = tempfile::tempdir().unwrap();
    let torrent = out_dir.path().join("hybrid.torrent");
    let made = run_ok(
        Command::new(PYTHON)
            .arg(helper_script())
            .arg("make-hybrid")
            .arg(&fx.source)
            .arg(&torrent)
            .arg("16384"),
    );
    let lt = parse_json(&made, "lt_helper.py make-hybrid");
    assert!(bool_of(&lt, "has_v2"), "libtorrent made no hybrid: {lt}");
    assert!(
        files_of(&lt).iter().any(|(_, _, pad)| *pad),
        "libtorrent made no padding files: {lt}"
    );

    let info = rivulet_info(&torrent);
    assert!(bool_of(&info, "hybrid"), "{info}");
    assert_eq!(str_of(&info, "info_hash"), str_of(&lt, "info_hash_v1"));
    assert_eq!(u64_of(&info, "piece_count"), u64_of(&lt, "num_pieces"));
    assert_eq!(u64_of(&info, "piece_length"), 16384);
    assert_eq!(u64_of(&info, "total_size"), u64_of(&lt, "total_size"));
    assert_eq!(
        files_of(&info)
            .iter()
            .map(|(_, s, pad)| (*s, *pad))
            .collect::<Vec<_>>(),
        files_of(&lt)
            .iter()
            .map(|(_, s, pad)| (*s, *pad))
            .collect::<Vec<_>>(),
        "padding files differ:\nrivulet: {info}\nlibtorrent: {lt}"
    );
    assert_eq!(real_files(&info), fx.files, "{info}");

    let (code, out) = rivulet_verify(&torrent, &fx.dir);
    assert_eq!(code, 0, "verify of the source data:\n{out}");
    assert_contains(&out, "\ncomplete\n", "rivulet verify");
    assert!(
        !fx.source.join(".pad").exists(),
        "verify made padding files on disk"
    );

    // The check is real: damage shows.
    let victim = "payload/small/3.txt";
    flip_byte(&fx.path(victim), 0);
    let (code, out) = rivulet_verify(&torrent, &fx.dir);
    assert_eq!(code, 1, "verify after damaging {victim}:\n{out}");
    assert_eq!(
        damaged_files(&out, &fx),
        files_sharing_piece(&info, victim, 0),
        "verify should name the files of the one bad piece:\n{out}"
    );
}
