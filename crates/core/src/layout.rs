//! Where each piece's bytes live: the mapping between the torrent's byte stream
//! (all files concatenated in order) and (file, offset, length) spans.

use std::ops::Range;

/// A run of bytes inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpan {
    /// Index of the file in the torrent's file list.
    pub file: usize,
    /// Offset of the first byte within that file.
    pub offset: u64,
    /// Number of bytes (never 0).
    pub len: u64,
}

/// Why a layout cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A piece length of 0.
    #[error("piece length is 0")]
    ZeroPieceLength,
    /// File lengths that add up to more than 2^64 - 1 bytes.
    #[error("file lengths add up to more than 2^64 bytes")]
    TooLarge,
}

/// Piece and file geometry of a torrent. Cheap to query: locating a byte is a
/// binary search over file start offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    piece_length: u64,
    total_length: u64,
    /// Start offset of each file in the concatenated stream.
    starts: Vec<u64>,
    /// End offset (exclusive) of each file, for binary search.
    ends: Vec<u64>,
    lengths: Vec<u64>,
}

impl FileLayout {
    /// A layout for files of the given lengths, in torrent order.
    pub fn new(
        piece_length: u64,
        lengths: impl IntoIterator<Item = u64>,
    ) -> Result<Self, LayoutError> {
        if piece_length == 0 {
            return Err(LayoutError::ZeroPieceLength);
        }
        let lengths: Vec<u64> = lengths.into_iter().collect();
        let mut starts = Vec::with_capacity(lengths.len());
        let mut ends = Vec::with_capacity(lengths.len());
        let mut total: u64 = 0;
        for len in &lengths {
            starts.push(total);
            total = total.checked_add(*len).ok_or(LayoutError::TooLarge)?;
            ends.push(total);
        }
        Ok(FileLayout {
            piece_length,
            total_length: total,
            starts,
            ends,
            lengths,
        })
    }

    /// The nominal piece length (every piece but the last has it).
    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    /// Sum of all file lengths.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Number of files, zero-length ones included.
    pub fn num_files(&self) -> usize {
        self.lengths.len()
    }

    /// Length of file `file`, or `None` if there is no such file.
    pub fn file_length(&self, file: usize) -> Option<u64> {
        self.lengths.get(file).copied()
    }

    /// Offset of file `file`'s first byte in the concatenated stream.
    pub fn file_start(&self, file: usize) -> Option<u64> {
        self.starts.get(file).copied()
    }

    /// Number of pieces: the total length divided by the piece length, rounded up.
    pub fn num_pieces(&self) -> u64 {
        self.total_length.div_ceil(self.piece_length)
    }

    /// Length of piece `piece` (the last one may be short); `None` past the end.
    pub fn piece_len(&self, piece: u64) -> Option<u64> {
        let start = piece.checked_mul(self.piece_length)?;
        if start >= self.total_length {
            return None;
        }
        Some((self.total_length - start).min(self.piece_length))
    }

    /// Byte range of piece `piece` in the concatenated stream.
    pub fn piece_range(&self, piece: u64) -> Option<Range<u64>> {
        let len = self.piece_len(piece)?;
        let start = piece * self.piece_length;
        Some(start..start + len)
    }

    /// The file spans holding piece `piece`, in order; `None` past the end.
    pub fn piece_spans(&self, piece: u64) -> Option<Spans<'_>> {
        let range = self.piece_range(piece)?;
        self.spans(range.start, range.end - range.start)
    }

    /// The file spans holding `len` bytes at `begin` within piece `piece` (a block);
    /// `None` if the block does not lie wholly inside the piece.
    pub fn block_spans(&self, piece: u64, begin: u64, len: u64) -> Option<Spans<'_>> {
        let range = self.piece_range(piece)?;
        let end = begin.checked_add(len)?;
        if end > range.end - range.start {
            return None;
        }
        self.spans(range.start + begin, len)
    }

    /// The file spans holding `len` bytes at `offset` of the concatenated stream;
    /// `None` if that runs past the end. Zero-length files never appear in spans.
    pub fn spans(&self, offset: u64, len: u64) -> Option<Spans<'_>> {
        if offset.checked_add(len)? > self.total_length {
            return None;
        }
        // The first file that ends after `offset` (zero-length files end where they
        // start, so they are skipped here and in `Spans::next`).
        let file = self.ends.partition_point(|end| *end <= offset);
        Some(Spans {
            layout: self,
            file,
            offset,
            remaining: len,
        })
    }

    /// The pieces that hold at least one byte of file `file` (empty for a
    /// zero-length file).
    pub fn file_pieces(&self, file: usize) -> Option<Range<u64>> {
        let start = self.file_start(file)?;
        let len = self.file_length(file)?;
        if len == 0 {
            let p = start / self.piece_length;
            return Some(p..p);
        }
        Some(start / self.piece_length..(start + len - 1) / self.piece_length + 1)
    }
}

