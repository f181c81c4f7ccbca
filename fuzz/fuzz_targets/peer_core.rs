//! Fuzzes the sans-IO peer core (`rivulet_engine::peer::PeerState`): the
//! bytes a peer sends, interleaved with commands from the torrent, time
//! passing, disk reads completing and the torrent's info arriving late, all
//! chosen by the input. The core must never panic, must only ever send
//! well-formed messages, and must keep its queues within their bounds.
//!
//! Input: one byte of settings (fast extension, extension protocol, info
//! known from the start, which pieces we have), then operations, each an
//! opcode byte and its operands.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rivulet_engine::peer::{Accepted, Flow, PeerParams, PeerState, TorrentAccess, SERVE_QUEUE};
use rivulet_engine::picker::{Block, PiecePicker, Received};
use rivulet_engine::torrent::PeerCommand;
use rivulet_wire::{Bitfield, Limits, MessageDecoder};

const PIECE_LEN: u32 = 32 * 1024;
const PIECES: usize = 40;
const TOTAL: u64 = (PIECES as u64 - 1) * PIECE_LEN as u64 + 5000;

/// A torrent in memory: the real piece picker, and pieces counted as had as
/// soon as all their blocks are in (no hashing).
struct Torrent {
    picker: PiecePicker,
    have: Bitfield,
    rng: StdRng,
}

impl TorrentAccess for Torrent {
    fn piece_len(&self, piece: u32) -> u32 {
        self.picker.piece_len(piece)
    }
    fn have(&self, piece: u32) -> bool {
        self.have.get(piece as usize)
    }
    fn have_pieces(&self) -> Bitfield {
        self.have.clone()
    }
    fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }
    fn next_wanted(&self, bits: &Bitfield, from: u32) -> Option<u32> {
        self.picker.next_wanted(from, |p| bits.get(p as usize))
    }
    fn add_peer_pieces(&mut self, bits: &Bitfield, seed: bool) {
        if seed {
            self.picker.add_seed();
        } else {
            self.picker.add_peer_pieces(bits.ones().map(|p| p as u32));
        }
    }
    fn remove_peer_pieces(&mut self, bits: &Bitfield, seed: bool) {
        if seed {
            self.picker.remove_seed();
        } else {
            self.picker.remove_peer_pieces(bits.ones().map(|p| p as u32));
        }
    }
    fn peer_has(&mut self, piece: u32) -> bool {
        self.picker.peer_has(piece);
        !self.picker.have(piece)
    }
    fn pick(&mut self, allowed: &dyn Fn(u32) -> bool, want: usize) -> Vec<Block> {
        self.picker.pick(0, allowed, want, &mut self.rng)
    }
    fn requests_dropped(&mut self, blocks: &[Block]) {
        for b in blocks {
            self.picker.on_request_dropped(*b, 0);
        }
    }
    fn block_received(&mut self, block: Block, _data: Bytes) -> Accepted {
        match self.picker.on_block_received(block, 0) {
            Received::New { piece_complete, .. } => {
                if piece_complete {
                    self.picker.on_piece_verified(block.piece);
                    self.have.set(block.piece as usize);
                }
                Accepted::New
            }
            Received::Duplicate => Accepted::Duplicate,
            Received::Invalid => Accepted::Invalid,
        }
    }
    fn block_wasted(&mut self, _len: u32) {}
    fn block_sent(&mut self, _len: u32, _first: bool) {}
    fn peer_interested(&mut self, interested: bool) -> bool {
        interested
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, mut ops)) = data.split_first() else {
        return;
    };
    let have_all = settings & 8 != 0;
    let have_some = settings & 16 != 0;
    let have = |p: u32| have_all || (have_some && p % 3 == 0);
    let mut rng = StdRng::seed_from_u64(u64::from(settings));
    let picker = PiecePicker::new(PIECE_LEN, TOTAL, have, &mut rng);
    let mut bits = Bitfield::new(PIECES);
    for p in 0..PIECES as u32 {
        if have(p) {
            bits.set(p as usize);
        }
    }
    let mut t = Torrent {
        picker,
        have: bits,
        rng,
    };
    let mut now = Instant::now();
    let params = PeerParams {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, settings)),
        info_hash: [settings; 20],
        piece_count: (settings & 4 != 0).then_some(PIECES),
        fast: settings & 1 != 0,
        dht_port: None,
        extended: settings & 2 != 0,
        request_timeout: Duration::from_secs(20),
    };
    let mut core = PeerState::new(params, now);
    core.start(&mut t);
    let mut inbox = BytesMut::new();
    // What we send must always decode (limits as the peer would set them).
    let mut ours = MessageDecoder::with_limits(Limits::default().with_piece_count(PIECES as u32));
    let mut sent = BytesMut::new();
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        let result = match op % 8 {
            // Bytes from the peer, in chunks of up to 64.
            0..=3 => {
                let n = usize::from(op >> 2).min(ops.len());
                let (chunk, rest) = ops.split_at(n);
                ops = rest;
                inbox.extend_from_slice(chunk);
                core.receive(&mut inbox, now, &mut t).map(|()| Flow::Continue)
            }
            // Time passes.
            4 => {
                now += Duration::from_millis(u64::from(op >> 3) * 500);
                core.on_timeout(now, &mut t).map(|()| Flow::Continue)
            }
            // A command from the torrent.
            5 => {
                let Some((&arg, rest)) = ops.split_first() else {
                    break;
                };
                ops = rest;
                let piece = u32::from(arg) % (PIECES as u32 + 2);
                let cmd = match op >> 3 {
                    0 => PeerCommand::Have(piece),
                    1 => PeerCommand::Cancel(Block {
                        piece,
                        begin: u32::from(arg & 1) * 16384,
                        len: 16384,
                    }),
                    2 => PeerCommand::Choke,
                    3 => PeerCommand::Unchoke,
                    4 => PeerCommand::Disconnect,
                    _ => PeerCommand::Unchoke,
                };
                core.command(cmd, &mut t)
            }
            // Disk reads complete.
            6 => {
                while let Some(b) = core.next_read() {
                    core.block_read(b, &Bytes::from(vec![0u8; b.len as usize]), &mut t);
                }
                Ok(Flow::Continue)
            }
            // The torrent's info arrives.
            _ => core.set_piece_count(PIECES, &mut t).map(|()| Flow::Continue),
        };
        core.fill_pipeline(now, &mut t);
        assert!(core.outstanding().count() <= 1000);
        assert!(core.queued_for_peer() <= SERVE_QUEUE);
        sent.extend_from_slice(&core.take_transmit(now));
        loop {
            match ours.decode(&mut sent) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => panic!("we sent a malformed message: {e}"),
            }
        }
        match result {
            Ok(Flow::Continue) => {}
            Ok(Flow::Close) | Err(_) => break,
        }
    }
});
