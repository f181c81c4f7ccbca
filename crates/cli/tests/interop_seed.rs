//! `rivulet seed` (and `rivulet download` serving while it downloads) against
//! real BitTorrent leechers: libtorrent, aria2 and Transmission each fetch a
//! single-file and a multi-file torrent byte-identical; one seeder serves
//! four leechers of different clients at once; three rivulet leechers
//! exchange pieces among themselves; leechers that flood requests or ask for
//! blocks out of range are disconnected while the others are still served.
//!
//! Transmission 3.00 never connects to peers on 127.0.0.0/8, so its tests
//! run in a network namespace of their own (`support::netns`, needs root),
//! with everyone at 10.77.0.x addresses that exist only inside it. The
//! other tests run on loopback, each peer on its own 127.0.0.x.
//!
//! The programs are not always installed, so these tests are ignored by
//! default; CI installs them and runs
//!
//! ```text
//! cargo test -p rivulet --test interop_seed -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::cell::Cell;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rivulet_core::InfoHash;
use rivulet_testkit::peer::blocking::BlockingPeer;
use rivulet_wire::{BlockRequest, Message};
use serde_json::Value;
use support::data::assert_same_tree_except_empty_files;
use support::{
    assert_same_tree, free_port, hex_to_bytes, make_torrent, make_torrent_with, multi_file_tree,
    next_loopback, poll_until, require_libtorrent, require_program, single_file, Aria2,
    Aria2Config, LtConfig, LtPeer, Netns, OpenTracker, Rivulet, RivuletCmd, RivuletExit,
    TorrentOptions, TransmissionDaemon,
};

const MINUTE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Helpers

fn rivulet() -> Command {
    support::rivulet::command()
}

/// `rivulet create DATA [-t URL] -o OUT --piece-length LEN --no-date -q`;
/// returns the torrent's path and v1 info-hash (hex, from `rivulet info
/// --json`).
fn create(data: &Path, tracker: Option<&str>, out: &Path, piece_len: &str) -> (PathBuf, String) {
    let mut cmd = rivulet();
    cmd.arg("create").arg(data).arg("-o").arg(out);
    if let Some(t) = tracker {
        cmd.arg("-t").arg(t);
    }
    cmd.args(["--piece-length", piece_len, "--no-date", "--quiet"]);
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        o.status.success(),
        "`{}` failed: {}",
        support::command_line(&cmd),
        String::from_utf8_lossy(&o.stderr)
    );
    let info = rivulet()
        .arg("info")
        .arg("--json")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(info.status.success());
    let v: Value = serde_json::from_slice(&info.stdout).unwrap();
    (
        out.to_path_buf(),
        v["info_hash"].as_str().unwrap().to_owned(),
    )
}

fn info_hash(hex: &str) -> [u8; 20] {
    hex_to_bytes(hex).try_into().unwrap()
}

/// Waits until `seeder` accepts connections at its `--bind`/`--port`
/// address and has printed its `listening on` line for that port (printed
/// once its data is checked and it is ready to serve).
fn wait_ready(seeder: &mut Rivulet) -> SocketAddr {
    let addr = seeder.wait_listening(MINUTE);
    let lines = seeder.wait_listening_lines(MINUTE);
    assert!(
        lines.iter().any(|a| a.port() == addr.port()),
        "no `listening on …:{}` line: {lines:?}\n{}",
        addr.port(),
        seeder.output()
    );
    addr
}

/// `rivulet seed TORRENT -o DIR --bind IP --port <free>`, ready to serve.
fn seeder_at(torrent: &Path, dir: &Path, ip: Ipv4Addr) -> Rivulet {
    let mut s = RivuletCmd::seed(torrent, dir)
        .bind(ip)
        .port(free_port(ip))
        .spawn();
    wait_ready(&mut s);
    s
}

/// Stops a seeder with SIGINT; it must exit 0 within a minute.
fn stop(seeder: &mut Rivulet) -> RivuletExit {
    let exit = seeder.stop(MINUTE);
    exit.assert_success();
    exit
}

