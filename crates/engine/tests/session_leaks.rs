//! A session with 50 torrents added and removed again and again leaks no
//! task, no file descriptor and no memory.
//!
//! Alone in its test binary: it counts the process's file descriptors and
//! the runtime's tasks, which other tests running beside it would change.
//! Half the torrents are complete (seeding), half empty (downloading, with
//! no peer to get anything from); half announce to a fake UDP tracker on
//! loopback, which reports every announce on a channel, so the test waits
//! for the announces themselves (no sleep). Each round: add the 50, wait
//! until every torrent with a tracker was heard (`started`), pause a third
//! of them and resume them (a new run each: `stopped`, then `started`
//! again), remove them all (each removal waits for its torrent's `stopped`,
//! resume save and tasks), then count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rivulet_engine::download::SeedPolicy;
use rivulet_engine::session::{AddOptions, Session, SessionConfig, TorrentState};
use rivulet_engine::torrent::TorrentConfig;
use rivulet_testkit::fixture::{within, Fixture};
use rivulet_testkit::next_loopback;
use rivulet_testkit::tracker::{reporting_udp, FakeUdp, UdpAnnounce};
use tokio::sync::mpsc::UnboundedReceiver;

const TORRENTS: usize = 50;
const ROUNDS: usize = 5;
/// What a round may take, at most (it takes well under a second).
const ROUND: Duration = Duration::from_secs(60);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits for `n` announces with `event` (BEP 15: 2 started, 3 stopped),
/// ignoring others.
async fn announces(rx: &mut UnboundedReceiver<UdpAnnounce>, event: u32, n: usize) {
    let mut seen = HashSet::new();
    while seen.len() < n {
        let a = rx.recv().await.unwrap();
        if a.event == event {
            assert!(seen.insert(a.info_hash), "one announce per torrent");
        }
    }
}

#[tokio::test]
async fn fifty_torrents_added_and_removed_leak_nothing() {
    let (handler, mut heard) = reporting_udp(vec![]);
    let tracker = FakeUdp::start(handler).await;
    let ip = next_loopback();
    let before_session = alive_tasks();
    let session = Session::new(SessionConfig {
        listen_port: Some(0),
        bind: Some(IpAddr::V4(ip)),
        ..SessionConfig::default()
    })
    .unwrap();
    let fixtures: Vec<Arc<Fixture>> = (0..TORRENTS)
        .map(|i| {
            let url = tracker.url();
            let announce = (i % 2 == 0).then_some(url.as_str());
            Fixture::announced(1000 + i as u64, 16 * 1024, 40_000, announce)
        })
        .collect();
    let with_tracker = TORRENTS.div_ceil(2);
    let mut after_round = Vec::new();
    for round in 0..ROUNDS {
        let kept = within(ROUND, "a round of adds and removals", async {
            let dirs: Vec<tempfile::TempDir> = (0..TORRENTS)
                .map(|_| tempfile::tempdir().unwrap())
                .collect();
            let mut handles = Vec::new();
            for (i, (fx, dir)) in fixtures.iter().zip(&dirs).enumerate() {
                if i % 4 < 2 {
                    fx.write_to(dir.path());
                }
                let options = AddOptions {
                    config: TorrentConfig::default(),
                    seed: SeedPolicy::FOREVER,
                    ..AddOptions::default()
                };
                let (handle, report) = session
                    .add(&fx.metainfo, dir.path(), options, Arc::new(|_| {}))
                    .await
                    .unwrap();
                assert_eq!(report.have, if i % 4 < 2 { fx.num_pieces() } else { 0 });
                handles.push(handle);
            }
            assert_eq!(session.torrents().len(), TORRENTS);
            announces(&mut heard, 2, with_tracker).await;
            for (i, h) in handles.iter().enumerate() {
                let want = if i % 4 < 2 {
                    TorrentState::Seeding
                } else {
                    TorrentState::Downloading
                };
                assert_eq!(h.snapshot().state, want, "torrent {i}");
            }
            // Pause and resume every third torrent: its run ends and a new
            // one starts.
            let mut paused_with_tracker = 0;
            for (i, h) in handles.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
                h.pause().await;
                assert_eq!(h.snapshot().state, TorrentState::Paused);
                h.resume();
                paused_with_tracker += usize::from(i % 2 == 0);
            }
            let mut stopped = 0;
            let mut seen = HashSet::new();
            while seen.len() < paused_with_tracker {
                let a = heard.recv().await.unwrap();
                match a.event {
                    2 => assert!(seen.insert(a.info_hash)),
                    3 => stopped += 1,
                    _ => {}
                }
            }
            assert_eq!(
                stopped, paused_with_tracker,
                "round {round}: stopped on pause"
            );
            for h in &handles {
                h.remove().await;
                assert_eq!(h.snapshot().state, TorrentState::Removed);
            }
            // Every torrent that announced said goodbye before its removal
            // returned.
            while let Ok(a) = heard.try_recv() {
                stopped += usize::from(a.event == 3);
            }
            assert_eq!(
                stopped,
                with_tracker + paused_with_tracker,
                "round {round}: stopped announces"
            );
            assert!(session.torrents().is_empty());
            handles
        })
        .await;
        // Handles kept after a removal hold no file, socket or task.
        after_round.push((alive_tasks(), open_fds(), rss_bytes()));
        assert!(kept
            .iter()
            .all(|h| h.snapshot().state == TorrentState::Removed));
        drop(kept);
    }
    eprintln!("after each round (tasks, fds, rss): {after_round:?}");
    let (tasks, fds, rss) = after_round[0];
    for (round, (t, f, r)) in after_round.iter().enumerate().skip(1) {
        assert_eq!(*t, tasks, "round {}: tasks left", round + 1);
        assert_eq!(*f, fds, "round {}: file descriptors left", round + 1);
        assert!(
            r.saturating_sub(rss) < 4 << 20,
            "round {}: memory grew from {rss} to {r} bytes",
            round + 1
        );
    }
    // The session's own tasks (accept loop, UDP receive task) end with it.
    session.shutdown().await;
    assert_eq!(alive_tasks(), before_session, "tasks left after shutdown");
}
