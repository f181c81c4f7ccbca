//! The piece picker: which blocks to request from which peer.
//!
//! A plain data structure (no I/O, no clock, no locks) so that it can be tested
//! from a compact description of the swarm and driven by property tests.
//!
//! Policy:
//! - **Finish before starting**: blocks of the pieces a peer is already
//!   fetching come first, then those of pieces nobody is fetching any more
//!   (requests dropped), those closest to completion first, so that pieces
//!   complete (and can be verified, written and shared) as early as possible.
//! - **One piece, one peer**: a peer joins a piece another peer is fetching
//!   only when it cannot start a new one (none left, or too many in
//!   progress). A piece's blocks then arrive in order and are hashed as they
//!   come; shared pieces interleave, and blocks that arrive ahead of the
//!   hashed prefix must be read back from disk.
//! - **Random start**: until [`RANDOM_START_PIECES`] pieces are complete, new
//!   pieces are chosen at random, so that a new peer has something to trade soon.
//! - **Rarest first**: afterwards, the new piece held by the fewest peers, ties
//!   broken randomly.
//! - **Priorities**: each piece has a priority from 0 to [`MAX_PRIORITY`],
//!   the highest of the files it holds ([`piece_priorities`]). New pieces of
//!   a higher priority come before any of a lower one (rarest first within
//!   a priority); pieces of priority 0 are not wanted and never started
//!   (one already in progress is finished). The download is *done*
//!   ([`PiecePicker::is_done`]) when every wanted piece is had, *complete*
//!   when every piece is.
//! - **End-game**: once no piece is left unstarted and the peer can get no free
//!   block, it may request blocks already requested from others (at most
//!   [`END_GAME_REQUESTERS`] peers a block); the first copy to arrive wins
//!   and the caller cancels the rest.
//!
//! Availability is kept in buckets (pieces sorted by how many peers have them,
//! with the start index of each count), so a `have` message costs O(1): the
//! piece swaps to the edge of its bucket and the boundary moves. Peers that have
//! everything are counted apart and never touch the buckets.

// Indexing here is into the picker's own per-piece vectors (all of length
// `num_pieces`) with indices that are either produced by the picker itself
// (`order`, `partials`) or checked at the public entry points (`avail.get`,
// `partial_index`, `have`) before use; piece numbers from peers never index
// anything unchecked.
#![allow(clippy::indexing_slicing)]

use rand::Rng;

/// The size of a request: 16 KiB, what every client asks for and serves.
pub const BLOCK_LEN: u32 = 16 * 1024;

/// New pieces are picked at random until this many are complete.
pub const RANDOM_START_PIECES: u32 = 4;

/// In end-game, the most peers asked for one block: a second copy on its
/// way saves the download from one slow peer; with every peer asking for
/// every block (200 peers), a quarter of the data came twice or more.
pub const END_GAME_REQUESTERS: usize = 2;

/// The highest priority of a piece or file.
pub const MAX_PRIORITY: u8 = 7;

/// The priority of a piece or file nobody chose one for.
pub const NORMAL_PRIORITY: u8 = 4;

/// The priority of each piece of a torrent whose files (in `layout`'s
/// order) have priorities `files` (0: not wanted, up to [`MAX_PRIORITY`];
/// missing entries are [`NORMAL_PRIORITY`]): each piece takes the highest
/// priority of the files it holds bytes of, so a piece shared by a wanted
/// and an unwanted file is wanted. `stored(i)` says whether file `i` holds
/// data (padding files do not, and leave their pieces to the other files).
pub fn piece_priorities(
    layout: &rivulet_core::FileLayout,
    files: &[u8],
    stored: impl Fn(usize) -> bool,
) -> Vec<u8> {
    let n = usize::try_from(layout.num_pieces()).unwrap_or(usize::MAX);
    let mut out = vec![0u8; n];
    for file in 0..layout.num_files() {
        if !stored(file) || layout.file_length(file) == Some(0) {
            continue;
        }
        let prio = files
            .get(file)
            .copied()
            .unwrap_or(NORMAL_PRIORITY)
            .min(MAX_PRIORITY);
        for piece in layout.file_pieces(file).unwrap_or(0..0) {
            if let Some(p) = usize::try_from(piece).ok().and_then(|i| out.get_mut(i)) {
                *p = (*p).max(prio);
            }
        }
    }
    out
}

