//! Tests of the interop harness (`tests/support`): real BitTorrent programs
//! talk to each other through it, on loopback, so that the download, seed
//! and tracker interop tests of rivulet can rely on it.
//!
//! The programs are not always installed, so the swarm tests are ignored by
//! default; CI installs them and runs
//!
//! ```text
//! cargo test -p rivulet --test interop_harness -- --ignored --test-threads=1
//! ```
//!
//! A test whose program is missing fails with the package to install.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::fs;
use std::time::{Duration, Instant};

use rivulet_core::InfoHash;
use rivulet_testkit::peer::blocking::BlockingPeer;
use rivulet_wire::{BlockRequest, Message};
use support::data::{
    assert_same_tree_except_empty_files, compare_trees, first_difference, list_files,
    multi_file_layout,
};
use support::rivulet::{listening_lines, parse_human_bytes, uploaded_text};
use support::{
    assert_same_tree, loopback, make_torrent, make_torrent_with, multi_file_tree, single_file,
    Aria2, Aria2Config, LtConfig, LtPeer, Netns, OpenTracker, TorrentOptions, TransmissionDaemon,
};

/// The data helpers need no program: they run in every `cargo test`.
#[test]
fn data_trees_are_deterministic_and_differences_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = multi_file_tree(dir.path(), "a", 7, 50_000);
    let b = multi_file_tree(dir.path(), "b", 7, 50_000);
    let c = multi_file_tree(dir.path(), "c", 8, 50_000);
    compare_trees(&a, &b).unwrap();

    let files = list_files(&a);
    let layout = multi_file_layout(50_000);
    assert_eq!(files.len(), layout.len());
    for (rel, len) in &layout {
        assert_eq!(files.get(rel), Some(len), "{rel}");
    }
    assert!(files.contains_key("empty.txt"));
    assert!(files.keys().any(|k| !k.is_ascii()));

    // A different seed changes every non-empty file.
    let err = compare_trees(&a, &c).unwrap_err();
    assert!(
        err.contains("a.bin: contents differ, first at offset"),
        "{err}"
    );

    // One flipped byte, one missing file, one extra file, one short file.
    let flip = b.join("nested/deeper/deepest/b.bin");
    let mut bytes = fs::read(&flip).unwrap();
    bytes[12_345] ^= 1;
    fs::write(&flip, &bytes).unwrap();
    assert_eq!(
        first_difference(&a.join("nested/deeper/deepest/b.bin"), &flip),
        Some(12_345)
    );
    fs::remove_file(b.join("small/03.txt")).unwrap();
    fs::write(b.join("extra.txt"), "x").unwrap();
    let short = b.join("z.bin");
    let mut bytes = fs::read(&short).unwrap();
    bytes.truncate(100);
    fs::write(&short, &bytes).unwrap();
    let err = compare_trees(&a, &b).unwrap_err();
    for needle in [
        "nested/deeper/deepest/b.bin: contents differ, first at offset 12345",
        "missing: small/03.txt (1200 bytes)",
        "extra: extra.txt (1 bytes)",
        "z.bin: 100 bytes, expected 9999",
    ] {
        assert!(err.contains(needle), "no {needle:?} in:\n{err}");
    }

    let f1 = single_file(dir.path(), "one.bin", 100_000, 1);
    let f2 = single_file(&dir.path().join("x"), "one.bin", 100_000, 1);
    assert_same_tree(&f1, &f2);
}

