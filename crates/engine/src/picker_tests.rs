use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

/// A picker for `n` pieces of 32 KiB (2 blocks each), the last one 16 KiB + 1 byte.
fn picker(n: u32, have: &[u32]) -> PiecePicker {
    let total = u64::from(n - 1) * 32768 + 16385;
    PiecePicker::new(32768, total, |p| have.contains(&p), &mut rng())
}

fn all(_: u32) -> bool {
    true
}

#[test]
fn geometry() {
    let p = picker(4, &[]);
    assert_eq!(p.num_pieces(), 4);
    assert_eq!(p.piece_len(0), 32768);
    assert_eq!(p.piece_len(3), 16385);
    assert_eq!(p.blocks_in(3), 2);
    assert_eq!(
        p.block_at(3, 1),
        Block {
            piece: 3,
            begin: 16384,
            len: 1
        }
    );
}

#[test]
fn rarest_first_after_random_start() {
    let mut p = picker(10, &[0, 1, 2, 3]); // random start is over
    p.add_peer_pieces([4, 5, 6, 7, 8, 9]);
    p.add_peer_pieces([4, 5, 6, 7, 8]);
    p.add_peer_pieces([4, 5, 6, 7]);
    p.add_peer_pieces([4, 5, 6]);
    p.check_invariants();
    // Piece 9 has one peer, 8 has two, ...
    let got = p.pick(1, all, 2, &mut rng());
    assert_eq!(got.iter().map(|b| b.piece).collect::<Vec<_>>(), vec![9, 9]);
    let got = p.pick(1, all, 2, &mut rng());
    assert_eq!(got.iter().map(|b| b.piece).collect::<Vec<_>>(), vec![8, 8]);
    // A peer without 8 and 9 gets the next rarest it has.
    let got = p.pick(2, |x| x < 8, 1, &mut rng());
    assert_eq!(got[0].piece, 7);
    p.check_invariants();
}

#[test]
fn ties_are_broken_randomly() {
    let firsts: std::collections::HashSet<u32> = (0..20)
        .map(|seed| {
            let mut r = StdRng::seed_from_u64(seed);
            let mut p = PiecePicker::new(32768, 100 * 32768, |p| p < 4, &mut r);
            p.add_seed();
            p.pick(1, all, 1, &mut r)[0].piece
        })
        .collect();
    assert!(firsts.len() > 5, "always the same piece: {firsts:?}");
}

#[test]
fn random_start_picks_scattered_pieces() {
    let firsts: std::collections::HashSet<u32> = (0..20)
        .map(|seed| {
            let mut r = StdRng::seed_from_u64(seed);
            let mut p = PiecePicker::new(32768, 100 * 32768, |_| false, &mut r);
            // Rarest would be piece 99 (nobody else has it... every peer has all
            // but it): random start ignores rarity.
            p.add_peer_pieces(0..99);
            p.pick(1, all, 1, &mut r)[0].piece
        })
        .collect();
    assert!(firsts.len() > 5, "{firsts:?}");
}

#[test]
fn partial_pieces_are_finished_first() {
    let mut p = picker(10, &[0, 1, 2, 3]);
    p.add_seed();
    let a = p.pick(1, all, 1, &mut rng());
    assert_eq!(a.len(), 1);
    // Peer 1 drops the request (choked); peer 2 must get that piece's blocks first.
    p.on_request_dropped(a[0], 1);
    let b = p.pick(2, all, 2, &mut rng());
    assert!(b.iter().all(|x| x.piece == a[0].piece), "{a:?} {b:?}");
    p.check_invariants();
}

#[test]
fn each_peer_keeps_to_its_own_piece() {
    // Pieces of 4 blocks; 4 random-start pieces already had.
    let mut p = PiecePicker::new(
        4 * BLOCK_LEN,
        40 * u64::from(BLOCK_LEN),
        |i| i < 4,
        &mut rng(),
    );
    p.add_seed();
    let mut r = rng();
    let a = p.pick(1, all, 2, &mut r);
    let b = p.pick(2, all, 2, &mut r);
    // Peer 2 starts another piece rather than join peer 1's.
    assert!(b.iter().all(|x| x.piece != a[0].piece), "{a:?} {b:?}");
    // Peer 1 goes on with its own piece before anything else.
    let a2 = p.pick(1, all, 2, &mut r);
    assert!(a2.iter().all(|x| x.piece == a[0].piece), "{a:?} {a2:?}");
    // With no room for another piece, a peer helps with one in progress.
    p.set_max_in_progress(2);
    let c = p.pick(3, all, 1, &mut r);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].piece, b[0].piece, "{b:?} {c:?}");
    p.check_invariants();
}