/// Fails unless the summary's `uploaded` is at least `bytes` (less the
/// rounding of a 3-digit human-readable figure).
#[track_caller]
fn assert_uploaded_at_least(exit: &RivuletExit, bytes: u64) {
    let up = exit.uploaded();
    assert!(
        up as f64 >= bytes as f64 * 0.99,
        "{} reports uploaded {} ({up} bytes), expected at least {bytes}",
        exit.name,
        exit.uploaded_text()
    );
}

/// The number before ` peers` (or ` peer`) in a summary line `uploaded X to
/// N peers`, if the summary says it.
fn peers_served(exit: &RivuletExit) -> Option<u64> {
    let line = exit
        .output
        .lines()
        .rev()
        .find(|l| l.contains("uploaded "))?;
    let rest = line.split(" to ").nth(1)?;
    let mut words = rest.split_whitespace();
    let n = words.next()?.parse().ok()?;
    matches!(words.next()?, "peers" | "peer").then_some(n)
}

fn dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------------------
// libtorrent

/// A single-file torrent made by `rivulet create`, found through opentracker
/// (HTTP). The port asked for is taken, so the seeder says so, listens on
/// another, and announces that one. Once stopped (SIGTERM), the seeder has
/// withdrawn from the tracker.
#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn libtorrent_leeches_single_file_through_opentracker() {
    require_libtorrent();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "single.bin", 5_000_000 + 123, 11);
    let mut tracker = OpenTracker::start(next_loopback(), 0);
    let (torrent, hash) = create(
        &data,
        Some(&tracker.http_announce_url()),
        &tmp.path().join("single.torrent"),
        "32K",
    );
    tracker.whitelist(&hash);
    let ip = next_loopback();
    let taken = free_port(ip);
    let _squatter = TcpListener::bind((ip, taken)).unwrap();
    let mut seeder = RivuletCmd::seed(&torrent, &seed_dir)
        .bind(ip)
        .port(taken)
        .spawn();
    let lines = seeder.wait_listening_lines(MINUTE);
    assert!(
        !lines.is_empty() && lines.iter().all(|a| a.ip() == ip && a.port() != taken),
        "listening on {lines:?}, with {ip}:{taken} taken:\n{}",
        seeder.output()
    );
    assert!(
        seeder
            .output()
            .lines()
            .any(|l| l.contains(&taken.to_string())),
        "does not say that port {taken} is taken:\n{}",
        seeder.output()
    );
    let actual = lines[0];
    assert!(support::is_listening(actual), "{}", seeder.output());
    tracker.wait_for_seeders(&hash, 1, MINUTE);

    let leech_dir = dir(tmp.path(), "leech");
    let mut leecher = LtPeer::leecher(&torrent, &leech_dir, next_loopback());
    let st = leecher.wait_seeding(2 * MINUTE);
    assert_eq!(st.hash_failures, 0);
    assert_same_tree(&data, &leech_dir.join("single.bin"));
    assert!(
        st.peers
            .iter()
            .all(|p| p.ip != ip.to_string() || p.port == actual.port()),
        "{st:#?}"
    );

    let before = tracker.scrape(&hash).unwrap();
    seeder.proc().signal("TERM");
    let exit = seeder.wait_exit(MINUTE);
    exit.assert_success();
    assert_uploaded_at_least(&exit, 5_000_123);
    // It sent `stopped`: one seeder fewer at the tracker.
    poll_until("the tracker to drop the seeder", MINUTE, || {
        match tracker.scrape(&hash) {
            Some(c) if c.complete == before.complete - 1 => Ok(()),
            other => Err(format!("before {before:?}, now {other:?}")),
        }
    });
    eprintln!("rivulet → libtorrent, single file: {:?}", started.elapsed());
}