/// Iterator over the file spans of a byte range; see [`FileLayout::spans`].
#[derive(Debug, Clone)]
pub struct Spans<'a> {
    layout: &'a FileLayout,
    file: usize,
    offset: u64,
    remaining: u64,
}

impl Iterator for Spans<'_> {
    type Item = FileSpan;

    fn next(&mut self) -> Option<FileSpan> {
        while self.remaining > 0 {
            let start = *self.layout.starts.get(self.file)?;
            let len = *self.layout.lengths.get(self.file)?;
            if self.offset >= start + len {
                self.file += 1;
                continue;
            }
            let within = self.offset - start;
            let take = (len - within).min(self.remaining);
            let span = FileSpan {
                file: self.file,
                offset: within,
                len: take,
            };
            self.offset += take;
            self.remaining -= take;
            self.file += 1;
            return Some(span);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn spans(l: &FileLayout, piece: u64) -> Vec<(usize, u64, u64)> {
        l.piece_spans(piece)
            .unwrap()
            .map(|s| (s.file, s.offset, s.len))
            .collect()
    }

    #[test]
    fn piece_spanning_many_files_and_zero_length_files() {
        // files: 10, 0, 3, 0, 20 bytes; pieces of 16 bytes.
        let l = FileLayout::new(16, [10, 0, 3, 0, 20]).unwrap();
        assert_eq!(l.total_length(), 33);
        assert_eq!(l.num_pieces(), 3);
        assert_eq!(spans(&l, 0), vec![(0, 0, 10), (2, 0, 3), (4, 0, 3)]);
        assert_eq!(spans(&l, 1), vec![(4, 3, 16)]);
        assert_eq!(spans(&l, 2), vec![(4, 19, 1)]);
        assert_eq!(l.piece_len(2), Some(1));
        assert!(l.piece_spans(3).is_none());
        assert_eq!(l.file_pieces(0), Some(0..1));
        assert_eq!(l.file_pieces(1), Some(0..0));
        assert_eq!(l.file_pieces(4), Some(0..3));
        let block: Vec<_> = l.block_spans(0, 8, 4).unwrap().collect();
        assert_eq!(
            block,
            vec![
                FileSpan {
                    file: 0,
                    offset: 8,
                    len: 2
                },
                FileSpan {
                    file: 2,
                    offset: 0,
                    len: 2
                }
            ]
        );
        assert!(l.block_spans(2, 0, 2).is_none());
        assert!(l.block_spans(0, u64::MAX, 2).is_none());
    }

    #[test]
    fn errors() {
        assert_eq!(FileLayout::new(0, [1]), Err(LayoutError::ZeroPieceLength));
        assert_eq!(
            FileLayout::new(1, [u64::MAX, 1]),
            Err(LayoutError::TooLarge)
        );
    }

    proptest! {
        #[test]
        fn pieces_cover_every_file_byte_exactly_once(
            lengths in prop::collection::vec(prop_oneof![Just(0u64), 0u64..100, 0u64..5000], 1..12),
            piece_length in 1u64..3000,
        ) {
            let l = FileLayout::new(piece_length, lengths.clone()).unwrap();
            let mut next = vec![0u64; lengths.len()];
            let mut total = 0;
            for p in 0..l.num_pieces() {
                let mut piece_total = 0;
                for s in l.piece_spans(p).unwrap() {
                    prop_assert!(s.len > 0);
                    prop_assert_eq!(s.offset, next[s.file], "spans are contiguous in file order");
                    next[s.file] += s.len;
                    prop_assert!(next[s.file] <= lengths[s.file]);
                    piece_total += s.len;
                }
                prop_assert_eq!(Some(piece_total), l.piece_len(p));
                total += piece_total;
            }
            prop_assert_eq!(next, lengths.clone());
            prop_assert_eq!(total, lengths.iter().sum::<u64>());
            for (f, len) in lengths.iter().enumerate() {
                let pieces = l.file_pieces(f).unwrap();
                if *len > 0 {
                    for p in pieces.clone() {
                        prop_assert!(l.piece_spans(p).unwrap().any(|s| s.file == f));
                    }
                } else {
                    prop_assert!(pieces.is_empty());
                }
            }
        }

        #[test]
        fn block_spans_sum_to_block(
            lengths in prop::collection::vec(0u64..5000, 1..8),
            piece_length in 1u64..3000,
            piece in any::<prop::sample::Index>(),
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
        ) {
            let l = FileLayout::new(piece_length, lengths).unwrap();
            prop_assume!(l.num_pieces() > 0);
            let piece = piece.index(l.num_pieces() as usize) as u64;
            let plen = l.piece_len(piece).unwrap() as usize;
            let (x, y) = (a.index(plen + 1) as u64, b.index(plen + 1) as u64);
            let (begin, end) = (x.min(y), x.max(y));
            let sum: u64 = l.block_spans(piece, begin, end - begin).unwrap().map(|s| s.len).sum();
            prop_assert_eq!(sum, end - begin);
            prop_assert!(l.block_spans(piece, begin, plen as u64 - begin + 1).is_none());
        }
    }
}