#[test]
fn full_download_with_verification_and_failure() {
    let mut p = picker(5, &[]);
    p.add_seed();
    let mut r = rng();
    let mut failed_once = false;
    while !p.is_complete() {
        let blocks = p.pick(1, all, 3, &mut r);
        assert!(!blocks.is_empty());
        for b in blocks {
            match p.on_block_received(b, 1) {
                Received::New {
                    piece_complete: true,
                    ..
                } => {
                    if !failed_once {
                        failed_once = true;
                        assert_eq!(p.on_piece_failed(b.piece), vec![(1, 2)]);
                    } else {
                        p.on_piece_verified(b.piece);
                    }
                }
                Received::New { .. } => {}
                other => panic!("{other:?}"),
            }
            p.check_invariants();
        }
    }
    assert_eq!(p.have_count(), 5);
    assert!(p.pick(1, all, 3, &mut r).is_empty());
}

#[test]
fn end_game_duplicates_and_cancels() {
    let mut p = picker(2, &[]);
    p.add_seed();
    let mut r = rng();
    let first = p.pick(1, all, 10, &mut r);
    assert_eq!(first.len(), 4);
    assert!(p.in_end_game());
    // Peer 2 gets the same blocks as duplicates.
    let dup = p.pick(2, all, 10, &mut r);
    assert_eq!(dup.len(), 4);
    // Nothing more for peer 1 (already asked for all of them).
    assert!(p.pick(1, all, 10, &mut r).is_empty());
    // Peer 2's copy arrives first: cancel peer 1's request.
    assert_eq!(
        p.on_block_received(dup[0], 2),
        Received::New {
            cancel: vec![1],
            piece_complete: false
        }
    );
    assert_eq!(p.on_block_received(dup[0], 1), Received::Duplicate);
    // The other three blocks have two requesters each: a third peer gets
    // none of them.
    assert!(p.pick(3, all, 10, &mut r).is_empty());
    p.check_invariants();
}

#[test]
fn dropped_requests_return_to_pool() {
    let mut p = picker(6, &[0, 1, 2, 3]);
    p.add_seed();
    let mut r = rng();
    let got = p.pick(1, all, 4, &mut r);
    assert_eq!(got.len(), 4);
    p.on_peer_requests_dropped(1);
    p.check_invariants();
    let again = p.pick(2, all, 4, &mut r);
    let mut a = got.clone();
    let mut b = again.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn invalid_blocks_are_refused_without_panic() {
    let mut p = picker(4, &[]);
    p.add_seed();
    let b = p.pick(1, all, 1, &mut rng())[0];
    for bad in [
        Block { begin: 1, ..b },
        Block { len: 5, ..b },
        Block {
            begin: u32::MAX - 5,
            ..b
        },
        Block {
            begin: 16384 * 1000,
            ..b
        },
        Block {
            piece: u32::MAX,
            ..b
        },
        Block {
            piece: (b.piece + 1) % 4,
            ..b
        },
    ] {
        assert_eq!(p.on_block_received(bad, 1), Received::Invalid, "{bad:?}");
    }
    p.on_request_dropped(
        Block {
            piece: u32::MAX,
            begin: u32::MAX,
            len: 0,
        },
        1,
    );
    p.peer_has(u32::MAX);
    p.check_invariants();
}

#[test]
fn in_progress_limit_bounds_memory() {
    let mut p = picker(100, &[]);
    p.add_seed();
    p.set_max_in_progress(3);
    let mut r = rng();
    for peer in 0..10 {
        p.pick(peer, all, 100, &mut r);
    }
    assert_eq!(p.in_progress().count(), 3);
}

#[test]
fn unwanted_pieces_are_never_started_and_done_comes_before_complete() {
    let mut p = picker(8, &[0, 1, 2, 3]);
    p.add_seed();
    p.set_priorities(&[4, 4, 4, 4, 4, 0, 0, 4]);
    p.check_invariants();
    assert!(!p.is_done());
    let mut got = Vec::new();
    loop {
        let blocks = p.pick(1, all, 4, &mut rng());
        if blocks.is_empty() {
            break;
        }
        for b in blocks {
            got.push(b.piece);
            if let Received::New {
                piece_complete: true,
                ..
            } = p.on_block_received(b, 1)
            {
                p.on_piece_verified(b.piece);
            }
        }
    }
    got.dedup();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, vec![4, 7]);
    assert!(p.is_done());
    assert!(!p.is_complete());
    assert!(!p.in_end_game());
    // A peer with only unwanted pieces is of no interest.
    assert!(!p.is_interesting(|x| x == 5 || x == 6));
    // Wanted again: fetched.
    p.set_priorities(&[4; 8]);
    p.check_invariants();
    assert!(!p.is_done());
    assert!(p.is_interesting(|x| x == 5));
    let got = p.pick(1, all, 4, &mut rng());
    assert!(got.iter().all(|b| b.piece == 5 || b.piece == 6));
    assert!(!got.is_empty());
}

