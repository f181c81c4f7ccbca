//! A minimal BitTorrent peer over uTP on a std `UdpSocket`, to check the
//! crate against real implementations (libtorrent) on loopback. Driven by
//! `examples/libtorrent_interop.py`, which starts a libtorrent seeder.
//!
//! ```text
//! interop download BIND PEER INFO_HASH_HEX FILE PIECE_LEN
//!     connect to PEER, handshake, download FILE's bytes and compare
//! interop refuse BIND INFO_HASH_HEX
//!     accept one connection, read its handshake, and reset it
//! interop serve BIND INFO_HASH_HEX FILE PIECE_LEN [MAX_PAYLOAD]
//!     accept one connection and seed FILE to it until it closes
//! interop forget BIND PEER INFO_HASH_HEX
//!     connect, send the handshake, then forget the connection (as after a
//!     restart): the peer's next packets are answered with RESETs
//! interop deaf BIND
//!     an endpoint that does not listen: SYNs are refused with a RESET
//! ```
//!
//! Only loopback addresses are accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rivulet_utp::{is_utp, Config, ConnEvent, ConnId, Endpoint, Event};

struct Driver {
    sock: UdpSocket,
    ep: Endpoint,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    events: VecDeque<Event>,
}

impl Driver {
    fn new(bind: SocketAddr, cfg: Config) -> Self {
        assert!(bind.ip().is_loopback(), "loopback only");
        let sock = UdpSocket::bind(bind).expect("bind");
        let seed = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
        Driver {
            sock,
            ep: Endpoint::new(cfg, Instant::now(), seed),
            out: Vec::new(),
            inbuf: vec![0u8; 65536],
            events: VecDeque::new(),
        }
    }

    /// Sends, waits for one datagram or the next timeout, handles it.
    fn turn(&mut self) {
        let now = Instant::now();
        while let Some(to) = self.ep.poll_transmit(now, &mut self.out) {
            assert!(to.ip().is_loopback(), "loopback only");
            let _ = self.sock.send_to(&self.out, to);
        }
        while let Some(e) = self.ep.poll_event() {
            self.events.push_back(e);
        }
        let wait = self
            .ep
            .next_timeout()
            .map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(now)
            })
            .clamp(Duration::from_micros(100), Duration::from_millis(50));
        self.sock.set_read_timeout(Some(wait)).unwrap();
        // Handle everything that is waiting before sending again, so that
        // ACKs are batched as a real driver would.
        let mut first = true;
        while let Ok((n, from)) = self.sock.recv_from(&mut self.inbuf) {
            let d = &self.inbuf[..n];
            if is_utp(d) {
                self.ep.handle_datagram(Instant::now(), from, d);
            }
            if first {
                first = false;
                self.sock.set_nonblocking(true).unwrap();
            }
        }
        self.sock.set_nonblocking(false).unwrap();
        let now = Instant::now();
        if self.ep.next_timeout().is_some_and(|t| t <= now) {
            self.ep.on_timeout(now);
        }
        while let Some(e) = self.ep.poll_event() {
            self.events.push_back(e);
        }
    }

    fn write_all(&mut self, conn: ConnId, mut data: &[u8], deadline: Instant) {
        while !data.is_empty() {
            let n = self.ep.write(conn, data).expect("write");
            data = &data[n..];
            assert!(Instant::now() < deadline, "write timed out");
            if !data.is_empty() {
                self.turn();
            }
        }
    }

    fn read_exact(&mut self, conn: ConnId, buf: &mut [u8], deadline: Instant) {
        let mut got = 0;
        while got < buf.len() {
            got += self.ep.read(conn, &mut buf[got..]).expect("read");
            if got < buf.len() {
                if let Some(r) = self.ep.connection(conn).and_then(|c| c.close_reason()) {
                    panic!("connection closed: {r:?} after {got} bytes");
                }
                if Instant::now() >= deadline {
                    let c = self.ep.connection(conn);
                    panic!(
                        "read timed out after {got} bytes: {:?} peer window {:?} in flight {:?} cwnd {:?} writable {:?}",
                        c.map(|c| c.stats()),
                        c.map(|c| c.peer_window()),
                        c.map(|c| c.bytes_in_flight()),
                        c.map(|c| c.cwnd()),
                        c.map(|c| c.writable()),
                    );
                }
                self.turn();
            }
        }
    }
}