/// The parsers for rivulet's output need no program either.
#[test]
fn rivulet_output_parsers() {
    assert_eq!(parse_human_bytes("0 B"), Some(0));
    assert_eq!(parse_human_bytes("64.0 MiB"), Some(64 << 20));
    assert_eq!(parse_human_bytes("1.50 GiB"), Some(3 << 29));
    assert_eq!(parse_human_bytes("12.5 KiB"), Some(12_800));
    assert_eq!(parse_human_bytes("3 MB"), Some(3_000_000));
    assert_eq!(parse_human_bytes("lots"), None);
    let out = "listening on 127.0.0.5:6881\nlistening on [::]:6881\n\
               done: x (1 MiB) in 1s, 1 MiB fetched at 1 MiB/s average, 0 hash failures, \
               0 peers banned, uploaded 2.50 MiB\n";
    assert_eq!(
        listening_lines(out),
        vec![
            "127.0.0.5:6881".parse().unwrap(),
            "[::]:6881".parse().unwrap()
        ]
    );
    assert_eq!(uploaded_text(out).as_deref(), Some("2.50 MiB"));
    assert_eq!(
        uploaded_text("stopped: uploaded 0 B.").as_deref(),
        Some("0 B")
    );
    assert_eq!(
        uploaded_text("uploaded 1.0 MiB (ratio 0.5)").as_deref(),
        Some("1.0 MiB")
    );
    assert_eq!(uploaded_text("nothing here"), None);
}

/// opentracker + libtorrent seeder (127.0.0.2) + aria2 leecher (127.0.0.3),
/// multi-file torrent, HTTP announces.
#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-daemon, opentracker (installed by .ci/run)"]
fn libtorrent_seeds_to_aria2_through_opentracker_http() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seed");
    let leech_dir = work.path().join("leech");
    fs::create_dir_all(&leech_dir).unwrap();

    let mut tracker = OpenTracker::start(loopback(1), 0);
    let content = multi_file_tree(&seed_dir, "tree ✓", 1, 300_000);
    let torrent = make_torrent_with(
        &content,
        &TorrentOptions::new(16 * 1024)
            .tracker(&tracker.http_announce_url())
            .out(&work.path().join("tree.torrent")),
    );
    assert!(!torrent.has_v2);
    assert!(
        torrent.max_files_per_piece >= 3,
        "no piece spans 3 files: {torrent:#?}"
    );
    tracker.whitelist(&torrent.info_hash_v1);

    let mut seeder = LtPeer::seeder(&torrent.path, &seed_dir, loopback(2));
    let st = seeder.wait_announced(Duration::from_secs(10));
    assert_eq!(st.announces[0].url, tracker.http_announce_url());
    tracker.wait_for_seeders(&torrent.info_hash_v1, 1, Duration::from_secs(5));

    let mut leecher = Aria2::leecher(&torrent.path, &leech_dir, loopback(3));
    leecher.wait_success(Duration::from_secs(40));
    assert_same_tree(&content, &leech_dir.join("tree ✓"));

    let st = seeder.status();
    assert!(
        st.total_payload_upload >= torrent.total_size,
        "seeder sent {} of {} bytes",
        st.total_payload_upload,
        torrent.total_size
    );
    eprintln!(
        "libtorrent → aria2 via opentracker: {:?}",
        started.elapsed()
    );
}

/// transmission-daemon seeder (127.0.0.4) + libtorrent leecher (127.0.0.5)
/// that finds it through opentracker.
#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-daemon, opentracker (installed by .ci/run)"]
fn transmission_seeds_to_libtorrent() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seed");
    let leech_dir = work.path().join("leech");
    fs::create_dir_all(&leech_dir).unwrap();

    let mut tracker = OpenTracker::start(loopback(1), 0);
    let content = multi_file_tree(&seed_dir, "from transmission", 2, 500_000);
    let (torrent, hash) = make_torrent(&content, Some(&tracker.http_announce_url()), 32 * 1024);
    tracker.whitelist(&hash);

    let mut seeder = TransmissionDaemon::start(loopback(4), &seed_dir);
    let added = seeder.add_torrent(&torrent);
    assert_eq!(added, hash);
    seeder.wait_seeding(&hash, Duration::from_secs(20));
    seeder.wait_announced(&hash, Duration::from_secs(15));
    tracker.wait_for_seeders(&hash, 1, Duration::from_secs(5));

    let mut leecher = LtPeer::start(&torrent, &leech_dir, LtConfig::new(loopback(5)));
    let st = leecher.wait_seeding(Duration::from_secs(40));
    assert_eq!(st.hash_failures, 0);
    assert_same_tree(&content, &leech_dir.join("from transmission"));
    // libtorrent drops the connection once both sides are seeds, so ask
    // Transmission what it sent.
    let t = seeder.torrent(&hash);
    let total = st.total_wanted;
    assert!(
        t.uploaded_ever >= total,
        "transmission sent {} of {total} bytes",
        t.uploaded_ever
    );
    eprintln!("transmission → libtorrent: {:?}", started.elapsed());
}

