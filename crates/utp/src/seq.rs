//! Sequence-number arithmetic: 16-bit numbers that wrap, compared within
//! half the number space (as BEP 29 implementations do).

/// Whether `a` comes before `b` (wrapping).
pub fn lt(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

/// Whether `a` comes before or is `b` (wrapping).
pub fn le(a: u16, b: u16) -> bool {
    a == b || lt(a, b)
}

/// How far `b` is after `a` (wrapping; meaningful when `le(a, b)`).
pub fn dist(a: u16, b: u16) -> u16 {
    b.wrapping_sub(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(lt(1, 2));
        assert!(!lt(2, 2));
        assert!(lt(0xfffe, 1));
        assert!(!lt(1, 0xfffe));
        assert!(le(5, 5));
        assert_eq!(dist(0xffff, 2), 3);
    }
}
