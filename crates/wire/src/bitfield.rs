//! Which pieces a peer has, as sent in the `bitfield` message.

use std::fmt;

use crate::WireError;

/// One bit per piece, most significant bit first (BEP 3): piece 0 is the high
/// bit of byte 0. The spare bits after the last piece are always zero.
///
/// ```
/// use rivulet_wire::Bitfield;
///
/// let mut have = Bitfield::new(10);
/// assert!(have.set(0));
/// assert!(have.set(9));
/// assert!(!have.set(9)); // already set
/// assert!(!have.set(10)); // out of range: ignored
/// assert_eq!(have.as_bytes(), &[0x80, 0x40]);
/// assert_eq!(have.count_ones(), 2);
///
/// // A peer's bitfield must have the right length and zero spare bits.
/// assert!(Bitfield::from_bytes(&[0xff, 0xc0], 10).unwrap().all());
/// assert!(Bitfield::from_bytes(&[0xff, 0xe0], 10).is_err());
/// assert!(Bitfield::from_bytes(&[0xff], 10).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: usize,
}

impl Bitfield {
    /// `len` pieces, none set.
    #[must_use]
    pub fn new(len: usize) -> Self {
        Bitfield {
            bytes: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// `len` pieces, all set (a seed; what BEP 6 `have all` means).
    #[must_use]
    pub fn full(len: usize) -> Self {
        let mut bytes = vec![0xff; len.div_ceil(8)];
        if let Some(last) = bytes.last_mut() {
            *last &= last_byte_mask(len);
        }
        Bitfield { bytes, len }
    }

    /// Checks a peer's bitfield for a torrent of `len` pieces.
    ///
    /// # Errors
    ///
    /// [`WireError::BitfieldLength`] unless `bytes` is exactly
    /// `ceil(len / 8)` bytes; [`WireError::BitfieldSpareBits`] if any bit after
    /// the last piece is set (libtorrent disconnects such peers too).
    pub fn from_bytes(bytes: &[u8], len: usize) -> Result<Self, WireError> {
        let expected = len.div_ceil(8);
        if bytes.len() != expected {
            return Err(WireError::BitfieldLength {
                expected,
                actual: bytes.len(),
            });
        }
        if let Some(last) = bytes.last() {
            if last & !last_byte_mask(len) != 0 {
                return Err(WireError::BitfieldSpareBits);
            }
        }
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len,
        })
    }

    /// The number of pieces (bits), not bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no pieces at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether piece `index` is set; `false` for an index out of range.
    #[must_use]
    pub fn get(&self, index: usize) -> bool {
        if index >= self.len {
            return false;
        }
        self.bytes
            .get(index / 8)
            .is_some_and(|b| b & bit(index) != 0)
    }

    /// Sets piece `index`. Returns whether the bit changed: `false` if it was
    /// set already or `index` is out of range (then nothing happens; a `have`
    /// from a peer must be range-checked by the caller anyway).
    pub fn set(&mut self, index: usize) -> bool {
        if index >= self.len {
            return false;
        }
        match self.bytes.get_mut(index / 8) {
            Some(b) if *b & bit(index) == 0 => {
                *b |= bit(index);
                true
            }
            _ => false,
        }
    }

    /// Clears piece `index`. Returns whether the bit changed: `false` if it was
    /// clear already or `index` is out of range.
    pub fn clear(&mut self, index: usize) -> bool {
        if index >= self.len {
            return false;
        }
        match self.bytes.get_mut(index / 8) {
            Some(b) if *b & bit(index) != 0 => {
                *b &= !bit(index);
                true
            }
            _ => false,
        }
    }

    /// How many pieces are set.
    #[must_use]
    pub fn count_ones(&self) -> usize {
        // Spare bits are always zero, so counting whole bytes is exact. Eight
        // bytes at a time; the remainder byte by byte.
        let chunks = self.bytes.chunks_exact(8);
        let tail: usize = chunks
            .remainder()
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum();
        chunks
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()).count_ones() as usize)
            .sum::<usize>()
            + tail
    }

    /// Whether every piece is set (true for an empty bitfield).
    #[must_use]
    pub fn all(&self) -> bool {
        self.count_ones() == self.len
    }

    /// Whether no piece is set.
    #[must_use]
    pub fn none(&self) -> bool {
        self.bytes.iter().all(|&b| b == 0)
    }

    /// Indices of the set pieces, in increasing order.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.bytes.iter().enumerate().flat_map(|(i, &b)| {
            (0..8)
                .filter(move |j| b & (0x80 >> j) != 0)
                .map(move |j| i * 8 + j)
        })
    }

    /// The bytes as sent in a `bitfield` message.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, consuming the bitfield.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl fmt::Debug for Bitfield {
    /// `Bitfield(3/10: 1000000001)` — counts, and the bits for short fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bitfield({}/{}", self.count_ones(), self.len)?;
        if self.len <= 64 {
            f.write_str(": ")?;
            for i in 0..self.len {
                f.write_str(if self.get(i) { "1" } else { "0" })?;
            }
        }
        f.write_str(")")
    }
}

/// The mask of the bit for piece `index` within its byte.
fn bit(index: usize) -> u8 {
    0x80 >> (index % 8)
}

/// The bits of the last byte that belong to pieces, for `len` pieces.
fn last_byte_mask(len: usize) -> u8 {
    match len % 8 {
        0 => 0xff,
        r => !(0xff >> r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msb_first() {
        let mut b = Bitfield::new(17);
        assert_eq!(b.as_bytes().len(), 3);
        assert!(b.set(0) && b.set(7) && b.set(8) && b.set(16));
        assert_eq!(b.as_bytes(), &[0x81, 0x80, 0x80]);
        assert!(b.get(16) && !b.get(15) && !b.get(17) && !b.get(usize::MAX));
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![0, 7, 8, 16]);
        assert!(b.clear(7));
        assert!(!b.clear(7));
        assert!(!b.clear(100));
        assert_eq!(b.count_ones(), 3);
        assert!(!b.all() && !b.none());
        assert_eq!(format!("{b:?}"), "Bitfield(3/17: 10000000100000001)");
    }

    #[test]
    fn full_and_empty() {
        for n in 0..40 {
            let f = Bitfield::full(n);
            assert!(f.all(), "{n}");
            assert_eq!(f.count_ones(), n);
            assert_eq!(Bitfield::from_bytes(f.as_bytes(), n), Ok(f.clone()));
            let e = Bitfield::new(n);
            assert!(e.none());
            assert_eq!(e.all(), n == 0);
        }
        assert_eq!(Bitfield::full(12).as_bytes(), &[0xff, 0xf0]);
    }

    #[test]
    fn from_bytes_checks() {
        assert_eq!(
            Bitfield::from_bytes(&[0; 3], 16),
            Err(WireError::BitfieldLength {
                expected: 2,
                actual: 3
            })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0x00, 0x01], 15),
            Err(WireError::BitfieldSpareBits)
        );
        assert!(Bitfield::from_bytes(&[0x00, 0x02], 15).is_ok());
        assert!(Bitfield::from_bytes(&[], 0).is_ok());
        assert!(Bitfield::from_bytes(&[0], 0).is_err());
    }

    #[test]
    fn count_ones_large() {
        let mut b = Bitfield::new(1000);
        for i in (0..1000).step_by(3) {
            b.set(i);
        }
        assert_eq!(b.count_ones(), 334);
        assert_eq!(b.ones().count(), 334);
    }
}