/// A libtorrent seeder announces over UDP; the tracker then counts it.
#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-daemon, opentracker (installed by .ci/run)"]
fn libtorrent_announces_to_opentracker_over_udp() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seed");

    let mut tracker = OpenTracker::start(loopback(1), 0);
    let content = single_file(&seed_dir, "udp.bin", 200_000, 3);
    let (torrent, hash) = make_torrent(&content, Some(&tracker.udp_announce_url()), 16 * 1024);
    assert_eq!(tracker.scrape(&hash), None);
    tracker.whitelist(&hash);

    let mut seeder = LtPeer::seeder(&torrent, &seed_dir, loopback(6));
    let st = seeder.wait_announced(Duration::from_secs(10));
    assert!(st.announces[0].url.starts_with("udp://"), "{st:#?}");
    let counts = tracker.wait_for_seeders(&hash, 1, Duration::from_secs(5));
    assert_eq!(counts.incomplete, 0);
    eprintln!("libtorrent UDP announce: {:?}", started.elapsed());
}

/// A rate-limited libtorrent seeder (127.0.0.7) throttles a loopback
/// leecher (127.0.0.8) that connects to it directly, with no tracker.
#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-daemon, opentracker (installed by .ci/run)"]
fn libtorrent_rate_limit_applies_on_loopback() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seed");
    let leech_dir = work.path().join("leech");
    fs::create_dir_all(&leech_dir).unwrap();
    let content = single_file(&seed_dir, "slow.bin", 800_000, 4);
    let (torrent, _) = make_torrent(&content, None, 16 * 1024);

    let limit = 200_000;
    let mut seeder = LtPeer::start(
        &torrent,
        &seed_dir,
        LtConfig::new(loopback(7)).rate_limit(limit, 0),
    );
    seeder.wait_seeding(Duration::from_secs(10));
    let mut leecher = LtPeer::leecher(&torrent, &leech_dir, loopback(8));
    let t0 = Instant::now();
    leecher.connect_peer(seeder.addr());
    let st = leecher.wait_progress(0.25, Duration::from_secs(20));
    assert!(st.progress < 1.0, "not throttled: {st:#?}");
    let peer = st
        .peers
        .iter()
        .find(|p| p.ip == "127.0.0.7")
        .unwrap_or_else(|| panic!("not connected to the seeder: {st:#?}"));
    assert!(peer.seed && peer.outgoing, "{peer:?}");
    leecher.wait_seeding(Duration::from_secs(30));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2_500),
        "800 kB at {limit} B/s took only {took:?}"
    );
    assert_same_tree(&content, &leech_dir.join("slow.bin"));
    leecher.quit();
    eprintln!(
        "libtorrent rate limit: {:?} (transfer {took:?})",
        started.elapsed()
    );
}

/// An aria2 seeder (127.0.0.9) checks existing data and seeds it to a
/// libtorrent leecher (127.0.0.10) that connects to it directly.
#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-daemon, opentracker (installed by .ci/run)"]
fn aria2_seeds_to_libtorrent() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seed");
    let leech_dir = work.path().join("leech");
    fs::create_dir_all(&leech_dir).unwrap();
    let content = multi_file_tree(&seed_dir, "from aria2", 5, 200_000);
    let (torrent, _) = make_torrent(&content, None, 16 * 1024);

    let seeder = Aria2::seeder(&torrent, &seed_dir, loopback(9));
    let mut leecher = LtPeer::start(
        &torrent,
        &leech_dir,
        LtConfig::new(loopback(10)).connect(seeder.addr()),
    );
    leecher.wait_seeding(Duration::from_secs(40));
    assert_same_tree(&content, &leech_dir.join("from aria2"));
    let s = seeder.status().expect("aria2 still seeding");
    assert_ne!(s["uploadLength"], "0", "{s}");
    eprintln!("aria2 → libtorrent: {:?}", started.elapsed());
}

