//! Saving the id and the table's nodes as bencode, and restoring them.

use super::*;

impl Node {
    /// Our id and the nodes of the routing tables that are not bad, as
    /// bencode, for [`Node::restore`]. The driver writes it to disk.
    pub fn save(&self) -> Vec<u8> {
        let nodes = |v6: bool| {
            let t = self.table(v6);
            let list: Vec<NodeInfo> = t
                .entries()
                .filter(|e| e.failures < self.config.max_failures.max(1))
                .map(|e| e.info)
                .collect();
            compact_nodes(&list, v6)
        };
        OwnedValue::dict()
            .with("id", OwnedValue::Bytes(self.id.0.to_vec()))
            .with("nodes", OwnedValue::Bytes(nodes(false)))
            .with("nodes6", OwnedValue::Bytes(nodes(true)))
            .with("version", OwnedValue::Int(1))
            .to_bytes()
    }

    /// A node from what [`Node::save`] wrote: the same id (unless
    /// `config.external_ip` is set and the id does not fit it), and the saved
    /// nodes in its tables as questionable until they answer.
    pub fn restore(
        config: Config,
        saved: &[u8],
        now: Instant,
        seed: u64,
    ) -> Result<Self, DhtError> {
        if saved.len() > MAX_SAVED_LEN {
            return Err(DhtError::BadState("too long"));
        }
        let limits = Limits {
            max_depth: 2,
            max_values: 16,
        };
        let v = decode_with(saved, limits).map_err(|_| DhtError::BadState("not bencode"))?;
        let id = v
            .get(b"id")
            .and_then(Value::as_bytes)
            .and_then(NodeId::from_slice)
            .ok_or(DhtError::BadState("no 20-byte id"))?;
        let list = |key: &[u8], len: usize| -> Result<Vec<NodeInfo>, DhtError> {
            let Some(b) = v.get(key) else {
                return Ok(Vec::new());
            };
            let b = b
                .as_bytes()
                .ok_or(DhtError::BadState("nodes not a string"))?;
            if b.len() % len != 0 {
                return Err(DhtError::BadState("nodes not a whole number of entries"));
            }
            b.chunks_exact(len)
                .map(|c| parse_compact_node(c).ok_or(DhtError::BadState("bad node entry")))
                .collect()
        };
        let nodes = list(b"nodes", COMPACT_NODE_V4_LEN)?;
        let nodes6 = list(b"nodes6", COMPACT_NODE_V6_LEN)?;
        let keep = config.external_ip.is_none_or(|ip| id.is_valid_for(ip));
        let mut node = if keep {
            Node::with_id(config, id, now, seed)
        } else {
            Node::new(config, now, seed)
        };
        for n in nodes.into_iter().chain(nodes6) {
            if node.family_enabled(n.addr.is_ipv6()) && node.acceptable(&n) {
                let v6 = n.addr.is_ipv6();
                node.table_mut(v6).insert(n, None, now);
            }
        }
        Ok(node)
    }
}