#[test]
fn higher_priorities_are_started_first() {
    let mut p = picker(10, &[0, 1, 2, 3]);
    p.add_peer_pieces(4..10);
    p.add_peer_pieces(4..6); // 4 and 5 are the most common
    p.set_priorities(&[4, 4, 4, 4, 7, 1, 4, 4, 4, 4]);
    p.check_invariants();
    // The high one first though common, then the normal ones (rarest
    // first), the low one last.
    let mut order = Vec::new();
    for _ in 0..6 {
        let got = p.pick(1, all, 2, &mut rng());
        order.push(got[0].piece);
    }
    assert_eq!(order[0], 4);
    assert_eq!(order[5], 5);
    // Without the high piece, the peer gets normal ones.
    let mut q = picker(10, &[0, 1, 2, 3]);
    q.set_priorities(&[4, 4, 4, 4, 7, 4, 4, 4, 4, 4]);
    let got = q.pick(1, |x| x != 4, 2, &mut rng());
    assert!(got.iter().all(|b| b.piece != 4 && b.piece >= 5));
}

#[test]
fn a_piece_shared_with_a_wanted_file_is_wanted() {
    // Pieces of 4 bytes; files of 6, 2 (padding), 5 and 3 bytes:
    // piece 0 = file 0; piece 1 = file 0 + padding; piece 2 = file 2;
    // piece 3 = file 2 + file 3.
    let layout = rivulet_core::FileLayout::new(4, [6, 2, 5, 3]).unwrap();
    let stored = |f: usize| f != 1;
    assert_eq!(
        piece_priorities(&layout, &[0, 7, 4, 0], stored),
        vec![0, 0, 4, 4]
    );
    assert_eq!(
        piece_priorities(&layout, &[1, 0, 0, 7], stored),
        vec![1, 1, 0, 7]
    );
    // Files without an entry are normal.
    assert_eq!(piece_priorities(&layout, &[], stored), vec![4; 4]);
}

#[test]
fn interest() {
    let p = picker(4, &[0, 1]);
    assert!(!p.is_interesting(|x| x < 2));
    assert!(p.is_interesting(|x| x == 3));
    assert_eq!(p.next_wanted(3, |x| x == 2 || x == 3), Some(3));
    assert_eq!(p.next_wanted(4, |x| x == 2 || x == 3), Some(2));
    assert_eq!(p.next_wanted(9, |x| x < 2), None);
}

#[derive(Debug, Clone)]
enum Op {
    Join(Vec<bool>),
    Leave(usize),
    Have(usize, u32),
    Pick(usize, usize),
    Arrive(usize),
    Drop(usize),
    Gone(usize),
    Prio(Vec<u8>),
}

fn op(n: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::collection::vec(any::<bool>(), n as usize).prop_map(Op::Join),
        (0usize..8).prop_map(Op::Leave),
        (0usize..8, 0..n).prop_map(|(a, b)| Op::Have(a, b)),
        (0usize..8, 1usize..6).prop_map(|(a, b)| Op::Pick(a, b)),
        (0usize..64).prop_map(Op::Arrive),
        (0usize..64).prop_map(Op::Drop),
        (0usize..8).prop_map(Op::Gone),
        prop::collection::vec(0u8..=MAX_PRIORITY, n as usize).prop_map(Op::Prio),
    ]
}

/// Peer 99 (a seed) delivers every block picked until `enough`.
fn from_the_seed_until(
    p: &mut PiecePicker,
    r: &mut StdRng,
    enough: impl Fn(&PiecePicker) -> bool,
) -> Result<(), TestCaseError> {
    let mut rounds = 0;
    while !enough(p) {
        rounds += 1;
        prop_assert!(rounds < 1000);
        let got = p.pick(99, |_| true, 8, r);
        prop_assert!(!got.is_empty());
        for b in got {
            if let Received::New {
                piece_complete: true,
                ..
            } = p.on_block_received(b, 99)
            {
                p.on_piece_verified(b.piece);
            }
        }
    }
    Ok(())
}

