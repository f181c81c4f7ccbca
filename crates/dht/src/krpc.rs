//! KRPC, the DHT's message format (BEP 5): bencoded dictionaries with a
//! transaction id `t`, a type `y` (`q` query, `r` response, `e` error), and
//! for queries a method name `q` with arguments `a`. BEP 32 adds `want` and
//! `nodes6`, BEP 42 the requester's address `ip`, BEP 43 the read-only flag
//! `ro`.
//!
//! Decoding is bounded: a packet longer than [`MAX_PACKET_LEN`] is refused
//! before it is parsed, nesting and value counts are capped, transaction ids
//! and version strings are short. Keys that are not understood are ignored;
//! encoding writes canonical bencode of what was understood, so
//! `decode(encode(m)) == m` for every decoded `m`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rivulet_bencode::{decode_with, Limits, OwnedValue, Value};

use crate::id::NodeId;

/// Largest datagram accepted. Real KRPC packets stay under an Ethernet MTU;
/// 2048 leaves room for extensions without letting a packet cost much.
pub const MAX_PACKET_LEN: usize = 2048;

/// Longest transaction id accepted. Clients use 2 to 4 bytes.
pub const MAX_TRANSACTION_ID_LEN: usize = 8;

/// Longest `v` (client version) kept; longer ones are dropped, not refused.
pub const MAX_VERSION_LEN: usize = 16;

/// Longest error message kept (longer ones are cut).
pub const MAX_ERROR_MESSAGE_LEN: usize = 256;

/// Longest announce token accepted.
pub const MAX_TOKEN_LEN: usize = 64;

/// Bytes of a compact IPv4 node: id, address, port.
pub const COMPACT_NODE_V4_LEN: usize = 26;
/// Bytes of a compact IPv6 node: id, address, port.
pub const COMPACT_NODE_V6_LEN: usize = 38;

/// Nesting needed by KRPC: message → arguments → list of values.
const LIMITS: Limits = Limits {
    max_depth: 4,
    max_values: 512,
};

/// KRPC error codes (BEP 5).
pub mod error_code {
    /// Generic error.
    pub const GENERIC: i64 = 201;
    /// Server error.
    pub const SERVER: i64 = 202;
    /// Protocol error: malformed packet, invalid arguments or bad token.
    pub const PROTOCOL: i64 = 203;
    /// Method unknown.
    pub const METHOD_UNKNOWN: i64 = 204;
}

/// One KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `t`: chosen by the querier, echoed by the responder.
    pub transaction_id: Vec<u8>,
    /// `v`: the sender's client and version, if given (and short).
    pub version: Option<Vec<u8>>,
    /// `ip` (BEP 42): in responses, the address the responder saw us at.
    pub ip: Option<SocketAddr>,
    /// `ro` (BEP 43): the querier is read-only and must not be added to
    /// routing tables.
    pub read_only: bool,
    /// What the message says.
    pub body: Body,
}

/// The three kinds of KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `y = q`.
    Query(Query),
    /// `y = r`. A response does not say which query it answers; the
    /// transaction id does.
    Response(Response),
    /// `y = e`.
    Error(ErrorBody),
}

/// `e`: a code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// One of [`error_code`], or anything else the sender chose.
    pub code: i64,
    /// The message as sent (bytes, not necessarily UTF-8), cut to
    /// [`MAX_ERROR_MESSAGE_LEN`].
    pub message: Vec<u8>,
}

/// BEP 32 `want`: which address families of nodes the querier wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// `n4`: IPv4 nodes in `nodes`.
    pub n4: bool,
    /// `n6`: IPv6 nodes in `nodes6`.
    pub n6: bool,
}