/// A multi-file torrent made by libtorrent, no tracker: libtorrent connects
/// to the seeder directly. The seeder has no `--bind`, so it listens on
/// every address, IPv4 and IPv6.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn libtorrent_leeches_multi_file_by_direct_connect() {
    require_libtorrent();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = multi_file_tree(&seed_dir, "tree", 12, 1_500_000);
    let made = make_torrent_with(&data, &TorrentOptions::new(16 * 1024));
    assert!(made.max_files_per_piece >= 3, "{made:#?}");

    let port = free_port(Ipv4Addr::UNSPECIFIED);
    let mut seeder = RivuletCmd::seed(&made.path, &seed_dir).port(port).spawn();
    wait_ready(&mut seeder);
    // Every IPv4 address: any 127.0.0.x reaches it; and IPv6 loopback, if
    // this machine has it.
    let any_v4 = SocketAddr::from((next_loopback(), port));
    assert!(support::is_listening(any_v4), "{}", seeder.output());
    if TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok() {
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        assert!(
            support::is_listening(v6),
            "not on {v6}: {}",
            seeder.output()
        );
    }

    let leech_dir = dir(tmp.path(), "leech");
    let mut leecher = LtPeer::start(
        &made.path,
        &leech_dir,
        LtConfig::new(next_loopback()).connect(any_v4),
    );
    let st = leecher.wait_seeding(2 * MINUTE);
    assert_eq!(st.hash_failures, 0);
    assert_same_tree(&data, &leech_dir.join("tree"));
    let exit = stop(&mut seeder);
    assert_uploaded_at_least(&exit, made.total_size);
    eprintln!("rivulet → libtorrent, multi-file: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// aria2

/// Through opentracker (HTTP: aria2 cannot use UDP trackers with DHT off).
#[test]
#[ignore = "interop: needs aria2, python3-libtorrent and opentracker (installed by .ci/run)"]
fn aria2_leeches_single_file_through_opentracker() {
    require_libtorrent();
    require_program("aria2c", "aria2");
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "for aria2.bin", 4_000_000 + 17, 13);
    let mut tracker = OpenTracker::start(next_loopback(), 0);
    let (torrent, hash) = make_torrent(&data, Some(&tracker.http_announce_url()), 64 * 1024);
    tracker.whitelist(&hash);
    let mut seeder = seeder_at(&torrent, &seed_dir, next_loopback());
    tracker.wait_for_seeders(&hash, 1, MINUTE);

    let leech_dir = dir(tmp.path(), "leech");
    let mut leecher = Aria2::leecher(&torrent, &leech_dir, next_loopback());
    leecher.wait_success(2 * MINUTE);
    assert_same_tree(&data, &leech_dir.join("for aria2.bin"));
    let exit = stop(&mut seeder);
    assert_uploaded_at_least(&exit, 4_000_017);
    eprintln!("rivulet → aria2, single file: {:?}", started.elapsed());
}