proptest! {
    /// Random swarms: the picker's internal bookkeeping stays consistent, no block
    /// is handed to two peers outside end-game, every block handed out belongs to a
    /// piece the peer has, and with one seed left at the end the download completes.
    #[test]
    fn random_swarm_events(seed in any::<u64>(), ops in prop::collection::vec(op(12), 1..200)) {
        let n = 12u32;
        let mut r = StdRng::seed_from_u64(seed);
        let mut p = PiecePicker::new(32768, u64::from(n) * 32768 - 100, |_| false, &mut r);
        let mut peers: Vec<Option<Vec<bool>>> = vec![None; 8];
        let mut outstanding: Vec<(usize, Block)> = Vec::new();
        for o in ops {
            match o {
                Op::Join(bits) => {
                    if let Some(slot) = peers.iter().position(Option::is_none) {
                        p.add_peer_pieces((0..n).filter(|i| bits[*i as usize]));
                        peers[slot] = Some(bits);
                    }
                }
                Op::Leave(i) | Op::Gone(i) => {
                    if let Some(bits) = peers[i].take() {
                        p.remove_peer_pieces((0..n).filter(|x| bits[*x as usize]));
                        p.on_peer_requests_dropped(i as u32);
                        outstanding.retain(|(q, _)| *q != i);
                    }
                }
                Op::Have(i, piece) => {
                    if let Some(bits) = &mut peers[i] {
                        if !bits[piece as usize] {
                            bits[piece as usize] = true;
                            p.peer_has(piece);
                        }
                    }
                }
                Op::Pick(i, want) => {
                    if let Some(bits) = peers[i].clone() {
                        let end_game = p.in_end_game();
                        let started: Vec<u32> = p.in_progress().collect();
                        let got = p.pick(i as u32, |x| bits[x as usize], want, &mut r);
                        prop_assert!(got.len() <= want);
                        for b in got {
                            prop_assert!(bits[b.piece as usize]);
                            prop_assert!(!p.have(b.piece));
                            prop_assert!(p.priority(b.piece) > 0 || started.contains(&b.piece), "an unwanted piece started");
                            let dup = outstanding.iter().any(|(_, x)| *x == b);
                            prop_assert!(!dup || end_game || p.in_end_game(), "duplicate outside end-game");
                            prop_assert!(!outstanding.contains(&(i, b)), "same block twice to one peer");
                            outstanding.push((i, b));
                        }
                    }
                }
                Op::Arrive(k) => {
                    if !outstanding.is_empty() {
                        let (i, b) = outstanding.remove(k % outstanding.len());
                        if let Received::New { cancel, piece_complete } = p.on_block_received(b, i as u32) {
                            for c in cancel {
                                outstanding.retain(|(q, x)| !(*q == c as usize && *x == b));
                            }
                            if piece_complete {
                                p.on_piece_verified(b.piece);
                                outstanding.retain(|(_, x)| x.piece != b.piece);
                            }
                        }
                    }
                }
                Op::Prio(prio) => p.set_priorities(&prio),
                Op::Drop(k) => {
                    if !outstanding.is_empty() {
                        let (i, b) = outstanding.remove(k % outstanding.len());
                        p.on_request_dropped(b, i as u32);
                    }
                }
            }
            p.check_invariants();
        }
        // Everyone leaves, one seed finishes the job.
        for (i, slot) in peers.iter_mut().enumerate() {
            if let Some(bits) = slot.take() {
                p.remove_peer_pieces((0..n).filter(|x| bits[*x as usize]));
                p.on_peer_requests_dropped(i as u32);
            }
        }
        for piece in 0..n {
            prop_assert_eq!(p.availability(piece), 0);
        }
        p.add_seed();
        // What is wanted gets done first; then everything, once wanted.
        from_the_seed_until(&mut p, &mut r, PiecePicker::is_done)?;
        for piece in 0..n {
            prop_assert!(p.have(piece) || p.priority(piece) == 0);
        }
        p.set_priorities(&[]);
        from_the_seed_until(&mut p, &mut r, PiecePicker::is_complete)?;
        p.check_invariants();
    }
}