/// The engine's handle on a peer connection.
pub type PeerKey = u32;

/// A block: `len` bytes at `begin` within piece `piece`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    /// Piece index.
    pub piece: u32,
    /// Offset within the piece.
    pub begin: u32,
    /// Length in bytes (16 KiB except at the end of the last piece).
    pub len: u32,
}

/// What [`PiecePicker::on_block_received`] made of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A block we needed. `cancel` lists the other peers that were asked for it
    /// (end-game) and should get a cancel; `piece_complete` means every block of
    /// the piece is now in and it can be hashed.
    New {
        /// Other peers that requested the same block.
        cancel: Vec<PeerKey>,
        /// All blocks of the piece have arrived.
        piece_complete: bool,
    },
    /// We already had this block (an end-game duplicate, or a piece already
    /// complete): drop the data.
    Duplicate,
    /// Not a block of any piece we are downloading, or misaligned or of the
    /// wrong length: the sender is misbehaving.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BlockState {
    Free,
    /// Asked of these peers (more than one only in end-game).
    Requested(Vec<PeerKey>),
    /// Arrived from this peer (kept to find who sent bad data).
    Received(PeerKey),
}

#[derive(Debug, Clone)]
struct Partial {
    piece: u32,
    /// The peer that last took free blocks of it.
    owner: Option<PeerKey>,
    blocks: Vec<BlockState>,
    free: u32,
    received: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceState {
    /// Wanted, not started: in the availability buckets.
    Missing,
    InProgress,
    Have,
    /// Not had, and not wanted (priority 0): never started.
    Skipped,
}

/// Tracks which pieces we have, which are in progress block by block, and how
/// many peers have each piece; hands out blocks to request.
#[derive(Debug, Clone)]
pub struct PiecePicker {
    piece_length: u32,
    total_length: u64,
    state: Vec<PieceState>,
    have_count: u32,
    /// Pieces wanted, neither had nor in progress.
    unstarted: u32,
    /// Per piece: its priority, 0 (not wanted) to [`MAX_PRIORITY`].
    prio: Vec<u8>,
    /// Per priority: how many pieces of it are `Missing`, so that picking
    /// skips the priorities that have none left.
    missing_at: [u32; MAX_PRIORITY as usize + 1],
    /// Pieces not had whose priority is above 0: the download is done
    /// when none is left.
    wanted_left: u32,
    /// Bytes of the pieces whose priority is above 0, and of those of them
    /// not had.
    wanted_bytes: u64,
    wanted_left_bytes: u64,
    partials: Vec<Partial>,
    /// Per piece: how many connected peers (other than seeds) have it.
    avail: Vec<u32>,
    /// Missing pieces sorted by `avail`, then (from the last entry of
    /// `bucket_start` on) the retired ones: in progress or had, in no order,
    /// so that choosing a new piece never walks past pieces already had
    /// (the cost per piece stays flat however many pieces the torrent has).
    /// `pos` is the inverse permutation.
    order: Vec<u32>,
    pos: Vec<u32>,
    /// `bucket_start[a]` is the first index in `order` of a missing piece
    /// with availability `a`; the last entry is where the retired pieces
    /// start.
    bucket_start: Vec<u32>,
    /// Connected peers that have every piece.
    seeds: u32,
    /// Most pieces in progress at once: each holds a piece's worth of memory
    /// until it is verified, so this bounds the download buffer.
    max_in_progress: usize,
}

impl PiecePicker {
    /// A picker for a torrent of `total_length` bytes in pieces of
    /// `piece_length`; `have(i)` says which pieces are already complete
    /// (from resume data). The initial order within equal availability is
    /// shuffled with `rng`.
    ///
    /// # Panics
    /// If `piece_length` is 0 or the piece count exceeds `u32::MAX`; both are
    /// ruled out by metainfo validation.
    pub fn new(
        piece_length: u32,
        total_length: u64,
        have: impl Fn(u32) -> bool,
        rng: &mut impl Rng,
    ) -> Self {
        assert!(piece_length > 0, "piece length checked by metainfo parsing");
        let n = u32::try_from(total_length.div_ceil(u64::from(piece_length)))
            .unwrap_or_else(|_| panic!("piece count checked by metainfo parsing"));
        let state: Vec<PieceState> = (0..n)
            .map(|i| {
                if have(i) {
                    PieceState::Have
                } else {
                    PieceState::Missing
                }
            })
            .collect();
        let have_count = state.iter().filter(|s| **s == PieceState::Have).count() as u32;
        let missing = n - have_count;
        let mut order: Vec<u32> = (0..n)
            .filter(|p| state[*p as usize] == PieceState::Missing)
            .collect();
        // Fisher-Yates: the tie-break order between equally rare pieces.
        for i in (1..order.len()).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        order.extend((0..n).filter(|p| state[*p as usize] != PieceState::Missing));
        let mut pos = vec![0u32; n as usize];
        for (i, p) in order.iter().enumerate() {
            pos[*p as usize] = i as u32;
        }
        let mut picker = PiecePicker {
            piece_length,
            total_length,
            state,
            have_count,
            unstarted: n - have_count,
            prio: vec![NORMAL_PRIORITY; n as usize],
            missing_at: [0; MAX_PRIORITY as usize + 1],
            wanted_left: 0,
            wanted_bytes: 0,
            wanted_left_bytes: 0,
            partials: Vec::new(),
            avail: vec![0; n as usize],
            order,
            pos,
            bucket_start: vec![0, missing],
            seeds: 0,
            max_in_progress: 64,
        };
        picker.count_wanted();
        picker
    }