/// No tracker, and aria2 cannot be told of a peer: the seeder connects to
/// the aria2 leecher (`--peer`), from its `--bind` address.
#[test]
#[ignore = "interop: needs aria2 and python3-libtorrent (installed by .ci/run)"]
fn aria2_leeches_multi_file_from_a_seeder_that_connects_to_it() {
    require_libtorrent();
    require_program("aria2c", "aria2");
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = multi_file_tree(&seed_dir, "tree for aria2", 14, 1_200_000);
    let made = make_torrent_with(&data, &TorrentOptions::new(32 * 1024));

    let leech_dir = dir(tmp.path(), "leech");
    let mut leecher = Aria2::leecher(&made.path, &leech_dir, next_loopback());
    let ip = next_loopback();
    let mut seeder = RivuletCmd::seed(&made.path, &seed_dir)
        .bind(ip)
        .port(free_port(ip))
        .peer(leecher.addr())
        .spawn();
    wait_ready(&mut seeder);
    leecher.wait_success(2 * MINUTE);
    assert_same_tree(&data, &leech_dir.join("tree for aria2"));
    let exit = stop(&mut seeder);
    assert_uploaded_at_least(&exit, made.total_size);
    eprintln!(
        "rivulet → aria2 (outgoing), multi-file: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Transmission (in a network namespace)

/// Seeds `data` (in `seed_dir`) from rivulet to a Transmission leecher, all
/// inside a fresh network namespace with opentracker (HTTP or UDP).
fn transmission_leeches(tmp: &Path, seed_dir: &Path, data: &Path, udp: bool, piece_len: u32) {
    require_libtorrent();
    require_program("transmission-daemon", "transmission-daemon");
    let ns = Netns::create();
    let mut tracker = OpenTracker::start_in(&ns, ns.next_ip(), 0);
    let url = if udp {
        tracker.udp_announce_url()
    } else {
        tracker.http_announce_url()
    };
    let (torrent, hash) = make_torrent(data, Some(&url), piece_len);
    tracker.whitelist(&hash);

    let ip = ns.next_ip();
    let mut seeder = RivuletCmd::seed(&torrent, seed_dir)
        .bind(ip)
        .port(ns.next_port())
        .netns(&ns)
        .spawn();
    wait_ready(&mut seeder);
    tracker.wait_for_seeders(&hash, 1, MINUTE);

    let leech_dir = dir(tmp, "leech");
    let mut leecher = TransmissionDaemon::start_in(&ns, ns.next_ip(), &leech_dir);
    assert_eq!(leecher.add_torrent(&torrent), hash);
    let t = leecher.wait_complete(&hash, 3 * MINUTE);
    let name = data.file_name().unwrap();
    // Transmission 3.00 does not create zero-length files.
    assert_same_tree_except_empty_files(data, &leech_dir.join(name));
    let exit = stop(&mut seeder);
    assert_uploaded_at_least(&exit, t.total_size);
}

#[test]
#[ignore = "interop: needs root (network namespace), transmission-daemon, python3-libtorrent, opentracker (installed by .ci/run)"]
fn transmission_leeches_single_file_in_a_netns() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "for transmission.bin", 4_000_000 + 5, 15);
    transmission_leeches(tmp.path(), &seed_dir, &data, true, 64 * 1024);
    eprintln!(
        "rivulet → transmission, single file: {:?}",
        started.elapsed()
    );
}