/// A query and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `ping`.
    Ping {
        /// The querier's id.
        id: NodeId,
    },
    /// `find_node`.
    FindNode {
        /// The querier's id.
        id: NodeId,
        /// The id whose closest nodes are asked for.
        target: NodeId,
        /// BEP 32 `want`, if given.
        want: Option<Want>,
    },
    /// `get_peers`.
    GetPeers {
        /// The querier's id.
        id: NodeId,
        /// The torrent.
        info_hash: NodeId,
        /// BEP 32 `want`, if given.
        want: Option<Want>,
    },
    /// `announce_peer`.
    AnnouncePeer {
        /// The querier's id.
        id: NodeId,
        /// The torrent.
        info_hash: NodeId,
        /// The peer's port (ignored when `implied_port` is set).
        port: u16,
        /// Use the source port of the packet instead of `port` (for peers
        /// behind a NAT that use uTP on the DHT's port).
        implied_port: bool,
        /// The token from an earlier `get_peers` response.
        token: Vec<u8>,
    },
    /// A method this node does not know; answered with error 204.
    Unknown {
        /// The method name.
        method: Vec<u8>,
        /// The querier's id.
        id: NodeId,
    },
}

impl Query {
    /// The querier's id.
    pub fn sender_id(&self) -> NodeId {
        match self {
            Query::Ping { id }
            | Query::FindNode { id, .. }
            | Query::GetPeers { id, .. }
            | Query::AnnouncePeer { id, .. }
            | Query::Unknown { id, .. } => *id,
        }
    }

    /// The method name as sent on the wire.
    pub fn method(&self) -> &[u8] {
        match self {
            Query::Ping { .. } => b"ping",
            Query::FindNode { .. } => b"find_node",
            Query::GetPeers { .. } => b"get_peers",
            Query::AnnouncePeer { .. } => b"announce_peer",
            Query::Unknown { method, .. } => method,
        }
    }
}

/// A node as the DHT passes it around: id and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The arguments of a response (`r`). Which ones are present depends on the
/// query answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The responder's id.
    pub id: NodeId,
    /// `nodes`: compact IPv4 nodes.
    pub nodes: Vec<NodeInfo>,
    /// `nodes6`: compact IPv6 nodes.
    pub nodes6: Vec<NodeInfo>,
    /// `values`: compact peers (6-byte IPv4 and 18-byte IPv6 entries).
    pub values: Vec<SocketAddr>,
    /// `token` for a later `announce_peer`.
    pub token: Option<Vec<u8>>,
}

impl Response {
    /// A response carrying only the responder's id (the answer to `ping` and
    /// `announce_peer`).
    pub fn id_only(id: NodeId) -> Self {
        Response {
            id,
            nodes: Vec::new(),
            nodes6: Vec::new(),
            values: Vec::new(),
            token: None,
        }
    }
}

/// Why a packet is not a KRPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet is longer than [`MAX_PACKET_LEN`].
    #[error("packet of {0} bytes is too long")]
    TooLong(usize),
    /// The packet is not one bencoded dictionary within the limits.
    #[error("not bencode: {0}")]
    Bencode(#[from] rivulet_bencode::Error),
    /// The packet is bencode but not a valid KRPC message. The transaction id
    /// is kept when it could be read, and `query` tells whether the sender
    /// sent a query, so that it can be answered with error 203.
    #[error("invalid KRPC message: {what}")]
    Invalid {
        /// What is wrong.
        what: &'static str,
        /// The transaction id, if one could be read.
        transaction_id: Option<Vec<u8>>,
        /// Whether the message claims to be a query.
        query: bool,
    },
}

/// Decodes one KRPC message.
pub fn decode(packet: &[u8]) -> Result<Message, DecodeError> {
    if packet.len() > MAX_PACKET_LEN {
        return Err(DecodeError::TooLong(packet.len()));
    }
    let root = decode_with(packet, LIMITS)?;
    if root.as_dict().is_none() {
        return Err(invalid("not a dictionary", None, false));
    }
    let tid = root
        .get(b"t")
        .and_then(Value::as_bytes)
        .filter(|t| t.len() <= MAX_TRANSACTION_ID_LEN)
        .map(<[u8]>::to_vec);
    let y = root.get(b"y").and_then(Value::as_bytes);
    let is_query = y == Some(b"q");
    let Some(transaction_id) = tid else {
        return Err(invalid("missing or long transaction id", None, is_query));
    };
    let fail = |what| invalid(what, Some(transaction_id.clone()), is_query);
    let version = root
        .get(b"v")
        .and_then(Value::as_bytes)
        .filter(|v| v.len() <= MAX_VERSION_LEN)
        .map(<[u8]>::to_vec);
    let ip = root
        .get(b"ip")
        .and_then(Value::as_bytes)
        .and_then(parse_compact_addr);
    let read_only = root.get(b"ro").and_then(Value::as_int) == Some(1);
    let body = match y {
        Some(b"q") => Body::Query(decode_query(&root).map_err(fail)?),
        Some(b"r") => Body::Response(decode_response(&root).map_err(fail)?),
        Some(b"e") => Body::Error(decode_error(&root).map_err(fail)?),
        _ => return Err(fail("unknown message type")),
    };
    Ok(Message {
        transaction_id,
        version,
        ip,
        read_only,
        body,
    })
}