    /// Sets the most pieces that may be in progress at once (at least 1).
    pub fn set_max_in_progress(&mut self, max: usize) {
        self.max_in_progress = max.max(1);
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.state.len() as u32
    }

    /// Whether piece `piece` is complete and verified.
    pub fn have(&self, piece: u32) -> bool {
        self.state.get(piece as usize) == Some(&PieceState::Have)
    }

    /// Number of complete, verified pieces.
    pub fn have_count(&self) -> u32 {
        self.have_count
    }

    /// Whether every piece is complete.
    pub fn is_complete(&self) -> bool {
        self.have_count == self.num_pieces()
    }

    /// Whether every wanted piece (priority above 0) is complete: nothing is
    /// left to download, though pieces of unwanted files may be missing.
    pub fn is_done(&self) -> bool {
        self.wanted_left == 0
    }

    /// Bytes of the pieces wanted (priority above 0), and of those not had
    /// yet.
    pub fn wanted_bytes(&self) -> (u64, u64) {
        (self.wanted_bytes, self.wanted_left_bytes)
    }

    /// The priority of `piece` (0 when out of range).
    pub fn priority(&self, piece: u32) -> u8 {
        self.prio.get(piece as usize).copied().unwrap_or(0)
    }

    /// Sets the priority of every piece (`prio[i]` for piece `i`, capped at
    /// [`MAX_PRIORITY`]; pieces past its end get [`NORMAL_PRIORITY`]).
    /// Pieces had stay had; pieces in progress are finished whatever their
    /// new priority; missing pieces of priority 0 are no longer started,
    /// and those that had it are wanted again. O(pieces).
    pub fn set_priorities(&mut self, prio: &[u8]) {
        for piece in 0..self.num_pieces() {
            let i = piece as usize;
            let q = prio
                .get(i)
                .copied()
                .unwrap_or(NORMAL_PRIORITY)
                .min(MAX_PRIORITY);
            match self.state[i] {
                PieceState::Missing if q == 0 => {
                    // `retire` finds the piece by its availability bucket,
                    // which is only its own while it is Missing.
                    self.retire(piece);
                    self.state[i] = PieceState::Skipped;
                    self.unstarted -= 1;
                }
                PieceState::Skipped if q > 0 => {
                    self.state[i] = PieceState::Missing;
                    self.unretire(piece);
                    self.unstarted += 1;
                }
                _ => {}
            }
            self.prio[i] = q;
        }
        self.count_wanted();
    }