#[test]
#[ignore = "interop: needs root (network namespace), transmission-daemon, python3-libtorrent, opentracker (installed by .ci/run)"]
fn transmission_leeches_multi_file_in_a_netns() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = multi_file_tree(&seed_dir, "tree for transmission", 16, 1_000_000);
    transmission_leeches(tmp.path(), &seed_dir, &data, false, 16 * 1024);
    eprintln!(
        "rivulet → transmission, multi-file: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Swarms

/// One rivulet seeder, four leechers of four clients at once: libtorrent,
/// aria2, Transmission and rivulet. Transmission needs addresses outside
/// 127.0.0.0/8, so the whole swarm runs in one network namespace, each peer
/// at its own 10.77.0.x, found through opentracker. libtorrent, aria2 and
/// Transmission are held to about 2 MB/s each so that the four downloads
/// overlap; rivulet's leecher runs at full speed.
#[test]
#[ignore = "interop: needs root (network namespace), python3-libtorrent, aria2, transmission-daemon, opentracker (installed by .ci/run)"]
fn one_seeder_serves_four_clients_at_once() {
    require_libtorrent();
    require_program("aria2c", "aria2");
    require_program("transmission-daemon", "transmission-daemon");
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let size = 8_000_000 + 1;
    let data = single_file(&seed_dir, "swarm.bin", size, 17);
    let ns = Netns::create();
    let mut tracker = OpenTracker::start_in(&ns, ns.next_ip(), 0);
    let (torrent, hash) = make_torrent(&data, Some(&tracker.http_announce_url()), 64 * 1024);
    tracker.whitelist(&hash);

    let seeder_ip = ns.next_ip();
    let mut seeder = RivuletCmd::seed(&torrent, &seed_dir)
        .bind(seeder_ip)
        .port(ns.next_port())
        .netns(&ns)
        .spawn();
    wait_ready(&mut seeder);
    tracker.wait_for_seeders(&hash, 1, MINUTE);

    let rate = 2_000_000;
    let lt_dir = dir(tmp.path(), "libtorrent");
    let mut lt = LtPeer::start(
        &torrent,
        &lt_dir,
        LtConfig::new(ns.next_ip()).rate_limit(0, rate).netns(&ns),
    );
    let aria_dir = dir(tmp.path(), "aria2");
    let mut aria_cfg = Aria2Config::leecher(ns.next_ip()).netns(&ns);
    aria_cfg.max_download = rate;
    let mut aria = Aria2::start(&torrent, &aria_dir, aria_cfg);
    let tr_dir = dir(tmp.path(), "transmission");
    let mut tr = TransmissionDaemon::start_in(&ns, ns.next_ip(), &tr_dir);
    tr.set_speed_limits(Some(rate / 1000), None);
    tr.add_torrent(&torrent);
    let riv_dir = dir(tmp.path(), "rivulet");
    let riv_ip = ns.next_ip();
    let mut riv = RivuletCmd::download(&torrent, &riv_dir)
        .bind(riv_ip)
        .port(ns.next_port())
        .netns(&ns)
        .spawn();

    // While they download, note what libtorrent and Transmission get from
    // the seeder itself.
    let seeder_ip_text = seeder_ip.to_string();
    let lt_from_seeder = Cell::new(0u64);
    lt.wait_until("seeding", 3 * MINUTE, |s| {
        for p in s.peers.iter().filter(|p| p.ip == seeder_ip_text) {
            lt_from_seeder.set(lt_from_seeder.get().max(p.down));
        }
        s.is_seeding
    });
    let tr_from_seeder = Cell::new(false);
    tr.wait_until(&hash, "complete", 3 * MINUTE, |t| {
        let from_seeder = t.peers.iter().any(|p| {
            p["address"] == Value::String(seeder_ip_text.clone())
                && (p["isDownloadingFrom"] == Value::Bool(true)
                    || p["rateToClient"].as_u64().unwrap_or(0) > 0)
        });
        tr_from_seeder.set(tr_from_seeder.get() || from_seeder);
        t.is_complete()
    });
    aria.wait_success(3 * MINUTE);
    riv.wait_exit(3 * MINUTE).assert_success();

    assert_same_tree(&data, &lt_dir.join("swarm.bin"));
    assert_same_tree(&data, &aria_dir.join("swarm.bin"));
    assert_same_tree(&data, &tr_dir.join("swarm.bin"));
    assert_same_tree(&data, &riv_dir.join("swarm.bin"));
    assert!(
        lt_from_seeder.get() > 0,
        "libtorrent was never seen downloading from the seeder"
    );
    assert!(
        tr_from_seeder.get(),
        "Transmission was never seen downloading from the seeder"
    );
    let exit = stop(&mut seeder);
    // Every piece came from the seeder at least once.
    assert_uploaded_at_least(&exit, size);
    if let Some(n) = peers_served(&exit) {
        assert!(n >= 4, "served only {n} peers: {}", exit.output);
    }
    eprintln!(
        "rivulet → libtorrent, aria2, transmission, rivulet: {:?}",
        started.elapsed()
    );
}

/// One seeder and three `rivulet download` leechers, found through
/// opentracker: the leechers exchange pieces. A leecher never uploads to
/// the seeder, so whatever a leecher uploads went to another leecher; at
/// least two of them must report uploading. 96 MiB in 256 KiB pieces (384
/// pieces), and each leecher keeps serving for 20 s after it completes
/// (`--seed-time 20s`), so this does not hang on a lucky schedule.
#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn three_rivulet_leechers_exchange_pieces() {
    require_libtorrent();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let size = 96 * 1024 * 1024;
    let data = single_file(&seed_dir, "shared.bin", size, 18);
    let mut tracker = OpenTracker::start(next_loopback(), 0);
    let (torrent, hash) = make_torrent(&data, Some(&tracker.http_announce_url()), 256 * 1024);
    tracker.whitelist(&hash);
    let mut seeder = seeder_at(&torrent, &seed_dir, next_loopback());
    tracker.wait_for_seeders(&hash, 1, MINUTE);

    let leechers: Vec<(PathBuf, Rivulet)> = (0..3)
        .map(|i| {
            let d = dir(tmp.path(), &format!("leecher{i}"));
            let ip = next_loopback();
            let r = RivuletCmd::download(&torrent, &d)
                .bind(ip)
                .port(free_port(ip))
                .arg("--seed-time=20s")
                .spawn();
            (d, r)
        })
        .collect();
    let mut uploads = Vec::new();
    for (d, mut r) in leechers {
        let exit = r.wait_exit(4 * MINUTE);
        exit.assert_success();
        assert_same_tree(&data, &d.join("shared.bin"));
        uploads.push((exit.name.clone(), exit.uploaded_text(), exit.uploaded()));
    }
    let seeder_exit = stop(&mut seeder);
    eprintln!(
        "leechers uploaded {uploads:?}; the seeder uploaded {}",
        seeder_exit.uploaded_text()
    );
    let uploaders = uploads.iter().filter(|u| u.2 > 0).count();
    assert!(
        uploaders >= 2,
        "fewer than two leechers uploaded to the others: {uploads:?}"
    );
    eprintln!("seeder + 3 rivulet leechers: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// Misbehaving leechers

/// What the misbehaving-peer tests share: a 6 MB torrent (64 KiB pieces, a
/// short last piece), a seeder, and a libtorrent leecher held to 500 kB/s
/// (about 12 s for the whole) that is being served when the test starts.
struct Arena {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    leech_dir: PathBuf,
    hash: [u8; 20],
    piece_len: u32,
    size: u64,
    seeder: Rivulet,
    seeder_addr: SocketAddr,
    leecher: LtPeer,
}

impl Arena {
    fn start() -> Arena {
        require_libtorrent();
        let tmp = tempfile::tempdir().unwrap();
        let seed_dir = tmp.path().join("seed");
        let size = 6_000_000u64;
        let piece_len = 64 * 1024;
        let data = single_file(&seed_dir, "target.bin", size, 19);
        let (torrent, hash) = make_torrent(&data, None, piece_len);
        let mut seeder = seeder_at(&torrent, &seed_dir, next_loopback());
        let seeder_addr = seeder.addr();
        let leech_dir = dir(tmp.path(), "leech");
        let mut leecher = LtPeer::start(
            &torrent,
            &leech_dir,
            LtConfig::new(next_loopback())
                .rate_limit(0, 500_000)
                .connect(seeder_addr),
        );
        leecher.wait_until("data from the seeder", MINUTE, |s| s.total_done > 0);
        seeder.proc().assert_running();
        Arena {
            _tmp: tmp,
            data,
            leech_dir,
            hash: info_hash(&hash),
            piece_len,
            size,
            seeder,
            seeder_addr,
            leecher,
        }
    }

    fn num_pieces(&self) -> u32 {
        self.size.div_ceil(u64::from(self.piece_len)) as u32
    }

    /// A raw peer from its own address, interested, unchoked, that has
    /// seen the seeder advertise `reqq` 500 and claim every piece.
    fn unchoked_peer(&self) -> BlockingPeer {
        let peer = BlockingPeer::leecher(next_loopback(), self.seeder_addr, InfoHash(self.hash));
        let n = self.num_pieces();
        let st = peer.wait_for("bitfield and extended handshake", MINUTE, |s| {
            s.extended_handshake.is_some() && (0..n).all(|i| s.has_piece(i))
        });
        assert!(st.reserved[5] & 0x10 != 0, "no extension bit: {st:?}");
        assert_eq!(st.reqq(), Some(500), "reqq: {:?}", st.extended_handshake);
        peer.interested();
        peer.wait_unchoked(MINUTE);
        peer
    }

    /// The libtorrent leecher's progress now.
    fn progress(&mut self) -> f64 {
        self.leecher.status().progress
    }

    /// Waits until the libtorrent leecher is past `progress`: it is still
    /// being served.
    fn wait_progress_beyond(&mut self, progress: f64) {
        self.seeder.proc().assert_running();
        self.leecher
            .wait_until(&format!("progress beyond {progress}"), MINUTE, |s| {
                s.progress > progress
            });
    }

    /// The libtorrent leecher completes byte-identical, and the seeder is
    /// still up and stops cleanly.
    fn finish(mut self) {
        let st = self.leecher.wait_seeding(2 * MINUTE);
        assert_eq!(st.hash_failures, 0);
        assert_same_tree(&self.data, &self.leech_dir.join("target.bin"));
        self.seeder.proc().assert_running();
        stop(&mut self.seeder);
    }
}

/// A `request` message.
fn request(piece: u32, offset: u32, length: u32) -> Message {
    Message::Request(BlockRequest {
        piece,
        offset,
        length,
    })
}

/// A leecher that sends 20,000 requests for valid blocks at once (40 times
/// the `reqq` of 500 the seeder advertised) is disconnected; meanwhile the
/// libtorrent leecher goes on being served.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn flooding_leecher_is_disconnected_while_others_are_served() {
    let started = Instant::now();
    let mut arena = Arena::start();
    let flooder = arena.unchoked_peer();
    // Served like anyone until it floods.
    flooder.send(request(1, 0, 16 * 1024)).unwrap();
    flooder.wait_for("a valid block", MINUTE, |s| s.pieces == 1);
    let progress_before = arena.progress();
    let blocks_per_piece = arena.piece_len / (16 * 1024);
    // Whole blocks of the full pieces only (the last piece is shorter).
    let full_pieces = arena.num_pieces() - 1;
    let mut flood = Vec::with_capacity(20_000);
    for i in 0..20_000u32 {
        let piece = (i / blocks_per_piece) % full_pieces;
        let begin = (i % blocks_per_piece) * 16 * 1024;
        flood.push(request(piece, begin, 16 * 1024));
    }
    let since = Instant::now();
    flooder.send_in_background(flood);
    let (after, st) = flooder.wait_closed(since, Duration::from_secs(30));
    eprintln!(
        "flooder disconnected after {after:?} ({}), having received {} blocks and {} rejects",
        st.closed.as_ref().unwrap().1,
        st.pieces,
        st.rejects
    );
    // Cut off well before the flood was served.
    assert!(
        st.pieces < 10_000,
        "the flooder got {} blocks for its flood",
        st.pieces
    );
    arena.wait_progress_beyond(progress_before);
    arena.finish();
    eprintln!("flooding leecher: {:?}", started.elapsed());
}

/// Leechers that ask for a block outside its piece are disconnected, one
/// for each way of being out of range; each first gets a valid block, so
/// it is the bad request that ends it. Meanwhile the libtorrent leecher
/// goes on being served.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn out_of_range_requests_are_disconnected_while_others_are_served() {
    let started = Instant::now();
    let mut arena = Arena::start();
    let pl = arena.piece_len;
    let n = arena.num_pieces();
    let last = n - 1;
    let last_len = (arena.size - u64::from(last) * u64::from(pl)) as u32;
    assert!(last_len < pl && last_len > 16 * 1024 && !last_len.is_multiple_of(16 * 1024));
    let block = 16 * 1024;
    let bad: [(&str, (u32, u32, u32)); 6] = [
        ("offset at the end of the piece", (3, pl, block)),
        ("offset + length past the piece", (3, pl - block / 2, block)),
        ("length over 16 KiB", (3, 0, 2 * block)),
        ("length 0", (3, 0, 0)),
        ("piece index = piece count", (n, 0, block)),
        (
            "past the end of the short last piece",
            (last, 2 * block, block),
        ),
    ];
    let progress_before = arena.progress();
    for (what, (piece, begin, length)) in bad {
        let peer = arena.unchoked_peer();
        peer.send(request(1, block, block)).unwrap();
        peer.wait_for("a valid block", MINUTE, |s| s.pieces == 1);
        let since = Instant::now();
        peer.send(request(piece, begin, length))
            .unwrap_or_else(|e| panic!("{what}: cannot send: {e}"));
        let (after, st) = peer.wait_closed(since, Duration::from_secs(30));
        assert_eq!(
            st.blocks,
            vec![(1, block, block)],
            "{what}: got blocks it should not have"
        );
        eprintln!(
            "{what} ({piece}, {begin}, {length}): disconnected after {after:?} ({})",
            st.closed.as_ref().unwrap().1
        );
        arena.seeder.proc().assert_running();
    }
    arena.wait_progress_beyond(progress_before);
    arena.finish();
    eprintln!("out-of-range requests: {:?}", started.elapsed());
}
