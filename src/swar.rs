//! Byte searches a machine word at a time, inlined where they are used. The parse path
//! searches many short stretches (a record's lines, a message between two `\n` escapes):
//! too short for a vector search to win back its call and dispatch, too many to go byte
//! by byte.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The bytes of `word` equal to `byte`, each marked by its high bit. The lowest mark is
/// exact; marks above it may be spurious (the subtraction's borrow), so a caller reads
/// only the lowest, with [`first_mark`].
#[inline]
pub(crate) fn marks_of_byte(word: u64, byte: u8) -> u64 {
    let zeroed = word ^ (ONES * u64::from(byte));
    zeroed.wrapping_sub(ONES) & !zeroed & HIGH
}

/// The bytes of `word` below `bound` (at most 0x80), marked as by [`marks_of_byte`].
#[inline]
pub(crate) fn marks_below(word: u64, bound: u8) -> u64 {
    debug_assert!(bound <= 0x80);
    word.wrapping_sub(ONES * u64::from(bound)) & !word & HIGH
}

/// The index in its word (read little-endian) of the lowest marked byte; 8 when none is.
#[inline]
pub(crate) fn first_mark(marks: u64) -> usize {
    marks.trailing_zeros() as usize / 8
}

/// Where `byte` first occurs in `haystack`.
#[inline]
pub(crate) fn find_byte(haystack: &[u8], byte: u8) -> Option<usize> {
    let mut at = 0;
    while let Some(chunk) = haystack.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let marks = marks_of_byte(u64::from_le_bytes(*chunk), byte);
        if marks != 0 {
            return Some(at + first_mark(marks));
        }
        at += 8;
    }
    haystack
        .get(at..)?
        .iter()
        .position(|&candidate| candidate == byte)
        .map(|tail| at + tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn finds_what_a_plain_search_finds(haystack in proptest::collection::vec(any::<u8>(), 0..40), byte in any::<u8>()) {
            prop_assert_eq!(find_byte(&haystack, byte), haystack.iter().position(|&b| b == byte));
            for chunk in haystack.chunks_exact(8) {
                let word = u64::from_le_bytes(chunk.try_into().unwrap());
                let first_below = chunk.iter().position(|&b| b < 0x20).unwrap_or(8);
                prop_assert_eq!(first_mark(marks_below(word, 0x20)), first_below);
            }
        }
    }

    #[test]
    fn finds_bytes_that_borrow_would_fake() {
        // 0x01 next to the target: the subtraction's borrow marks it too, above the true mark.
        let haystack = [b'a', 0x5c, 0x5d, 0x01, b'a', b'a', b'a', b'a', b'a'];
        assert_eq!(find_byte(&haystack, 0x5c), Some(1));
        assert_eq!(find_byte(&haystack, 0x01), Some(3));
        assert_eq!(find_byte(&haystack[4..], 0x5c), None);
    }
}
