//! The session's UDP port: one socket per address family on the listen
//! port's number, shared by the DHT and uTP (the datagrams told apart by
//! [`rivulet_utp::is_utp`]: KRPC is bencode and starts with `d`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;

/// Bytes of kernel buffer asked for each way: uTP at full speed on a fast
/// path sends and receives bursts of a few hundred datagrams between two
/// turns of its task.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// The sockets of the session's UDP port.
#[derive(Debug, Clone)]
pub(crate) struct PortSockets {
    pub v4: Option<Arc<UdpSocket>>,
    pub v6: Option<Arc<UdpSocket>>,
    pub port: u16,
}

impl PortSockets {
    /// Binds `port` (0: any free port, the same for both families) at
    /// `bind`, or at every address of each family when `None` (IPv6 then
    /// optional: a machine without it still has IPv4).
    pub(crate) fn bind(bind: Option<IpAddr>, port: u16) -> io::Result<PortSockets> {
        let v4_ip = match bind {
            Some(IpAddr::V4(ip)) => Some(ip),
            Some(IpAddr::V6(_)) => None,
            None => Some(Ipv4Addr::UNSPECIFIED),
        };
        let v6_ip = match bind {
            Some(IpAddr::V6(ip)) => Some(ip),
            Some(IpAddr::V4(_)) => None,
            None => Some(Ipv6Addr::UNSPECIFIED),
        };
        let v4 = match v4_ip {
            Some(ip) => Some(bind_socket(IpAddr::V4(ip), port)?),
            None => None,
        };
        // With port 0, IPv6 takes the port IPv4 got.
        let port = match &v4 {
            Some(s) => s.local_addr()?.port(),
            None => port,
        };
        let v6 = match v6_ip {
            Some(ip) => match bind_socket(IpAddr::V6(ip), port) {
                Ok(s) => Some(s),
                Err(e) if bind.is_some() => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "no IPv6 UDP socket");
                    None
                }
            },
            None => None,
        };
        let port = match (&v4, &v6) {
            (Some(s), _) | (None, Some(s)) => s.local_addr()?.port(),
            (None, None) => return Err(io::Error::other("no address family for UDP")),
        };
        Ok(PortSockets {
            v4: v4.map(Arc::new),
            v6: v6.map(Arc::new),
            port,
        })
    }

    /// The socket for datagrams to `to`.
    pub(crate) fn for_addr(&self, to: SocketAddr) -> Option<&Arc<UdpSocket>> {
        if to.is_ipv4() {
            self.v4.as_ref()
        } else {
            self.v6.as_ref()
        }
    }

    /// Sends `datagram` to `to` without waiting: a full socket buffer drops
    /// it, as the network would (both protocols retransmit). Returns whether
    /// it went out.
    pub(crate) fn send(&self, to: SocketAddr, datagram: &[u8]) -> bool {
        self.for_addr(to)
            .is_some_and(|s| s.try_send_to(datagram, to).is_ok())
    }
}

fn bind_socket(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    let domain = if ip.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
    if ip.is_ipv6() {
        // Its own socket beside the IPv4 one, on the same port.
        socket.set_only_v6(true)?;
    }
    // Best effort: the system may cap them lower.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(ip, port).into())?;
    UdpSocket::from_std(socket.into())
}

/// The next datagram on `socket`; never resolves without one (or with an
/// error other than an ICMP report, after which the socket is left idle).
pub(crate) async fn recv(
    socket: &Option<Arc<UdpSocket>>,
    buf: &mut [u8],
) -> Option<(usize, SocketAddr)> {
    let Some(s) = socket else {
        return std::future::pending().await;
    };
    match s.recv_from(buf).await {
        Ok(r) => Some(r),
        // An ICMP report of an earlier send: like a lost datagram.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
            ) =>
        {
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "UDP socket failed");
            std::future::pending().await
        }
    }
}
