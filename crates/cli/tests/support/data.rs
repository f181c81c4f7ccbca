//! Deterministic test data, and byte-for-byte comparison of file trees.
//!
//! The bytes of a file depend only on the seed and the file's path inside the
//! tree, so the same call always makes the same tree.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A small, fast pseudo-random generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// A seed for one file: `seed` mixed with the file's relative path.
fn file_seed(seed: u64, rel: &str) -> u64 {
    // FNV-1a of the path, then mixed with the seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rel.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Rng::new(h ^ seed.rotate_left(17)).next_u64()
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Writes `len` pseudo-random bytes from `seed` to `path` (making its
/// folders), in chunks so that large files need little memory.
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// Makes `parent/name`, a single file of `len` pseudo-random bytes, and
/// returns its path.
pub fn single_file(parent: &Path, name: &str, len: u64, seed: u64) -> PathBuf {
    let path = parent.join(name);
    write_random_file(&path, file_seed(seed, name), len);
    path
}

/// The files of [`multi_file_tree`], as (path relative to the tree's root,
/// length). `big_len` is the length of the two largest files.
///
/// Names avoid the characters Windows reserves (`<>:"\\|?*`): Transmission
/// 3.00 replaces them with `_` on disk, so its copy would not match.
///
/// In the order libtorrent usually lays them out, the eight files of
/// `small/` (5.5 KiB in all) are consecutive, so with any piece length of
/// 16 KiB or more some v1 piece covers at least three files; check
/// [`crate::support::MadeTorrent::max_files_per_piece`] to be sure.
pub fn multi_file_layout(big_len: u64) -> Vec<(String, u64)> {
    let mut files = vec![
        ("a.bin".to_owned(), big_len + 1),
        ("empty.txt".to_owned(), 0),
        (
            "nested/deeper/deepest/b.bin".to_owned(),
            big_len / 2 + 12_345,
        ),
        ("nested/c.dat".to_owned(), 33_333),
        ("ünïcødé/日本語 файл.dat".to_owned(), 40_000),
        ("ünïcødé/ça va!.txt".to_owned(), 2_000),
        ("z.bin".to_owned(), 9_999),
    ];
    for (i, len) in [700u64, 1, 1_200, 333, 1_024, 17, 999, 1_300]
        .iter()
        .enumerate()
    {
        files.push((format!("small/{:02}.txt", i + 1), *len));
    }
    files
}

/// Makes a folder `parent/name` of pseudo-random files: nested folders, a
/// zero-length file, small files that share pieces, non-ASCII names (see
/// [`multi_file_layout`]). `big_len` sets the size of the two large files
/// (the tree is about `1.5 * big_len + 95 KB`). Returns the folder's path.
pub fn multi_file_tree(parent: &Path, name: &str, seed: u64, big_len: u64) -> PathBuf {
    let root = parent.join(name);
    fs::create_dir_all(&root).unwrap();
    for (rel, len) in multi_file_layout(big_len) {
        write_random_file(&root.join(&rel), file_seed(seed, &rel), len);
    }
    root
}

/// Every regular file under `root` (or `root` itself if it is a file), as
/// relative path with `/` separators → length.
pub fn list_files(root: &Path) -> BTreeMap<String, u64> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, u64>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = fs::metadata(e.path()).unwrap();
            if meta.is_dir() {
                walk(&e.path(), &rel, out);
            } else {
                out.insert(rel, meta.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    let meta = fs::metadata(root).unwrap_or_else(|e| panic!("stat {}: {e}", root.display()));
    if meta.is_dir() {
        walk(root, "", &mut out);
    } else {
        out.insert(String::new(), meta.len());
    }
    out
}

/// The first offset where files `a` and `b` differ (`None` if identical).
pub fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let mut fa = fs::File::open(a).unwrap_or_else(|e| panic!("open {}: {e}", a.display()));
    let mut fb = fs::File::open(b).unwrap_or_else(|e| panic!("open {}: {e}", b.display()));
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        let n = na.min(nb);
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Some(offset + i as u64);
        }
        if na != nb {
            return Some(offset + n as u64);
        }
        if na == 0 {
            return None;
        }
        offset += n as u64;
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Compares two trees (or two files) byte for byte. `Err` lists every
/// difference: files missing or extra in `actual`, length differences, and
/// the first differing offset of each file whose bytes differ.
pub fn compare_trees(expected: &Path, actual: &Path) -> Result<(), String> {
    compare(expected, actual, false)
}

/// [`compare_trees`], except that zero-length files of `expected` may be
/// missing from `actual`: Transmission 3.00 never creates the zero-length
/// files of a torrent it downloads.
pub fn compare_trees_except_empty_files(expected: &Path, actual: &Path) -> Result<(), String> {
    compare(expected, actual, true)
}

fn compare(expected: &Path, actual: &Path, empty_may_be_missing: bool) -> Result<(), String> {
    if !actual.exists() {
        return Err(format!("{} does not exist", actual.display()));
    }
    let want = list_files(expected);
    let got = list_files(actual);
    let mut problems = Vec::new();
    let shown = |rel: &str| {
        if rel.is_empty() {
            "(the file)".to_owned()
        } else {
            rel.to_owned()
        }
    };
    for (rel, len) in &want {
        match got.get(rel) {
            None if *len == 0 && empty_may_be_missing => {}
            None => problems.push(format!("missing: {} ({len} bytes)", shown(rel))),
            Some(got_len) if got_len != len => problems.push(format!(
                "{}: {got_len} bytes, expected {len}{}",
                shown(rel),
                match first_difference(&join(expected, rel), &join(actual, rel)) {
                    Some(off) if off < (*len).min(*got_len) =>
                        format!("; first difference at offset {off}"),
                    _ => String::new(),
                }
            )),
            Some(_) => {
                if let Some(off) = first_difference(&join(expected, rel), &join(actual, rel)) {
                    problems.push(format!(
                        "{}: contents differ, first at offset {off} of {len}",
                        shown(rel)
                    ));
                }
            }
        }
    }
    for (rel, len) in &got {
        if !want.contains_key(rel) {
            problems.push(format!("extra: {} ({len} bytes)", shown(rel)));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} differs from {}:\n  {}",
            actual.display(),
            expected.display(),
            problems.join("\n  ")
        ))
    }
}

fn join(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Fails the test unless `actual` is byte-for-byte the same tree as
/// `expected` (see [`compare_trees`]).
#[track_caller]
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    if let Err(msg) = compare_trees(expected, actual) {
        panic!("{msg}");
    }
}

/// [`assert_same_tree`] for what Transmission 3.00 downloads: zero-length
/// files may be missing (see [`compare_trees_except_empty_files`]).
#[track_caller]
pub fn assert_same_tree_except_empty_files(expected: &Path, actual: &Path) {
    if let Err(msg) = compare_trees_except_empty_files(expected, actual) {
        panic!("{msg}");
    }
}