fn invalid(what: &'static str, transaction_id: Option<Vec<u8>>, query: bool) -> DecodeError {
    DecodeError::Invalid {
        what,
        transaction_id,
        query,
    }
}

fn node_id(v: Option<&Value<'_>>, what: &'static str) -> Result<NodeId, &'static str> {
    v.and_then(Value::as_bytes)
        .and_then(NodeId::from_slice)
        .ok_or(what)
}

fn decode_want(args: &Value<'_>) -> Option<Want> {
    let list = args.get(b"want")?.as_list()?;
    let mut want = Want::default();
    for item in list {
        match item.as_bytes() {
            Some(b"n4") => want.n4 = true,
            Some(b"n6") => want.n6 = true,
            _ => {}
        }
    }
    Some(want)
}

fn decode_query(root: &Value<'_>) -> Result<Query, &'static str> {
    let method = root
        .get(b"q")
        .and_then(Value::as_bytes)
        .ok_or("query without method")?;
    let args = root.get(b"a").filter(|a| a.as_dict().is_some());
    let args = args.ok_or("query without arguments")?;
    let id = node_id(args.get(b"id"), "query without a 20-byte id")?;
    Ok(match method {
        b"ping" => Query::Ping { id },
        b"find_node" => Query::FindNode {
            id,
            target: node_id(args.get(b"target"), "find_node without a 20-byte target")?,
            want: decode_want(args),
        },
        b"get_peers" => Query::GetPeers {
            id,
            info_hash: node_id(args.get(b"info_hash"), "get_peers without info_hash")?,
            want: decode_want(args),
        },
        b"announce_peer" => {
            let info_hash = node_id(args.get(b"info_hash"), "announce_peer without info_hash")?;
            let implied_port = args
                .get(b"implied_port")
                .and_then(Value::as_int)
                .is_some_and(|i| i != 0);
            let port = match args.get(b"port").map(Value::as_int) {
                Some(Some(p)) => u16::try_from(p).map_err(|_| "port out of range")?,
                Some(None) => return Err("port is not an integer"),
                None if implied_port => 0,
                None => return Err("announce_peer without port"),
            };
            let token = args
                .get(b"token")
                .and_then(Value::as_bytes)
                .filter(|t| t.len() <= MAX_TOKEN_LEN)
                .ok_or("announce_peer without a token")?
                .to_vec();
            Query::AnnouncePeer {
                id,
                info_hash,
                port,
                implied_port,
                token,
            }
        }
        other => {
            if other.len() > 64 {
                return Err("method name too long");
            }
            Query::Unknown {
                method: other.to_vec(),
                id,
            }
        }
    })
}

fn decode_nodes(v: Option<&Value<'_>>, entry_len: usize) -> Result<Vec<NodeInfo>, &'static str> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let bytes = v.as_bytes().ok_or("nodes is not a byte string")?;
    // Whole entries only: a trailing partial entry is ignored, as other
    // clients do.
    Ok(bytes
        .chunks_exact(entry_len)
        .filter_map(parse_compact_node)
        .collect())
}

fn decode_response(root: &Value<'_>) -> Result<Response, &'static str> {
    let r = root.get(b"r").filter(|r| r.as_dict().is_some());
    let r = r.ok_or("response without r")?;
    let id = node_id(r.get(b"id"), "response without a 20-byte id")?;
    let nodes = decode_nodes(r.get(b"nodes"), COMPACT_NODE_V4_LEN)?;
    let nodes6 = decode_nodes(r.get(b"nodes6"), COMPACT_NODE_V6_LEN)?;
    let values = match r.get(b"values") {
        None => Vec::new(),
        Some(v) => v
            .as_list()
            .ok_or("values is not a list")?
            .iter()
            .filter_map(|p| p.as_bytes().and_then(parse_compact_addr))
            .collect(),
    };
    let token = match r.get(b"token") {
        None => None,
        Some(t) => Some(
            t.as_bytes()
                .filter(|t| t.len() <= MAX_TOKEN_LEN)
                .ok_or("bad token")?
                .to_vec(),
        ),
    };
    Ok(Response {
        id,
        nodes,
        nodes6,
        values,
        token,
    })
}

fn decode_error(root: &Value<'_>) -> Result<ErrorBody, &'static str> {
    let e = root
        .get(b"e")
        .and_then(Value::as_list)
        .ok_or("error without e list")?;
    let code = e
        .first()
        .and_then(Value::as_int)
        .ok_or("error without code")?;
    let message = e.get(1).and_then(Value::as_bytes).unwrap_or_default();
    let message = message
        .get(..MAX_ERROR_MESSAGE_LEN)
        .unwrap_or(message)
        .to_vec();
    Ok(ErrorBody { code, message })
}

/// A compact address: 6 bytes (IPv4 + port) or 18 bytes (IPv6 + port).
pub fn parse_compact_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        6 => {
            let (ip, port) = b.split_at(4);
            let ip: [u8; 4] = ip.try_into().ok()?;
            let port: [u8; 2] = port.try_into().ok()?;
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(ip)),
                u16::from_be_bytes(port),
            ))
        }
        18 => {
            let (ip, port) = b.split_at(16);
            let ip: [u8; 16] = ip.try_into().ok()?;
            let port: [u8; 2] = port.try_into().ok()?;
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes(port),
            ))
        }
        _ => None,
    }
}