    /// Recounts what `set_priorities` changes: missing pieces per
    /// priority, and the pieces and bytes wanted.
    fn count_wanted(&mut self) {
        self.missing_at = [0; MAX_PRIORITY as usize + 1];
        self.wanted_left = 0;
        self.wanted_bytes = 0;
        self.wanted_left_bytes = 0;
        for piece in 0..self.num_pieces() {
            let (s, q) = (self.state[piece as usize], self.prio[piece as usize]);
            if s == PieceState::Missing {
                self.missing_at[q as usize] += 1;
            }
            if q > 0 {
                let len = u64::from(self.piece_len(piece));
                self.wanted_bytes += len;
                if s != PieceState::Have {
                    self.wanted_left += 1;
                    self.wanted_left_bytes += len;
                }
            }
        }
    }

    /// Pieces currently in progress.
    pub fn in_progress(&self) -> impl Iterator<Item = u32> + '_ {
        self.partials.iter().map(|p| p.piece)
    }

    /// Length of piece `piece` (the last may be short).
    pub fn piece_len(&self, piece: u32) -> u32 {
        let start = u64::from(piece) * u64::from(self.piece_length);
        let len = self.total_length.saturating_sub(start);
        len.min(u64::from(self.piece_length)) as u32
    }

    fn blocks_in(&self, piece: u32) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_LEN)
    }

    fn block_at(&self, piece: u32, index: u32) -> Block {
        let begin = index * BLOCK_LEN;
        Block {
            piece,
            begin,
            len: (self.piece_len(piece) - begin).min(BLOCK_LEN),
        }
    }

    /// Availability of `piece`: how many connected peers have it.
    pub fn availability(&self, piece: u32) -> u32 {
        self.avail.get(piece as usize).copied().unwrap_or(0) + self.seeds
    }

    // ---- availability ----

    /// A peer that has every piece connected (or sent have-all).
    pub fn add_seed(&mut self) {
        self.seeds += 1;
    }

    /// A peer that had every piece went away.
    pub fn remove_seed(&mut self) {
        self.seeds = self.seeds.saturating_sub(1);
    }

    /// A peer announced `pieces` (from its bitfield). Indices past the end are
    /// ignored.
    pub fn add_peer_pieces(&mut self, pieces: impl IntoIterator<Item = u32>) {
        for p in pieces {
            self.inc(p);
        }
    }

    /// A peer that had `pieces` went away.
    pub fn remove_peer_pieces(&mut self, pieces: impl IntoIterator<Item = u32>) {
        for p in pieces {
            self.dec(p);
        }
    }

    /// A peer sent `have` for `piece`.
    pub fn peer_has(&mut self, piece: u32) {
        self.inc(piece);
    }

    fn swap_order(&mut self, i: u32, j: u32) {
        if i == j {
            return;
        }
        self.order.swap(i as usize, j as usize);
        let (pi, pj) = (self.order[i as usize], self.order[j as usize]);
        self.pos[pi as usize] = i;
        self.pos[pj as usize] = j;
    }

    /// Whether `piece` is among the retired pieces of `order`.
    fn retired(&self, piece: u32) -> bool {
        self.state.get(piece as usize) != Some(&PieceState::Missing)
    }

    /// The index in `order` where the retired pieces start.
    fn retired_start(&self) -> u32 {
        self.bucket_start.last().copied().unwrap_or(0)
    }

    /// Makes sure buckets up to `a` exist (new ones are empty, just before
    /// the retired pieces).
    fn ensure_bucket(&mut self, a: usize) {
        while self.bucket_start.len() < a + 2 {
            self.bucket_start.push(self.retired_start());
        }
    }

    /// Moves a missing piece out of its bucket to the retired pieces: one
    /// swap per bucket above its own (a few), never a walk of the order.
    fn retire(&mut self, piece: u32) {
        let a = self.avail[piece as usize] as usize;
        for b in a..self.bucket_start.len() - 1 {
            // Its bucket's last place, then the first of the next bucket.
            let last = self.bucket_start[b + 1] - 1;
            self.swap_order(self.pos[piece as usize], last);
            self.bucket_start[b + 1] -= 1;
        }
    }

    /// Moves a retired piece back into the bucket of its availability.
    fn unretire(&mut self, piece: u32) {
        let a = self.avail[piece as usize] as usize;
        self.ensure_bucket(a);
        let top = self.bucket_start.len() - 1;
        for b in (a + 1..=top).rev() {
            // The first place above bucket b-1, which then takes it in.
            let first = self.bucket_start[b];
            self.swap_order(self.pos[piece as usize], first);
            self.bucket_start[b] += 1;
        }
    }

    fn inc(&mut self, piece: u32) {
        let Some(&a) = self.avail.get(piece as usize) else {
            return;
        };
        if self.retired(piece) {
            // Retired pieces are in no bucket: only the count changes.
            self.avail[piece as usize] += 1;
            return;
        }
        let a = a as usize;
        self.ensure_bucket(a + 1);
        let last = self.bucket_start[a + 1] - 1;
        self.swap_order(self.pos[piece as usize], last);
        self.bucket_start[a + 1] -= 1;
        self.avail[piece as usize] += 1;
    }

    fn dec(&mut self, piece: u32) {
        let Some(&a) = self.avail.get(piece as usize) else {
            return;
        };
        if a == 0 {
            return;
        }
        if self.retired(piece) {
            self.avail[piece as usize] -= 1;
            return;
        }
        let a = a as usize;
        let first = self.bucket_start[a];
        self.swap_order(self.pos[piece as usize], first);
        self.bucket_start[a] += 1;
        self.avail[piece as usize] -= 1;
    }

    // ---- picking ----

    /// Whether the peer has any piece we still lack.
    pub fn is_interesting(&self, peer_has: impl Fn(u32) -> bool) -> bool {
        self.next_wanted(0, peer_has).is_some()
    }

    /// The first piece at or after `from` (wrapping round) that the peer has
    /// and we still lack. Kept as a hint by the caller, so that checking
    /// interest again after each piece we get costs O(1) while the hinted
    /// piece is still wanted, rather than a scan of the whole torrent.
    pub fn next_wanted(&self, from: u32, peer_has: impl Fn(u32) -> bool) -> Option<u32> {
        let n = self.num_pieces();
        let from = if from < n { from } else { 0 };
        (from..n).chain(0..from).find(|p| {
            matches!(
                self.state[*p as usize],
                PieceState::Missing | PieceState::InProgress
            ) && peer_has(*p)
        })
    }

    /// Up to `want` blocks to request from peer `peer`, which has the pieces for
    /// which `peer_has` is true. The blocks are marked requested by `peer`.
    pub fn pick(
        &mut self,
        peer: PeerKey,
        peer_has: impl Fn(u32) -> bool,
        want: usize,
        rng: &mut impl Rng,
    ) -> Vec<Block> {
        let mut out = Vec::new();
        if want == 0 {
            return out;
        }
        // 1. Free blocks of pieces in progress: first the peer's own (it
        // took blocks of them last), then those nobody is fetching (their
        // requests were dropped), most advanced first in each. Pieces other
        // peers are fetching come only after new pieces (4.), so that each
        // piece mostly comes from one peer, in order: its blocks are then
        // hashed as they arrive, not read back from disk later.
        let mut own = Vec::new();
        let mut orphans = Vec::new();
        let mut others = Vec::new();
        for (i, p) in self.partials.iter().enumerate() {
            if p.free == 0 || !peer_has(p.piece) {
                continue;
            }
            let requested = p.blocks.len() as u32 - p.free - p.received;
            let list = if p.owner == Some(peer) && requested > 0 {
                &mut own
            } else if requested == 0 {
                &mut orphans
            } else {
                &mut others
            };
            list.push(i);
        }
        let advanced = |i: &usize| {
            let p = &self.partials[*i];
            std::cmp::Reverse(p.blocks.len() as u32 - p.free)
        };
        own.sort_by_key(advanced);
        orphans.sort_by_key(advanced);
        others.sort_by_key(advanced);
        for i in own.into_iter().chain(orphans) {
            self.take_free(i, peer, want, &mut out);
            if out.len() >= want {
                return out;
            }
        }
        // 2. New pieces.
        while out.len() < want && self.partials.len() < self.max_in_progress {
            let Some(piece) = self.choose_new_piece(&peer_has, rng) else {
                break;
            };
            let i = self.start_piece(piece);
            self.take_free(i, peer, want, &mut out);
        }
        // 4. Pieces other peers are fetching.
        for i in others {
            if out.len() >= want {
                return out;
            }
            self.take_free(i, peer, want, &mut out);
        }
        // 5. End-game: nothing unstarted, nothing free for this peer.
        if out.is_empty() && self.unstarted == 0 {
            self.pick_end_game(peer, &peer_has, want, &mut out);
        }
        out
    }

    fn take_free(&mut self, i: usize, peer: PeerKey, want: usize, out: &mut Vec<Block>) {
        let piece = self.partials[i].piece;
        let mut index = 0u32;
        while out.len() < want && self.partials[i].free > 0 {
            let Some(state) = self.partials[i].blocks.get_mut(index as usize) else {
                break;
            };
            if *state == BlockState::Free {
                *state = BlockState::Requested(vec![peer]);
                self.partials[i].free -= 1;
                self.partials[i].owner = Some(peer);
                out.push(self.block_at(piece, index));
            }
            index += 1;
        }
    }

    /// A new piece for a peer with pieces `peer_has`: of the highest
    /// priority that has missing pieces the peer has. Each priority costs
    /// a scan of the missing pieces until one fits, so a priority whose
    /// pieces this peer lacks costs a scan of all of them; with one
    /// priority (the usual case) it is a single scan, as before.
    fn choose_new_piece(&self, peer_has: &impl Fn(u32) -> bool, rng: &mut impl Rng) -> Option<u32> {
        (1..=MAX_PRIORITY)
            .rev()
            .filter(|q| self.missing_at[*q as usize] > 0)
            .find_map(|q| self.choose_new_piece_at(q, peer_has, rng))
    }

    fn choose_new_piece_at(
        &self,
        prio: u8,
        peer_has: &impl Fn(u32) -> bool,
        rng: &mut impl Rng,
    ) -> Option<u32> {
        let eligible = |p: u32| {
            self.state[p as usize] == PieceState::Missing
                && self.prio[p as usize] == prio
                && peer_has(p)
        };
        if self.have_count < RANDOM_START_PIECES {
            // Random start: a random eligible piece, scanning on from a random spot.
            let n = self.num_pieces();
            if n == 0 {
                return None;
            }
            let start = rng.gen_range(0..n);
            return (0..n).map(|k| (start + k) % n).find(|p| eligible(*p));
        }
        let live = self.retired_start() as usize;
        self.order
            .get(..live)
            .unwrap_or_default()
            .iter()
            .copied()
            .find(|p| eligible(*p))
    }

    fn start_piece(&mut self, piece: u32) -> usize {
        let blocks = self.blocks_in(piece);
        self.retire(piece);
        self.state[piece as usize] = PieceState::InProgress;
        self.unstarted -= 1;
        self.missing_at[self.prio[piece as usize] as usize] -= 1;
        self.partials.push(Partial {
            piece,
            owner: None,
            blocks: vec![BlockState::Free; blocks as usize],
            free: blocks,
            received: 0,
        });
        self.partials.len() - 1
    }

    fn pick_end_game(
        &mut self,
        peer: PeerKey,
        peer_has: &impl Fn(u32) -> bool,
        want: usize,
        out: &mut Vec<Block>,
    ) {
        // Blocks with the fewest requesters first, so duplicates spread out.
        let mut candidates: Vec<(usize, usize, usize)> = Vec::new();
        for (i, p) in self.partials.iter().enumerate() {
            if !peer_has(p.piece) {
                continue;
            }
            for (b, s) in p.blocks.iter().enumerate() {
                if let BlockState::Requested(who) = s {
                    if who.len() < END_GAME_REQUESTERS && !who.contains(&peer) {
                        candidates.push((who.len(), i, b));
                    }
                }
            }
        }
        candidates.sort_unstable();
        for (_, i, b) in candidates.into_iter().take(want) {
            let piece = self.partials[i].piece;
            if let Some(BlockState::Requested(who)) = self.partials[i].blocks.get_mut(b) {
                who.push(peer);
                out.push(self.block_at(piece, b as u32));
            }
        }
    }

    /// Whether any wanted piece is left unstarted (end-game starts when
    /// none is).
    pub fn in_end_game(&self) -> bool {
        self.unstarted == 0 && !self.is_done()
    }

    // ---- events ----

    fn partial_index(&self, piece: u32) -> Option<usize> {
        self.partials.iter().position(|p| p.piece == piece)
    }

    /// A block arrived from `peer`.
    pub fn on_block_received(&mut self, block: Block, peer: PeerKey) -> Received {
        if self.have(block.piece) {
            return Received::Duplicate;
        }
        let Some(i) = self.partial_index(block.piece) else {
            return Received::Invalid;
        };
        let index = block.begin / BLOCK_LEN;
        // Bounds first: `block_at` assumes an index inside the piece.
        if !block.begin.is_multiple_of(BLOCK_LEN)
            || index as usize >= self.partials[i].blocks.len()
            || self.block_at(block.piece, index) != block
        {
            return Received::Invalid;
        }
        let partial = &mut self.partials[i];
        let Some(state) = partial.blocks.get_mut(index as usize) else {
            return Received::Invalid;
        };
        let cancel = match std::mem::replace(state, BlockState::Received(peer)) {
            BlockState::Received(first) => {
                *state = BlockState::Received(first);
                return Received::Duplicate;
            }
            BlockState::Free => {
                partial.free -= 1;
                Vec::new()
            }
            BlockState::Requested(mut who) => {
                who.retain(|p| *p != peer);
                who
            }
        };
        partial.received += 1;
        Received::New {
            cancel,
            piece_complete: partial.received as usize == partial.blocks.len(),
        }
    }

    /// A request to `peer` will not be answered (choke, reject, timeout,
    /// disconnect): the block goes back to the pool unless others were asked too.
    pub fn on_request_dropped(&mut self, block: Block, peer: PeerKey) {
        let Some(i) = self.partial_index(block.piece) else {
            return;
        };
        let partial = &mut self.partials[i];
        if let Some(state) = partial.blocks.get_mut((block.begin / BLOCK_LEN) as usize) {
            if let BlockState::Requested(who) = state {
                who.retain(|p| *p != peer);
                if who.is_empty() {
                    *state = BlockState::Free;
                    partial.free += 1;
                }
            }
        }
    }

    /// Drops every outstanding request to `peer` (it disconnected or choked us).
    pub fn on_peer_requests_dropped(&mut self, peer: PeerKey) {
        for partial in &mut self.partials {
            for state in &mut partial.blocks {
                if let BlockState::Requested(who) = state {
                    who.retain(|p| *p != peer);
                    if who.is_empty() {
                        *state = BlockState::Free;
                        partial.free += 1;
                    }
                }
            }
        }
    }

    /// Piece `piece` passed its hash check and was written: it is ours.
    pub fn on_piece_verified(&mut self, piece: u32) {
        if let Some(i) = self.partial_index(piece) {
            self.partials.swap_remove(i);
            self.state[piece as usize] = PieceState::Have;
            self.have_count += 1;
            if self.prio[piece as usize] > 0 {
                self.wanted_left -= 1;
                self.wanted_left_bytes -= u64::from(self.piece_len(piece));
            }
        }
    }

    /// Piece `piece` failed its hash check: it is fetched again from scratch.
    /// Returns the peers that sent its blocks, each with how many blocks, so the
    /// caller can decide whom to distrust.
    pub fn on_piece_failed(&mut self, piece: u32) -> Vec<(PeerKey, u32)> {
        let Some(i) = self.partial_index(piece) else {
            return Vec::new();
        };
        let partial = self.partials.swap_remove(i);
        let prio = self.prio[piece as usize];
        if prio == 0 {
            // No longer wanted: not fetched again.
            self.state[piece as usize] = PieceState::Skipped;
        } else {
            self.state[piece as usize] = PieceState::Missing;
            self.unretire(piece);
            self.unstarted += 1;
            self.missing_at[prio as usize] += 1;
        }
        let mut senders: Vec<(PeerKey, u32)> = Vec::new();
        for s in partial.blocks {
            if let BlockState::Received(p) = s {
                match senders.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, n)) => *n += 1,
                    None => senders.push((p, 1)),
                }
            }
        }
        senders
    }

    /// Every peer that sent a block of a piece still in progress (not yet
    /// verified or failed).
    pub fn all_senders(&self) -> std::collections::HashSet<PeerKey> {
        self.partials
            .iter()
            .flat_map(|p| p.blocks.iter())
            .filter_map(|s| match s {
                BlockState::Received(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    /// The peer that sent each block of an in-progress piece (`None` for blocks
    /// not yet received), for finding the culprit of a hash failure block by block.
    pub fn block_senders(&self, piece: u32) -> Vec<Option<PeerKey>> {
        self.partial_index(piece)
            .map(|i| {
                self.partials[i]
                    .blocks
                    .iter()
                    .map(|s| match s {
                        BlockState::Received(p) => Some(*p),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        // Buckets: every piece in bucket a is missing and has availability
        // a; the retired ones after them are exactly the others.
        for (a, w) in self.bucket_start.windows(2).enumerate() {
            for i in w[0]..w[1] {
                let p = self.order[i as usize];
                assert_eq!(self.avail[p as usize] as usize, a);
                assert_eq!(self.state[p as usize], PieceState::Missing);
            }
        }
        assert_eq!(self.bucket_start[0], 0);
        for i in self.retired_start() as usize..self.order.len() {
            assert_ne!(self.state[self.order[i] as usize], PieceState::Missing);
        }
        assert_eq!(self.order.len(), self.state.len());
        for (i, p) in self.order.iter().enumerate() {
            assert_eq!(self.pos[*p as usize] as usize, i);
        }
        let missing = self
            .state
            .iter()
            .filter(|s| **s == PieceState::Missing)
            .count();
        assert_eq!(missing as u32, self.unstarted);
        for q in 0..=MAX_PRIORITY {
            let at = (0..self.state.len())
                .filter(|p| self.state[*p] == PieceState::Missing && self.prio[*p] == q)
                .count();
            assert_eq!(at as u32, self.missing_at[q as usize]);
        }
        assert_eq!(
            self.missing_at[0], 0,
            "a missing piece of priority 0 is skipped"
        );
        let wanted_left = (0..self.state.len())
            .filter(|p| self.state[*p] != PieceState::Have && self.prio[*p] > 0)
            .count();
        assert_eq!(wanted_left as u32, self.wanted_left);
        let left_bytes: u64 = (0..self.num_pieces())
            .filter(|p| self.state[*p as usize] != PieceState::Have && self.prio[*p as usize] > 0)
            .map(|p| u64::from(self.piece_len(p)))
            .sum();
        assert_eq!(left_bytes, self.wanted_left_bytes);
        for p in &self.partials {
            assert_eq!(self.state[p.piece as usize], PieceState::InProgress);
            let free = p.blocks.iter().filter(|b| **b == BlockState::Free).count();
            let recv = p
                .blocks
                .iter()
                .filter(|b| matches!(b, BlockState::Received(_)))
                .count();
            assert_eq!(free as u32, p.free);
            assert_eq!(recv as u32, p.received);
        }
    }
}

#[cfg(test)]
#[path = "picker_tests.rs"]
mod tests;