/// An aria2 leecher (127.0.0.11) of a torrent without trackers downloads
/// from a libtorrent seeder (127.0.0.12) that connects to it: aria2 cannot
/// be told of a peer, so this is how a seeder given `--peer` reaches it.
#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-daemon, opentracker (installed by .ci/run)"]
fn aria2_leeches_from_a_seeder_that_connects_to_it() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seed");
    let leech_dir = work.path().join("leech");
    fs::create_dir_all(&leech_dir).unwrap();
    let content = multi_file_tree(&seed_dir, "to aria2", 6, 300_000);
    let (torrent, _) = make_torrent(&content, None, 16 * 1024);

    let mut leecher = Aria2::leecher(&torrent, &leech_dir, loopback(11));
    let mut seeder = LtPeer::start(
        &torrent,
        &seed_dir,
        LtConfig::new(loopback(12)).connect(leecher.addr()),
    );
    seeder.wait_seeding(Duration::from_secs(20));
    leecher.wait_success(Duration::from_secs(60));
    assert_same_tree(&content, &leech_dir.join("to aria2"));
    eprintln!("libtorrent → aria2 (outgoing): {:?}", started.elapsed());
}

/// In a network namespace of its own (see `support::netns`), a Transmission
/// leecher downloads a multi-file torrent from a libtorrent seeder that it
/// finds through opentracker: the harness that Transmission-as-leecher
/// tests rely on, independent of rivulet. The namespace is gone afterwards.
#[test]
#[ignore = "interop: needs root (network namespace), python3-libtorrent, transmission-daemon, opentracker (installed by .ci/run)"]
fn transmission_leeches_from_libtorrent_in_a_netns() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seed");
    let leech_dir = work.path().join("leech");
    fs::create_dir_all(&leech_dir).unwrap();
    let ns = Netns::create();
    let ns_name = ns.name().to_owned();
    {
        let mut tracker = OpenTracker::start_in(&ns, ns.next_ip(), 0);
        let content = multi_file_tree(&seed_dir, "to transmission", 7, 400_000);
        let (torrent, hash) = make_torrent(&content, Some(&tracker.http_announce_url()), 32 * 1024);
        tracker.whitelist(&hash);

        let seeder_ip = ns.next_ip();
        let mut seeder = LtPeer::start(&torrent, &seed_dir, LtConfig::new(seeder_ip).netns(&ns));
        seeder.wait_seeding(Duration::from_secs(20));
        seeder.wait_announced(Duration::from_secs(15));
        tracker.wait_for_seeders(&hash, 1, Duration::from_secs(10));

        let mut leecher = TransmissionDaemon::start_in(&ns, ns.next_ip(), &leech_dir);
        assert_eq!(leecher.add_torrent(&torrent), hash);
        let t = leecher.wait_complete(&hash, Duration::from_secs(90));
        assert_eq!(t.total_size, seeder.status().total_wanted);
        // Transmission 3.00 does not create the tree's zero-length file.
        assert!(!leech_dir.join("to transmission/empty.txt").exists());
        assert_same_tree_except_empty_files(&content, &leech_dir.join("to transmission"));
        assert!(
            seeder.status().total_payload_upload >= t.total_size,
            "{:#?}",
            seeder.status()
        );
    }
    drop(ns);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&ns_name),
        "namespace {ns_name} left behind"
    );
    eprintln!(
        "libtorrent → transmission in a netns: {:?}",
        started.elapsed()
    );
}

