//! `dht_swarm`: a DHT of many nodes in one process, on loopback, for
//! benchmarks that need a client's routing table full (hundreds of real
//! DHT processes would not fit a 2-core machine).
//!
//! ```text
//! dht_swarm FIRST_IP COUNT PORT
//! ```
//!
//! runs COUNT `rivulet-dht` nodes on PORT of COUNT consecutive IPv4
//! addresses from FIRST_IP (127.0.4.1, 127.0.4.2, ...), each on its own UDP
//! socket. The first is the entry point; each node pings it and a few nodes
//! started before it, then looks up its own id, and refreshes as a real
//! node does. It prints `ready COUNT` once all have started, then `nodes N` every 10 s (nodes in all the tables, to see
//! the DHT settle), and runs until killed. Nothing leaves loopback: the
//! nodes know no address but each other's.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rivulet_dht::{Config, Node};
use tokio::net::UdpSocket;
use tokio::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, first, count, port] = args.as_slice() else {
        return Err("usage: dht_swarm FIRST_IP COUNT PORT".into());
    };
    let first: Ipv4Addr = first.parse()?;
    let count: u32 = count.parse()?;
    let port: u16 = port.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(first, count, port))
}

/// Nodes in each node's table, summed (updated by each node's task).
type Sizes = Arc<Vec<AtomicUsize>>;

async fn run(first: Ipv4Addr, count: u32, port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let addr = |i: u32| SocketAddr::from((Ipv4Addr::from(u32::from(first) + i), port));
    let entry = addr(0);
    let sizes: Sizes = Arc::new((0..count).map(|_| AtomicUsize::new(0)).collect());
    // Each node pings a few earlier ones (entering each other's tables),
    // then looks up its own id through them: a DHT that fills in seconds.
    let mut rng = rand::thread_rng();
    for i in 0..count {
        let socket = UdpSocket::bind(addr(i)).await?;
        let mut known = vec![entry];
        for _ in 0..7.min(i) {
            known.push(addr(rand::Rng::gen_range(&mut rng, 0..i)));
        }
        known.retain(|a| *a != addr(i));
        tokio::spawn(node(i, socket, known, Arc::clone(&sizes)));
    }
    println!("ready {count}");
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let total: usize = sizes.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        println!("nodes {total}");
    }
}

async fn node(i: u32, socket: UdpSocket, known: Vec<SocketAddr>, sizes: Sizes) {
    let config = Config {
        ipv6: false,
        bootstrap: Vec::new(),
        ..Config::default()
    };
    let mut node = Node::new(config, Instant::now().into_std(), u64::from(i) + 1);
    for a in &known {
        node.add_node(Instant::now().into_std(), *a);
    }
    let mut joined = false;
    let mut buf = vec![0u8; 2048];
    loop {
        if !joined && !node.table(false).is_empty() {
            joined = true;
            let _ = node.bootstrap(Instant::now().into_std(), &[]);
        }
        while let Some((to, packet)) = node.poll_transmit() {
            let _ = socket.try_send_to(&packet, to);
        }
        while node.poll_event().is_some() {}
        if let Some(s) = sizes.get(i as usize) {
            s.store(node.table(false).len(), Ordering::Relaxed);
        }
        let wake = node
            .next_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    if let Some(p) = buf.get(..n) {
                        node.handle_packet(Instant::now().into_std(), from, p);
                    }
                }
            }
            () = tokio::time::sleep_until(wake) => node.on_timeout(Instant::now().into_std()),
        }
    }
}