fn handshake(info_hash: &[u8; 20]) -> Vec<u8> {
    let mut h = vec![19u8];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0u8; 8]);
    h.extend_from_slice(info_hash);
    h.extend_from_slice(b"-RV0100-utpinterop01");
    h
}

fn hex20(s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex info-hash");
    }
    out
}

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks (100 per second).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn download(args: &[String]) {
    let bind: SocketAddr = args[0].parse().unwrap();
    let peer: SocketAddr = args[1].parse().unwrap();
    assert!(peer.ip().is_loopback(), "loopback only");
    let info_hash = hex20(&args[2]);
    let file = std::fs::read(&args[3]).expect("file");
    let piece_len: usize = args[4].parse().unwrap();
    let max_payload: usize = args.get(5).map_or(1380, |s| s.parse().unwrap());
    let cfg = Config {
        max_payload,
        recv_buffer: 4 << 20,
        ..Config::default()
    };
    let mut d = Driver::new(bind, cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    let conn = d.ep.connect(Instant::now(), peer).unwrap();
    let t_connect = Instant::now();
    while !d.events.contains(&Event::Conn {
        conn,
        event: ConnEvent::Connected,
    }) {
        if let Some(r) = d.ep.connection(conn).and_then(|c| c.close_reason()) {
            panic!("connect failed: {r:?}");
        }
        assert!(Instant::now() < deadline, "connect timed out");
        d.turn();
    }
    println!("connected in {:?}", t_connect.elapsed());
    d.write_all(conn, &handshake(&info_hash), deadline);
    let mut hs = [0u8; 68];
    d.read_exact(conn, &mut hs, deadline);
    assert_eq!(&hs[1..20], b"BitTorrent protocol");
    assert_eq!(&hs[28..48], &info_hash, "info-hash of the answer");
    println!(
        "handshake answered by peer id {:?}",
        String::from_utf8_lossy(&hs[48..56])
    );
    // interested
    d.write_all(conn, &[0, 0, 0, 1, 2], deadline);
    // Wait for unchoke, skipping bitfield and other messages.
    loop {
        let mut len = [0u8; 4];
        d.read_exact(conn, &mut len, deadline);
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            continue;
        }
        let mut msg = vec![0u8; len];
        d.read_exact(conn, &mut msg, deadline);
        if msg[0] == 1 {
            break;
        }
    }
    println!("unchoked");
    // Request every block of the file at once.
    let block = 16384usize;
    let mut reqs = Vec::new();
    let mut off = 0;
    while off < file.len() {
        let piece = off / piece_len;
        let begin = off % piece_len;
        let len = block.min(piece_len - begin).min(file.len() - off);
        reqs.extend_from_slice(&13u32.to_be_bytes());
        reqs.push(6);
        reqs.extend_from_slice(&(piece as u32).to_be_bytes());
        reqs.extend_from_slice(&(begin as u32).to_be_bytes());
        reqs.extend_from_slice(&(len as u32).to_be_bytes());
        off += len;
    }
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    // At most 250 requests outstanding (Transmission drops requests past
    // its queue of 512, and libtorrent's default queue is 500).
    const REQ_LEN: usize = 17;
    let window = 250 * REQ_LEN;
    let first = reqs.len().min(window);
    d.write_all(conn, &reqs[..first], deadline);
    let mut next_req = first;
    let mut got = vec![0u8; file.len()];
    let mut received = 0;
    while received < file.len() {
        let mut len = [0u8; 4];
        d.read_exact(conn, &mut len, deadline);
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            continue;
        }
        let mut msg = vec![0u8; len];
        d.read_exact(conn, &mut msg, deadline);
        if msg[0] != 7 {
            continue;
        }
        let piece = u32::from_be_bytes(msg[1..5].try_into().unwrap()) as usize;
        let begin = u32::from_be_bytes(msg[5..9].try_into().unwrap()) as usize;
        let at = piece * piece_len + begin;
        got[at..at + len - 9].copy_from_slice(&msg[9..]);
        received += len - 9;
        if next_req < reqs.len() {
            d.write_all(conn, &reqs[next_req..next_req + REQ_LEN], deadline);
            next_req += REQ_LEN;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert!(got == file, "downloaded bytes differ from the file");
    let c = d.ep.connection(conn).unwrap();
    println!(
        "downloaded {} bytes byte-exact in {:.3} s ({:.1} MB/s), cpu {:.2} s ({:.1} ms per MB), rtt {:?}, {:?}",
        file.len(),
        secs,
        file.len() as f64 / secs / 1e6,
        cpu,
        cpu * 1000.0 / (file.len() as f64 / 1e6),
        c.rtt(),
        c.stats()
    );
    // Graceful close from our side; libtorrent answers with its FIN.
    d.ep.close(conn).unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if d.events.iter().any(
            |e| matches!(e, Event::Conn { conn: c, event: ConnEvent::Closed(_) } if *c == conn),
        ) {
            break;
        }
        d.turn();
        let mut sink = [0u8; 65536];
        while d.ep.read(conn, &mut sink).unwrap_or(0) > 0 {}
    }
    let closed = d.events.iter().find_map(|e| match e {
        Event::Conn {
            conn: c,
            event: ConnEvent::Closed(r),
        } if *c == conn => Some(*r),
        _ => None,
    });
    let c = d.ep.connection(conn);
    println!(
        "close: {closed:?} (peer's FIN seen: {:?}, our FIN acknowledged: {:?})",
        c.map(|c| c.is_eof()),
        c.map(|c| c.is_fin_acked())
    );
    println!("OK download");
}