/// Three leechers of different clients (libtorrent, aria2, Transmission)
/// download at once from one libtorrent seeder, all in one network
/// namespace and found through opentracker: the swarm that rivulet's
/// "one seeder, four leechers" test uses, with libtorrent as the seeder.
#[test]
#[ignore = "interop: needs root (network namespace), python3-libtorrent, aria2, transmission-daemon, opentracker (installed by .ci/run)"]
fn three_clients_leech_at_once_in_a_netns() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seed");
    let ns = Netns::create();
    let mut tracker = OpenTracker::start_in(&ns, ns.next_ip(), 0);
    let content = single_file(&seed_dir, "swarm.bin", 6_000_000 + 7, 8);
    // HTTP: aria2 speaks UDP to trackers only with DHT on.
    let (torrent, hash) = make_torrent(&content, Some(&tracker.http_announce_url()), 64 * 1024);
    tracker.whitelist(&hash);
    let mut seeder = LtPeer::start(&torrent, &seed_dir, LtConfig::new(ns.next_ip()).netns(&ns));
    seeder.wait_seeding(Duration::from_secs(20));
    seeder.wait_announced(Duration::from_secs(15));
    tracker.wait_for_seeders(&hash, 1, Duration::from_secs(10));

    let dirs: Vec<_> = ["lt", "aria2", "tr"]
        .iter()
        .map(|d| {
            let p = work.path().join(d);
            fs::create_dir_all(&p).unwrap();
            p
        })
        .collect();
    let mut lt = LtPeer::start(&torrent, &dirs[0], LtConfig::new(ns.next_ip()).netns(&ns));
    let mut aria = Aria2::start(
        &torrent,
        &dirs[1],
        Aria2Config::leecher(ns.next_ip()).netns(&ns),
    );
    let mut tr = TransmissionDaemon::start_in(&ns, ns.next_ip(), &dirs[2]);
    tr.add_torrent(&torrent);

    lt.wait_seeding(Duration::from_secs(90));
    aria.wait_success(Duration::from_secs(90));
    tr.wait_complete(&hash, Duration::from_secs(90));
    for d in &dirs {
        assert_same_tree(&content, &d.join("swarm.bin"));
    }
    eprintln!("libtorrent → 3 clients in a netns: {:?}", started.elapsed());
}

/// The hand-driven fake peer (the test kit's `BlockingPeer`) handshakes
/// with a libtorrent seeder (127.0.0.13), is unchoked, gets the block it
/// asks for, and sees the connection close when libtorrent goes away.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn raw_peer_talks_to_libtorrent() {
    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seed");
    let content = single_file(&seed_dir, "raw.bin", 300_000, 9);
    let (torrent, hash) = make_torrent(&content, None, 32 * 1024);
    let seeder = LtPeer::seeder(&torrent, &seed_dir, loopback(13));
    let ih: [u8; 20] = support::hex_to_bytes(&hash).try_into().unwrap();
    let peer = BlockingPeer::leecher(loopback(14), seeder.addr(), InfoHash(ih));
    let st = peer.wait_for("its bitfield", Duration::from_secs(10), |s| {
        s.has_piece(0) && s.extended_handshake.is_some()
    });
    assert!(
        st.reserved[7] & 0x04 != 0,
        "libtorrent has the fast extension"
    );
    peer.interested();
    peer.wait_unchoked(Duration::from_secs(20));
    peer.send(Message::Request(BlockRequest {
        piece: 1,
        offset: 16 * 1024,
        length: 16 * 1024,
    }))
    .unwrap();
    let st = peer.wait_for("the block", Duration::from_secs(10), |s| s.pieces == 1);
    assert_eq!(st.blocks, vec![(1, 16 * 1024, 16 * 1024)]);
    let since = Instant::now();
    drop(seeder);
    let (after, _) = peer.wait_closed(since, Duration::from_secs(10));
    eprintln!("raw peer saw the close after {after:?}");
}