/// A compact node: 20-byte id then a compact address.
pub fn parse_compact_node(b: &[u8]) -> Option<NodeInfo> {
    let (id, addr) = b.split_at_checked(20)?;
    Some(NodeInfo {
        id: NodeId::from_slice(id)?,
        addr: parse_compact_addr(addr)?,
    })
}

/// Appends the compact form of `addr` (6 or 18 bytes). IPv4-mapped IPv6
/// addresses are written as IPv4.
pub fn write_compact_addr(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn compact_addr(addr: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    write_compact_addr(addr, &mut out);
    out
}

/// Compact node list for `nodes` (IPv4 entries) or `nodes6` (IPv6 entries);
/// entries of the other family are skipped.
pub fn compact_nodes(nodes: &[NodeInfo], v6: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| n.addr.is_ipv6() == v6) {
        out.extend_from_slice(&n.id.0);
        write_compact_addr(n.addr, &mut out);
    }
    out
}

fn bytes(b: &[u8]) -> OwnedValue {
    OwnedValue::Bytes(b.to_vec())
}

fn want_value(w: Want) -> OwnedValue {
    let mut l = Vec::new();
    if w.n4 {
        l.push(OwnedValue::str("n4"));
    }
    if w.n6 {
        l.push(OwnedValue::str("n6"));
    }
    OwnedValue::List(l)
}