fn refuse(args: &[String]) {
    let bind: SocketAddr = args[0].parse().unwrap();
    let info_hash = hex20(&args[1]);
    let mut d = Driver::new(bind, Config::default());
    d.ep.set_listening(true);
    println!("listening on {bind}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let conn = loop {
        if let Some(Event::Incoming { conn, addr }) = d
            .events
            .iter()
            .find(|e| matches!(e, Event::Incoming { .. }))
            .copied()
        {
            println!("incoming uTP connection from {addr}");
            break conn;
        }
        assert!(Instant::now() < deadline, "no incoming connection");
        d.turn();
    };
    let mut hs = [0u8; 68];
    d.read_exact(conn, &mut hs, deadline);
    assert_eq!(&hs[1..20], b"BitTorrent protocol");
    println!(
        "handshake for info-hash {}",
        hs[28..48]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert_eq!(&hs[28..48], &info_hash);
    // As the engine will for a torrent it does not have: reset at once.
    d.ep.reset(conn).unwrap();
    for _ in 0..10 {
        d.turn();
    }
    println!("OK refuse (reset sent)");
}

fn serve(args: &[String]) {
    let bind: SocketAddr = args[0].parse().unwrap();
    let info_hash = hex20(&args[1]);
    let file = std::fs::read(&args[2]).expect("file");
    let piece_len: usize = args[3].parse().unwrap();
    let max_payload: usize = args.get(4).map_or(1380, |s| s.parse().unwrap());
    let cfg = Config {
        max_payload,
        send_buffer: 4 << 20,
        ..Config::default()
    };
    let mut d = Driver::new(bind, cfg);
    d.ep.set_listening(true);
    println!("serving on {bind}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let conn = loop {
        if let Some(Event::Incoming { conn, .. }) = d
            .events
            .iter()
            .find(|e| matches!(e, Event::Incoming { .. }))
            .copied()
        {
            break conn;
        }
        assert!(Instant::now() < deadline, "no incoming connection");
        d.turn();
    };
    let mut hs = [0u8; 68];
    d.read_exact(conn, &mut hs, deadline);
    assert_eq!(&hs[28..48], &info_hash);
    d.write_all(conn, &handshake(&info_hash), deadline);
    let pieces = file.len().div_ceil(piece_len);
    let mut bitfield = vec![0u8; pieces.div_ceil(8)];
    for i in 0..pieces {
        bitfield[i / 8] |= 0x80 >> (i % 8);
    }
    let mut msg = ((bitfield.len() + 1) as u32).to_be_bytes().to_vec();
    msg.push(5);
    msg.extend_from_slice(&bitfield);
    msg.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
    d.write_all(conn, &msg, deadline);
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let mut sent = 0usize;
    let mut inbuf: Vec<u8> = Vec::new();
    let mut piece_msg = Vec::new();
    let mut chunk = [0u8; 65536];
    let reason = loop {
        let n = d.ep.read(conn, &mut chunk).unwrap_or(0);
        inbuf.extend_from_slice(&chunk[..n]);
        // Answer every complete request in the buffer.
        while inbuf.len() >= 4 {
            let len = u32::from_be_bytes(inbuf[..4].try_into().unwrap()) as usize;
            if inbuf.len() < 4 + len {
                break;
            }
            let m: Vec<u8> = inbuf.drain(..4 + len).skip(4).collect();
            if m.first() == Some(&6) && m.len() == 13 {
                let piece = u32::from_be_bytes(m[1..5].try_into().unwrap()) as usize;
                let begin = u32::from_be_bytes(m[5..9].try_into().unwrap()) as usize;
                let blen = u32::from_be_bytes(m[9..13].try_into().unwrap()) as usize;
                let at = piece * piece_len + begin;
                piece_msg.clear();
                piece_msg.extend_from_slice(&((9 + blen) as u32).to_be_bytes());
                piece_msg.push(7);
                piece_msg.extend_from_slice(&m[1..9]);
                piece_msg.extend_from_slice(&file[at..at + blen]);
                let out = std::mem::take(&mut piece_msg);
                d.write_all(conn, &out, deadline);
                piece_msg = out;
                sent += blen;
            }
        }
        if let Some(r) = d.ep.connection(conn).and_then(|c| c.close_reason()) {
            break Some(r);
        }
        if d.ep.connection(conn).is_some_and(|c| c.is_eof()) {
            // The peer finished (libtorrent closes once it has everything).
            break None;
        }
        if d.ep.connection(conn).is_none() || Instant::now() > deadline {
            break None;
        }
        if n == 0 {
            d.turn();
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "served {sent} bytes in {secs:.3} s until close ({reason:?}); cpu {cpu:.2} s ({:.1} ms per MB)",
        cpu * 1000.0 / (sent as f64 / 1e6)
    );
    if let Some(c) = d.ep.connection(conn) {
        println!("cwnd {} rtt {:?} {:?}", c.cwnd(), c.rtt(), c.stats());
    }
    println!("OK serve {sent}");
}

fn forget(args: &[String]) {
    let bind: SocketAddr = args[0].parse().unwrap();
    let peer: SocketAddr = args[1].parse().unwrap();
    assert!(peer.ip().is_loopback(), "loopback only");
    let info_hash = hex20(&args[2]);
    let mut d = Driver::new(bind, Config::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = d.ep.connect(Instant::now(), peer).unwrap();
    d.write_all(conn, &handshake(&info_hash), deadline);
    while d
        .ep
        .connection(conn)
        .is_some_and(|c| c.stats().bytes_acked < 68)
    {
        assert!(Instant::now() < deadline, "handshake not acknowledged");
        d.turn();
    }
    println!("handshake delivered; forgetting the connection");
    d.ep = Endpoint::new(Config::default(), Instant::now(), 5);
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        d.turn();
    }
    println!("OK forget: {:?}", d.ep.stats());
}

fn deaf(args: &[String]) {
    let bind: SocketAddr = args[0].parse().unwrap();
    let mut d = Driver::new(bind, Config::default());
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        d.turn();
    }
    println!("OK deaf: {:?}", d.ep.stats());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("download") => download(&args[1..]),
        Some("refuse") => refuse(&args[1..]),
        Some("serve") => serve(&args[1..]),
        Some("forget") => forget(&args[1..]),
        Some("deaf") => deaf(&args[1..]),
        _ => eprintln!("usage: interop download BIND PEER INFO_HASH FILE PIECE_LEN [MAX_PAYLOAD] | interop refuse BIND INFO_HASH"),
    }
}
