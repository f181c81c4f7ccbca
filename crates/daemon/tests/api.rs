//! The HTTP API in-process, over real HTTP on 127.0.0.1: the token and
//! `Host` checks, bad requests, adds (also at once), pause and resume kept
//! across a restart, removal with the data, and entries that cannot be read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rivulet_daemon::api::{self, ApiConfig};
use rivulet_daemon::store::Store;
use rivulet_daemon::view::{AddReply, SessionView, TorrentDetail, TorrentView};
use rivulet_daemon::{token, Daemon, DaemonOptions};
use rivulet_engine::metadata::torrent_bytes;
use rivulet_engine::session::{Session, SessionConfig};
use rivulet_testkit::fixture::Fixture;
use serde_json::Value;

struct Harness {
    daemon: Daemon,
    base: String,
    token: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

async fn start(state: &Path, downloads: &Path) -> (Harness, Vec<String>) {
    let session = Session::new(SessionConfig {
        listen_port: Some(0),
        bind: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        dht: None,
        lsd: false,
        utp: false,
        ..SessionConfig::default()
    })
    .unwrap();
    let token = token::load_or_create(state).unwrap();
    let (daemon, warnings) = Daemon::start(
        session,
        Store::open(state).unwrap(),
        DaemonOptions {
            download_dir: downloads.to_owned(),
            ..DaemonOptions::default()
        },
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let router = api::router(
        daemon.clone(),
        ApiConfig {
            token: token.clone(),
            allowed_hosts: vec!["box.lan".into()],
        },
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    let h = Harness {
        daemon,
        base,
        token,
        http: reqwest::Client::new(),
        server,
    };
    (h, warnings)
}

impl Harness {
    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
        (status, body)
    }

    async fn add_torrent(&self, bytes: &[u8], query: &[(&str, &str)]) -> (StatusCode, Value) {
        self.send(
            self.req(Method::POST, "/torrents")
                .query(query)
                .header("content-type", "application/x-bittorrent")
                .body(bytes.to_vec()),
        )
        .await
    }

    async fn torrent(&self, id: &str) -> TorrentView {
        let (status, body) = self
            .send(self.req(Method::GET, &format!("/torrents/{id}")))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn wait_state(&self, id: &str, state: &str) -> TorrentView {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = self.torrent(id).await;
            if t.state == state {
                return t;
            }
            assert!(Instant::now() < deadline, "never {state}: {t:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.server.abort();
        self.daemon.shutdown().await;
    }
}

fn torrent_of(fx: &Fixture) -> Vec<u8> {
    torrent_bytes(&fx.metainfo.info_bytes, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_needs_the_token_and_a_local_host() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let (h, _) = start(state.path(), downloads.path()).await;
    let url = format!("{}/torrents", h.base);
    let plain = h.http.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(plain.headers()["www-authenticate"], "Bearer");
    let wrong = h
        .http
        .get(&url)
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let prefix = h
        .http
        .get(&url)
        .bearer_auth(&h.token[..32])
        .send()
        .await
        .unwrap();
    assert_eq!(prefix.status(), StatusCode::UNAUTHORIZED);
    // DNS rebinding: the right token under a foreign name is still refused.
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example"] {
        let r = h
            .req(Method::GET, "/torrents")
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{host}");
    }
    for host in ["localhost:1", "127.0.0.1", "box.lan:6880", "[::1]:6880"] {
        let r = h
            .req(Method::GET, "/torrents")
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{host}");
    }
    // No CORS headers for other origins.
    let r = h
        .req(Method::GET, "/torrents")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_client_errors_with_a_json_reason() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let (h, _) = start(state.path(), downloads.path()).await;
    let fx = Fixture::single(3);
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            h.req(Method::POST, "/torrents")
                .header("content-type", "application/x-bittorrent")
                .body("d4:infoi3ee"),
            StatusCode::BAD_REQUEST,
            "not a valid torrent",
        ),
        (
            h.req(Method::POST, "/torrents")
                .json(&serde_json::json!({"magnet": "magnet:?xt=urn:btih:zz"})),
            StatusCode::BAD_REQUEST,
            "invalid magnet link",
        ),
        (
            h.req(Method::POST, "/torrents")
                .json(&serde_json::json!({"url": "x"})),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            h.req(Method::POST, "/torrents?files=0,7")
                .header("content-type", "application/x-bittorrent")
                .body(torrent_of(&fx)),
            StatusCode::BAD_REQUEST,
            "no file 7: the torrent's files are numbered 0 to 0",
        ),
        (
            h.req(Method::POST, "/torrents?files=x")
                .header("content-type", "application/x-bittorrent")
                .body(torrent_of(&fx)),
            StatusCode::BAD_REQUEST,
            "\"x\" is not a file index",
        ),
        (
            h.req(Method::POST, "/torrents")
                .header("content-type", "application/json")
                .body("{not json"),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            h.req(Method::POST, "/torrents")
                .header("content-type", "text/plain")
                .body("x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/x-bittorrent",
        ),
        (
            h.req(Method::POST, "/torrents")
                .query(&[("download_dir", "relative/dir")])
                .header("content-type", "application/x-bittorrent")
                .body(torrent_of(&fx)),
            StatusCode::BAD_REQUEST,
            "absolute path",
        ),
        (
            h.req(Method::POST, "/torrents")
                .query(&[("paused", "maybe")])
                .header("content-type", "application/x-bittorrent")
                .body(torrent_of(&fx)),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            h.req(Method::POST, "/torrents")
                .header("content-type", "application/x-bittorrent")
                .body(vec![b'd'; api::MAX_BODY + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            h.req(Method::POST, "/torrents")
                .query(&[("peers", "127.0.0.2:6881,127.0.0.3")])
                .header("content-type", "application/x-bittorrent")
                .body(torrent_of(&fx)),
            StatusCode::BAD_REQUEST,
            "\"127.0.0.3\" is not a peer",
        ),
        (
            h.req(Method::GET, &format!("/torrents/{}", "ab".repeat(20))),
            StatusCode::NOT_FOUND,
            "no torrent",
        ),
        (
            h.req(Method::GET, "/torrents/abc"),
            StatusCode::BAD_REQUEST,
            "not a torrent id",
        ),
        (
            h.req(
                Method::POST,
                &format!("/torrents/{}/pause", "cd".repeat(20)),
            ),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            h.req(Method::DELETE, &format!("/torrents/{}", "cd".repeat(20)))
                .query(&[("delete_data", "yes")]),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            h.req(Method::GET, "/nothing/here"),
            StatusCode::NOT_FOUND,
            "no such API endpoint",
        ),
    ];
    for (i, (req, want, text)) in cases.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, want, "case {i}: {body}");
        // 413 comes from the body limit before any handler; every other
        // answer is our JSON.
        if status != StatusCode::PAYLOAD_TOO_LARGE {
            let v: Value = serde_json::from_str(&body)
                .unwrap_or_else(|_| panic!("case {i}: not JSON: {body}"));
            let reason = v["error"].as_str().unwrap();
            assert!(reason.contains(text), "case {i}: {reason}");
        }
    }
    // Nothing was added by any of them.
    assert!(h.daemon.list().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_at_once_make_one_torrent() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let (h, _) = start(state.path(), downloads.path()).await;
    let h = Arc::new(h);
    let bytes = Arc::new(torrent_of(&Fixture::single(4)));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (h, bytes) = (Arc::clone(&h), Arc::clone(&bytes));
        tasks.push(tokio::spawn(
            async move { h.add_torrent(&bytes, &[]).await },
        ));
    }
    let mut created = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        let reply: AddReply = serde_json::from_value(body).unwrap();
        assert_eq!(reply.created, status == StatusCode::CREATED);
        assert!(status == StatusCode::CREATED || status == StatusCode::OK);
        created += usize::from(reply.created);
    }
    assert_eq!(created, 1);
    assert_eq!(h.daemon.list().len(), 1);
    let (h, _) = (Arc::try_unwrap(h).ok().unwrap(), ());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torrents_are_kept_across_restarts_and_removed_with_their_data() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    // The data is there already: the check finds every piece.
    let fx = Fixture::single(5);
    fx.write_to(downloads.path());
    let id = fx.info_hash().to_hex();
    let (h, warnings) = start(state.path(), downloads.path()).await;
    assert!(warnings.is_empty());
    let (status, body) = h.add_torrent(&torrent_of(&fx), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let reply: AddReply = serde_json::from_value(body).unwrap();
    assert_eq!(reply.torrent.id, id);
    assert_eq!(
        reply.torrent.download_dir,
        downloads.path().display().to_string()
    );
    let t = h.wait_state(&id, "seeding").await;
    assert_eq!(
        (t.progress, t.size, t.have),
        (1.0, fx.data.len() as u64, fx.data.len() as u64)
    );
    let (status, body) = h.send(h.req(Method::GET, &format!("/torrents/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    let d: TorrentDetail = serde_json::from_value(body).unwrap();
    assert_eq!(d.pieces, fx.num_pieces());
    assert_eq!(d.pieces_have, fx.num_pieces() as u64);
    assert_eq!(d.files.len(), 1);
    assert_eq!(d.files[0].path, "data.bin");
    // Again: not an error, and nothing changes.
    let (status, body) = h.add_torrent(&torrent_of(&fx), &[("paused", "true")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false);
    // Paused, and a magnet link added paused.
    let (status, body) = h
        .send(h.req(Method::POST, &format!("/torrents/{id}/pause")))
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("paused"))
    );
    let magnet_id = "ab".repeat(20);
    let link = format!("magnet:?xt=urn:btih:{magnet_id}&dn=later");
    let (status, body) = h
        .send(
            h.req(Method::POST, "/torrents")
                .json(&serde_json::json!({"magnet": link, "paused": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["torrent"]["name"], "later");
    assert_eq!(body["torrent"]["state"], "paused");
    let (status, body) = h.send(h.req(Method::GET, "/session")).await;
    assert_eq!(status, StatusCode::OK);
    let s: SessionView = serde_json::from_value(body).unwrap();
    assert_eq!(s.torrents, 2);
    assert_eq!(s.dht_nodes, None);
    assert_eq!((s.download_limit, s.upload_limit), (0, 0));
    // Limits: the session's, and the torrent's own (kept across restarts).
    let (status, body) = h
        .send(
            h.req(Method::PATCH, "/session")
                .json(&serde_json::json!({"download_limit": 2_000_000, "max_connections": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["download_limit"].as_u64(),
            body["upload_limit"].as_u64(),
            body["max_connections"].as_u64()
        ),
        (Some(2_000_000), Some(0), Some(7))
    );
    assert_eq!(h.daemon.session().connections().0, 7);
    let (status, _) = h
        .send(
            h.req(Method::PATCH, "/session")
                .json(&serde_json::json!({"max_connections": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Kept for the next start: only what was changed.
    let kept = std::fs::read_to_string(state.path().join("session.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&kept).unwrap(),
        serde_json::json!({"download_limit": 2_000_000, "max_connections": 7})
    );
    let (status, body) = h
        .send(
            h.req(Method::PATCH, &format!("/torrents/{id}"))
                .json(&serde_json::json!({"upload_limit": 300_000})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["download_limit"].as_u64(),
            body["upload_limit"].as_u64()
        ),
        (Some(0), Some(300_000))
    );
    for bad in [
        serde_json::json!({"upload_limit": -1}),
        serde_json::json!({"speed": 1}),
        serde_json::json!({"files": [{"index": 999, "wanted": false}]}),
        serde_json::json!({"files": [{"index": 0, "priority": 9}]}),
        serde_json::json!({"files": [{"index": 0, "priority": 0}]}),
        serde_json::json!({"files": [{"index": 0, "wanted": "no"}]}),
    ] {
        let (status, _) = h
            .send(h.req(Method::PATCH, &format!("/torrents/{id}")).json(&bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let (status, _) = h.send(h.req(Method::PATCH, "/session").json(&bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    h.stop().await;

    // A restart: both come back paused; the first resumes to seeding
    // without fetching anything.
    let (h, warnings) = start(state.path(), downloads.path()).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let list: Vec<TorrentView> =
        serde_json::from_value(h.send(h.req(Method::GET, "/torrents")).await.1).unwrap();
    let ids: Vec<&str> = list.iter().map(|t| t.id.as_str()).collect();
    let mut want = vec![id.as_str(), magnet_id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    h.wait_state(&id, "paused").await;
    assert_eq!(h.torrent(&magnet_id).await.state, "paused");
    let (_, body) = h.send(h.req(Method::GET, &format!("/torrents/{id}"))).await;
    assert_eq!(body["upload_limit"].as_u64(), Some(300_000));
    // Paused, never run in this process: the pieces its check found.
    assert_eq!(body["files"][0]["progress"].as_f64(), Some(1.0), "{body}");
    assert_eq!(body["availability"], serde_json::json!([]));
    let (status, _) = h
        .send(h.req(Method::POST, &format!("/torrents/{id}/resume")))
        .await;
    assert_eq!(status, StatusCode::OK);
    h.wait_state(&id, "seeding").await;
    // Removed with its data: the file and the resume data go, the folder
    // and anything else in it stay.
    std::fs::write(downloads.path().join("other.txt"), b"not the torrent's").unwrap();
    let (status, body) = h
        .send(
            h.req(Method::DELETE, &format!("/torrents/{id}"))
                .query(&[("delete_data", "true")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!downloads.path().join("data.bin").exists());
    assert!(downloads.path().join("other.txt").exists());
    assert!(!downloads
        .path()
        .join(".rivulet")
        .join(format!("{id}.resume"))
        .exists());
    let (status, _) = h.send(h.req(Method::GET, &format!("/torrents/{id}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The magnet link is removed without touching anything on disk.
    let (status, _) = h
        .send(h.req(Method::DELETE, &format!("/torrents/{magnet_id}")))
        .await;
    assert_eq!(status, StatusCode::OK);
    h.stop().await;

    // An entry damaged while the daemon was down is set aside, and the
    // daemon starts all the same.
    let (h, _) = start(state.path(), downloads.path()).await;
    assert!(h.daemon.list().is_empty());
    let fx2 = Fixture::single(6);
    let (status, _) = h
        .add_torrent(&torrent_of(&fx2), &[("paused", "true")])
        .await;
    assert_eq!(status, StatusCode::CREATED);
    h.stop().await;
    let entry = state.path().join("torrents").join(fx2.info_hash().to_hex());
    std::fs::write(entry.join("torrent"), b"garbage").unwrap();
    let (h, warnings) = start(state.path(), downloads.path()).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("set aside"), "{warnings:?}");
    assert!(h.daemon.list().is_empty());
    h.stop().await;
}

/// Reads server-sent events from `r` until one named `event` whose data
/// satisfies `want`; returns that data.
async fn next_sse(
    r: &mut reqwest::Response,
    buf: &mut String,
    event: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("");
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (true, Some(data)) = (name == event, data) {
                let v: Value = serde_json::from_str(data).unwrap();
                if want(&v) {
                    return v;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, r.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {event} event as wanted; last: {buf}"))
            .unwrap()
            .expect("the stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_what_changed_and_recheck_finds_damaged_data() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let fx = Fixture::single(7);
    fx.write_to(downloads.path());
    let id = fx.info_hash().to_hex();
    let (h, _) = start(state.path(), downloads.path()).await;
    let mut stream = h.req(Method::GET, "/events").send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let (status, _) = h.add_torrent(&torrent_of(&fx), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    next_sse(&mut stream, &mut buf, "torrent", |t| {
        t["id"] == id.as_str() && t["state"] == "seeding"
    })
    .await;
    h.send(h.req(Method::POST, &format!("/torrents/{id}/pause")))
        .await;
    next_sse(&mut stream, &mut buf, "torrent", |t| t["state"] == "paused").await;
    h.send(h.req(Method::POST, &format!("/torrents/{id}/resume")))
        .await;
    h.wait_state(&id, "seeding").await;

    // A byte of the data changes behind the daemon's back; the resume
    // data still says complete, so only a recheck finds the bad piece.
    let path = downloads.path().join("data.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (status, body) = h
        .send(h.req(Method::POST, &format!("/torrents/{id}/recheck")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t = h.wait_state(&id, "downloading").await;
    let piece = fx.piece_len(0) as u64;
    assert_eq!(t.have, fx.data.len() as u64 - piece, "{t:?}");
    let (_, d) = h.send(h.req(Method::GET, &format!("/torrents/{id}"))).await;
    let total = fx.data.len() as f64;
    let progress = d["files"][0]["progress"].as_f64().unwrap();
    assert!(
        (progress - (total - piece as f64) / total).abs() < 1e-9,
        "{d}"
    );
    // Running, no peer: every piece available nowhere.
    assert_eq!(d["availability"].as_array().unwrap().len(), fx.num_pieces());
    assert!(d["availability"].as_array().unwrap().iter().all(|a| a == 0));
    next_sse(&mut stream, &mut buf, "torrent", |t| {
        t["state"] == "downloading"
    })
    .await;

    let (status, _) = h
        .send(h.req(Method::DELETE, &format!("/torrents/{id}")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let gone = next_sse(&mut stream, &mut buf, "removed", |_| true).await;
    assert_eq!(gone["id"], id.as_str());
    // A recheck of a torrent that is gone is a 404.
    let (status, _) = h
        .send(h.req(Method::POST, &format!("/torrents/{id}/recheck")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The stream ends when the daemon shuts down.
    h.daemon.begin_shutdown();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while stream.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the event stream outlived the daemon");
    h.stop().await;
}

async fn next_announce(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<rivulet_testkit::tracker::UdpAnnounce>,
) -> rivulet_testkit::tracker::UdpAnnounce {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an announce")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reannounce_reaches_the_tracker_at_once() {
    use rivulet_testkit::tracker::{reporting_udp, FakeUdp};
    let (handler, mut heard) = reporting_udp(vec![]);
    let tracker = FakeUdp::start(handler).await;
    let fx = Fixture::announced(8, 16 * 1024, 100_000, Some(&tracker.url()));
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    fx.write_to(downloads.path());
    let id = fx.info_hash().to_hex();
    let (h, _) = start(state.path(), downloads.path()).await;
    let bytes = torrent_bytes(&fx.metainfo.info_bytes, &[tracker.url()]);
    let (status, _) = h.add_torrent(&bytes, &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    // `started`, then (the tracker's interval is long) nothing until asked.
    assert_eq!(next_announce(&mut heard).await.event, 2);
    h.wait_state(&id, "seeding").await;
    let (status, body) = h
        .send(h.req(Method::POST, &format!("/torrents/{id}/reannounce")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = next_announce(&mut heard).await;
    assert_eq!(again.info_hash, fx.info_hash().0);
    assert_eq!(again.event, 0, "a regular announce");
    // Paused: nothing to announce.
    h.send(h.req(Method::POST, &format!("/torrents/{id}/pause")))
        .await;
    let (status, body) = h
        .send(h.req(Method::POST, &format!("/torrents/{id}/reannounce")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_lets_so_many_download_in_the_order_added() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let (h, _) = start(state.path(), downloads.path()).await;
    let (status, body) = h
        .send(
            h.req(Method::PATCH, "/session")
                .json(&serde_json::json!({"max_active_downloads": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["max_active_downloads"], 1);
    // No data and no peers: both would download for ever.
    let (a, b) = (Fixture::single(11), Fixture::single(12));
    let (ida, idb) = (a.info_hash().to_hex(), b.info_hash().to_hex());
    // Each in a folder of its own (the fixtures' files have one name).
    let dir = |n: &str| downloads.path().join(n).display().to_string();
    h.add_torrent(&torrent_of(&a), &[("download_dir", &dir("a"))])
        .await;
    h.wait_state(&ida, "downloading").await;
    h.add_torrent(&torrent_of(&b), &[("download_dir", &dir("b"))])
        .await;
    h.wait_state(&idb, "queued").await;
    // A complete torrent seeds whatever the queue.
    let c = Fixture::single(13);
    c.write_to(&downloads.path().join("c"));
    h.add_torrent(&torrent_of(&c), &[("download_dir", &dir("c"))])
        .await;
    h.wait_state(&c.info_hash().to_hex(), "seeding").await;
    // The user pauses the first: the second's turn.
    h.send(h.req(Method::POST, &format!("/torrents/{ida}/pause")))
        .await;
    h.wait_state(&idb, "downloading").await;
    assert_eq!(h.torrent(&ida).await.state, "paused");
    // Resumed, the first comes first again (the order added).
    h.send(h.req(Method::POST, &format!("/torrents/{ida}/resume")))
        .await;
    h.wait_state(&ida, "downloading").await;
    h.wait_state(&idb, "queued").await;
    // No limit: both.
    h.send(
        h.req(Method::PATCH, "/session")
            .json(&serde_json::json!({"max_active_downloads": 0})),
    )
    .await;
    h.wait_state(&idb, "downloading").await;
    assert_eq!(h.torrent(&ida).await.state, "downloading");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_goals_stop_torrents_and_totals_are_kept() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let dir = |n: &str| downloads.path().join(n);
    let (a, b) = (Fixture::single(21), Fixture::single(22));
    a.write_to(&dir("a"));
    b.write_to(&dir("b"));
    let (ida, idb) = (a.info_hash().to_hex(), b.info_hash().to_hex());
    let (h, _) = start(state.path(), downloads.path()).await;
    h.add_torrent(
        &torrent_of(&a),
        &[("download_dir", &dir("a").display().to_string())],
    )
    .await;
    h.wait_state(&ida, "seeding").await;
    // Its own goal: ratio 0, met as soon as it seeds.
    let (status, body) = h
        .send(
            h.req(Method::PATCH, &format!("/torrents/{ida}"))
                .json(&serde_json::json!({"seed_ratio": 0.0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t = h.wait_state(&ida, "paused").await;
    assert!(t.finished, "{t:?}");
    // Goals out of reach (its own, each overriding the session's) and a
    // resume: it seeds again.
    h.send(
        h.req(Method::PATCH, &format!("/torrents/{ida}"))
            .json(&serde_json::json!({"seed_ratio": 1000.0, "seed_time": 1_000_000})),
    )
    .await;
    h.send(h.req(Method::POST, &format!("/torrents/{ida}/resume")))
        .await;
    let t = h.wait_state(&ida, "seeding").await;
    assert!(!t.finished, "{t:?}");
    // The session's goal, for a torrent without its own: a second.
    let (status, body) = h
        .send(
            h.req(Method::PATCH, "/session")
                .json(&serde_json::json!({"seed_time": 1})),
        )
        .await;
    assert_eq!(
        (status, body["seed_time"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    h.add_torrent(
        &torrent_of(&b),
        &[("download_dir", &dir("b").display().to_string())],
    )
    .await;
    let t = h.wait_state(&idb, "paused").await;
    assert!(t.finished, "{t:?}");
    let (_, d) = h
        .send(h.req(Method::GET, &format!("/torrents/{idb}")))
        .await;
    assert!(d["seeded"].as_u64().unwrap() >= 1, "{d}");
    // The first has its own goals (out of reach): it seeds on.
    assert_eq!(h.torrent(&ida).await.state, "seeding");
    // Told to seed forever, the second seeds on past the session's goal.
    let (status, body) = h
        .send(
            h.req(Method::PATCH, &format!("/torrents/{idb}"))
                .json(&serde_json::json!({"seed_forever": true})),
        )
        .await;
    assert_eq!(
        (status, body["seed_forever"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{body}"
    );
    h.send(h.req(Method::POST, &format!("/torrents/{idb}/resume")))
        .await;
    h.wait_state(&idb, "seeding").await;
    let since = d["seeded"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, now) = h
            .send(h.req(Method::GET, &format!("/torrents/{idb}")))
            .await;
        assert_eq!(now["state"], "seeding", "{now}");
        if now["seeded"].as_u64().unwrap() >= since + 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.send(
        h.req(Method::PATCH, &format!("/torrents/{idb}"))
            .json(&serde_json::json!({"seed_forever": false})),
    )
    .await;
    let t = h.wait_state(&idb, "paused").await;
    assert!(t.finished, "{t:?}");
    h.stop().await;

    // Kept: finished stays finished, the seconds seeded stay counted.
    let (h, _) = start(state.path(), downloads.path()).await;
    let t = h.wait_state(&idb, "paused").await;
    assert!(t.finished);
    let (_, d) = h
        .send(h.req(Method::GET, &format!("/torrents/{idb}")))
        .await;
    assert!(d["seeded"].as_u64().unwrap() >= 1, "{d}");
    assert_eq!(d["seed_ratio"], Value::Null);
    let (_, d) = h
        .send(h.req(Method::GET, &format!("/torrents/{ida}")))
        .await;
    assert_eq!(d["seed_ratio"].as_f64(), Some(1000.0));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_torrents_never_share_a_name_in_one_folder() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let (h, _) = start(state.path(), downloads.path()).await;
    // Two torrents whose file is `data.bin`.
    let (a, b) = (Fixture::single(31), Fixture::single(32));
    let (status, _) = h.add_torrent(&torrent_of(&a), &[("paused", "true")]).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = h.add_torrent(&torrent_of(&b), &[("paused", "true")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already holds \"data.bin\""),
        "{body}"
    );
    assert_eq!(h.daemon.list().len(), 1);
    // In a folder of its own, it is welcome.
    let other = downloads.path().join("other").display().to_string();
    let (status, body) = h
        .add_torrent(
            &torrent_of(&b),
            &[("paused", "true"), ("download_dir", &other)],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_data_copies_checks_switches_and_removes() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let fx = Fixture::build(8, &[(&["a.bin"], 300_000), (&["sub", "b.bin"], 342_592)]);
    fx.write_to(downloads.path());
    let id = fx.info_hash().to_hex();
    let (h, _) = start(state.path(), downloads.path()).await;
    let (status, body) = h.add_torrent(&torrent_of(&fx), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    h.wait_state(&id, "seeding").await;

    // Refused before anything moves: a relative folder, and a folder that
    // already holds a file of the torrent.
    let taken = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(taken.path().join("multi")).unwrap();
    std::fs::write(taken.path().join("multi/a.bin"), b"mine").unwrap();
    for bad in [
        serde_json::json!({"download_dir": "relative/dir"}),
        serde_json::json!({"download_dir": taken.path()}),
    ] {
        let (status, body) = h
            .send(h.req(Method::PATCH, &format!("/torrents/{id}")).json(&bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(h.torrent(&id).await.state, "seeding");
    }
    assert_eq!(
        std::fs::read(taken.path().join("multi/a.bin")).unwrap(),
        b"mine"
    );

    let dest = elsewhere.path().join("new");
    let (status, body) = h
        .send(
            h.req(Method::PATCH, &format!("/torrents/{id}"))
                .json(&serde_json::json!({"download_dir": dest})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "moving");
    let t = h.wait_state(&id, "seeding").await;
    assert_eq!(t.download_dir, dest.display().to_string());
    assert_eq!(t.progress, 1.0);
    assert!(t.error.is_none(), "{t:?}");
    fx.assert_files(&dest);
    assert!(
        !downloads.path().join("multi").exists(),
        "the old copy is gone"
    );
    assert!(!downloads
        .path()
        .join(format!(".rivulet/{id}.resume"))
        .exists());
    // Kept across a restart, and the resume data moved along: nothing to
    // hash again.
    h.stop().await;
    let (h, _) = start(state.path(), downloads.path()).await;
    let t = h.wait_state(&id, "seeding").await;
    assert_eq!(t.download_dir, dest.display().to_string());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_done_with_its_wanted_files_takes_no_download_slot() {
    let state = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let (h, _) = start(state.path(), downloads.path()).await;
    h.send(
        h.req(Method::PATCH, "/session")
            .json(&serde_json::json!({"max_active_downloads": 1})),
    )
    .await;
    // Two files on a piece boundary; only the first is on disk, and only
    // the first is wanted.
    let first = 10 * rivulet_testkit::fixture::PIECE_LEN as usize;
    let rest = rivulet_testkit::fixture::TOTAL - first;
    let d = Fixture::build(14, &[(&["x"], first), (&["y"], rest)]);
    let dir = |n: &str| downloads.path().join(n);
    d.write_to(&dir("d"));
    std::fs::remove_file(dir("d").join("multi/y")).unwrap();
    let id = d.info_hash().to_hex();
    let (status, body) = h
        .add_torrent(
            &torrent_of(&d),
            &[
                ("download_dir", &dir("d").display().to_string()),
                ("files", "0"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let t = h.wait_state(&id, "seeding").await;
    assert_eq!(
        (t.progress, t.size_wanted, t.size),
        (1.0, first as u64, d.data.len() as u64)
    );
    assert!(!dir("d").join("multi/y").exists());
    // Added later, with no data: it downloads, the slot being free.
    let a = Fixture::single(15);
    let ida = a.info_hash().to_hex();
    h.add_torrent(
        &torrent_of(&a),
        &[("download_dir", &dir("a").display().to_string())],
    )
    .await;
    h.wait_state(&ida, "downloading").await;
    // Wanting the second file makes the first download again: it waits for
    // its turn.
    let (status, body) = h
        .send(
            h.req(Method::PATCH, &format!("/torrents/{id}"))
                .json(&serde_json::json!({"files": [{"index": 1, "wanted": true}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["files"][1]["wanted"], true);
    h.wait_state(&id, "downloading").await;
    h.wait_state(&ida, "queued").await;
    h.stop().await;
}