/// Encodes `m` as canonical bencode.
pub fn encode(m: &Message) -> Vec<u8> {
    let mut root = OwnedValue::dict().with("t", bytes(&m.transaction_id));
    if let Some(v) = &m.version {
        root = root.with("v", bytes(v));
    }
    if let Some(ip) = m.ip {
        root = root.with("ip", OwnedValue::Bytes(compact_addr(ip)));
    }
    if m.read_only {
        root = root.with("ro", OwnedValue::Int(1));
    }
    match &m.body {
        Body::Query(q) => {
            let mut a = OwnedValue::dict().with("id", bytes(&q.sender_id().0));
            match q {
                Query::Ping { .. } | Query::Unknown { .. } => {}
                Query::FindNode { target, want, .. } => {
                    a = a.with("target", bytes(&target.0));
                    if let Some(w) = want {
                        a = a.with("want", want_value(*w));
                    }
                }
                Query::GetPeers {
                    info_hash, want, ..
                } => {
                    a = a.with("info_hash", bytes(&info_hash.0));
                    if let Some(w) = want {
                        a = a.with("want", want_value(*w));
                    }
                }
                Query::AnnouncePeer {
                    info_hash,
                    port,
                    implied_port,
                    token,
                    ..
                } => {
                    a = a
                        .with("info_hash", bytes(&info_hash.0))
                        .with("token", bytes(token));
                    // With implied_port the port may be absent; port 0 is
                    // what its absence decodes to.
                    if !*implied_port || *port != 0 {
                        a = a.with("port", OwnedValue::Int(i64::from(*port)));
                    }
                    if *implied_port {
                        a = a.with("implied_port", OwnedValue::Int(1));
                    }
                }
            }
            root = root
                .with("y", OwnedValue::str("q"))
                .with("q", bytes(q.method()))
                .with("a", a);
        }
        Body::Response(r) => {
            let mut d = OwnedValue::dict().with("id", bytes(&r.id.0));
            if !r.nodes.is_empty() {
                d = d.with("nodes", OwnedValue::Bytes(compact_nodes(&r.nodes, false)));
            }
            if !r.nodes6.is_empty() {
                d = d.with("nodes6", OwnedValue::Bytes(compact_nodes(&r.nodes6, true)));
            }
            if !r.values.is_empty() {
                let values = r
                    .values
                    .iter()
                    .map(|p| OwnedValue::Bytes(compact_addr(*p)))
                    .collect();
                d = d.with("values", OwnedValue::List(values));
            }
            if let Some(t) = &r.token {
                d = d.with("token", bytes(t));
            }
            root = root.with("y", OwnedValue::str("r")).with("r", d);
        }
        Body::Error(e) => {
            // A missing message decodes as empty, so empty is not written.
            let mut list = vec![OwnedValue::Int(e.code)];
            if !e.message.is_empty() {
                list.push(bytes(&e.message));
            }
            root = root
                .with("y", OwnedValue::str("e"))
                .with("e", OwnedValue::List(list));
        }
    }
    root.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(s: &[u8; 20]) -> NodeId {
        NodeId(*s)
    }

    /// The example packets of BEP 5, byte for byte.
    #[test]
    fn bep5_examples() {
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let m = decode(ping).unwrap();
        assert_eq!(m.transaction_id, b"aa");
        assert_eq!(
            m.body,
            Body::Query(Query::Ping {
                id: id(b"abcdefghij0123456789")
            })
        );
        assert_eq!(encode(&m), ping);

        let pong = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re";
        let m = decode(pong).unwrap();
        assert_eq!(
            m.body,
            Body::Response(Response::id_only(id(b"mnopqrstuvwxyz123456")))
        );
        assert_eq!(encode(&m), pong);

        let find = b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe";
        let m = decode(find).unwrap();
        assert_eq!(
            m.body,
            Body::Query(Query::FindNode {
                id: id(b"abcdefghij0123456789"),
                target: id(b"mnopqrstuvwxyz123456"),
                want: None,
            })
        );
        assert_eq!(encode(&m), find);

        let get = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe";
        let m = decode(get).unwrap();
        assert_eq!(
            m.body,
            Body::Query(Query::GetPeers {
                id: id(b"abcdefghij0123456789"),
                info_hash: id(b"mnopqrstuvwxyz123456"),
                want: None,
            })
        );
        assert_eq!(encode(&m), get);

        // get_peers response with peers: "axje.u" is 97.120.106.101:11893,
        // "idhtnm" is 105.100.104.116:28269.
        let values = b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re";
        let m = decode(values).unwrap();
        let Body::Response(r) = &m.body else { panic!() };
        assert_eq!(r.token.as_deref(), Some(&b"aoeusnth"[..]));
        assert_eq!(
            r.values,
            vec![
                "97.120.106.101:11893".parse().unwrap(),
                "105.100.104.116:28269".parse().unwrap()
            ]
        );
        assert_eq!(encode(&m), values);

        let announce = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
        let m = decode(announce).unwrap();
        assert_eq!(
            m.body,
            Body::Query(Query::AnnouncePeer {
                id: id(b"abcdefghij0123456789"),
                info_hash: id(b"mnopqrstuvwxyz123456"),
                port: 6881,
                implied_port: true,
                token: b"aoeusnth".to_vec(),
            })
        );
        assert_eq!(encode(&m), announce);

        let error = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
        let m = decode(error).unwrap();
        assert_eq!(
            m.body,
            Body::Error(ErrorBody {
                code: 201,
                message: b"A Generic Error Ocurred".to_vec()
            })
        );
        assert_eq!(encode(&m), error);
    }

    #[test]
    fn compact_nodes_v4_and_v6() {
        let n4 = NodeInfo {
            id: NodeId([1; 20]),
            addr: "1.2.3.4:6881".parse().unwrap(),
        };
        let n6 = NodeInfo {
            id: NodeId([2; 20]),
            addr: "[2001:db8::7]:51413".parse().unwrap(),
        };
        assert_eq!(compact_nodes(&[n4, n6], false).len(), 26);
        assert_eq!(compact_nodes(&[n4, n6], true).len(), 38);
        let m = Message {
            transaction_id: vec![0, 1, 2, 3],
            version: Some(b"RV\x01\x00".to_vec()),
            ip: Some("[2001:db8::9]:1".parse().unwrap()),
            read_only: false,
            body: Body::Response(Response {
                id: NodeId([3; 20]),
                nodes: vec![n4],
                nodes6: vec![n6],
                values: vec![n4.addr, n6.addr],
                token: Some(vec![9; 8]),
            }),
        };
        assert_eq!(decode(&encode(&m)).unwrap(), m);
    }

    #[test]
    fn refusals_keep_the_transaction_id_of_queries() {
        // find_node without target.
        let p = b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:xy1:y1:qe";
        match decode(p) {
            Err(DecodeError::Invalid {
                transaction_id: Some(t),
                query: true,
                ..
            }) => assert_eq!(t, b"xy"),
            other => panic!("{other:?}"),
        }
        // Too long.
        let big = vec![b'x'; MAX_PACKET_LEN + 1];
        assert!(matches!(decode(&big), Err(DecodeError::TooLong(_))));
        // Long transaction id.
        assert!(
            decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t9:1234567891:y1:qe").is_err()
        );
        // Deep nesting.
        assert!(decode(b"d1:alllleeee1:t1:a1:y1:qe").is_err());
        // An unknown method is a message (answered with 204 by the node).
        let m = decode(b"d1:ad2:id20:abcdefghij0123456789e1:q3:foo1:t1:a1:y1:qe").unwrap();
        assert!(matches!(m.body, Body::Query(Query::Unknown { .. })));
    }

    fn round_trip(p: &[u8]) {
        if let Ok(m) = decode(p) {
            let again = encode(&m);
            assert!(again.len() <= p.len(), "re-encoding grew");
            assert_eq!(decode(&again).unwrap(), m);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(p in proptest::collection::vec(any::<u8>(), 0..3000)) {
            round_trip(&p);
        }

        /// Bytes that start like a KRPC message reach the deeper checks.
        #[test]
        fn mutated_messages_never_panic(
            seed in 0usize..6,
            cut in 0usize..200,
            pos in 0usize..200,
            byte in any::<u8>(),
        ) {
            let samples: [&[u8]; 6] = [
                b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
                b"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes26:abcdefghij0123456789\x01\x02\x03\x04\x1a\xe1e1:t2:aa1:y1:re",
                b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
                b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
                b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
                b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz1234564:wantl2:n42:n6ee1:q9:find_node1:t2:aa1:y1:qe",
            ];
            let mut p = samples[seed].to_vec();
            if let Some(b) = p.get_mut(pos) {
                *b = byte;
            }
            p.truncate(p.len().saturating_sub(cut % 4));
            round_trip(&p);
        }
    }
}
