//! Byte searches sixteen bytes at a time, then a machine word at a time, inlined where
//! they are used. The parse path searches many short stretches (a record's lines, a
//! message between two `\n` escapes): too short for a vector search *call* to win back
//! its call and dispatch, too many to go byte by byte. So the vectors are inline: `wide`'s
//! 16-byte types compile to SSE2 on x86-64 and NEON on arm64, both always present, with
//! no run-time dispatch and no `unsafe` here.

use wide::u8x16;

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
    let wanted = u8x16::splat(byte);
    find_marked(
        haystack,
        |chunk| chunk.simd_eq(wanted),
        |word| marks_of_byte(word, byte),
        |candidate| candidate == byte,
    )
}

/// Where `first` or `second` first occurs in `haystack`: one pass where two searches
/// would read the bytes before the nearer one twice.
#[inline]
pub(crate) fn find_either_byte(haystack: &[u8], first: u8, second: u8) -> Option<usize> {
    // Marks are only spurious above a true match, so the lowest of either is exact.
    let (first_wanted, second_wanted) = (u8x16::splat(first), u8x16::splat(second));
    find_marked(
        haystack,
        |chunk| chunk.simd_eq(first_wanted) | chunk.simd_eq(second_wanted),
        |word| marks_of_byte(word, first) | marks_of_byte(word, second),
        |candidate| candidate == first || candidate == second,
    )
}

/// The first byte that `lanes` marks in a 16-byte chunk (`marks` says the same of a
/// word, `matches` of a byte: what is left at the end).
#[inline]
fn find_marked(
    haystack: &[u8],
    lanes: impl Fn(u8x16) -> u8x16,
    marks: impl Fn(u64) -> u64,
    matches: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut at = 0;
    while let Some(chunk) = haystack.get(at..).and_then(<[u8]>::first_chunk::<16>) {
        let marked = lanes(u8x16::new(*chunk)).to_bitmask();
        if marked != 0 {
            return Some(at + marked.trailing_zeros() as usize);
        }
        at += 16;
    }
    if let Some(chunk) = haystack.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let marked = marks(u64::from_le_bytes(*chunk));
        if marked != 0 {
            return Some(at + first_mark(marked));
        }
        at += 8;
    }
    haystack
        .get(at..)?
        .iter()
        .position(|&candidate| matches(candidate))
        .map(|tail| at + tail)
}

/// How many ASCII digits `bytes` starts with, a word at a time: a CloudWatch timestamp
/// has 13, which one by one is a compare and a branch each.
pub(crate) fn leading_digits(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*chunk);
        // Below `0`, or above `9` (adding 0x46 reaches the high bit), or not ASCII. Carries
        // and borrows only run upwards from a byte that is marked itself, so the lowest
        // mark is exact.
        let not_digits = marks_below(word, b'0') | ((word.wrapping_add(ONES * 0x46) | word) & HIGH);
        if not_digits != 0 {
            return at + first_mark(not_digits);
        }
        at += 8;
    }
    at + bytes.get(at..).map_or(0, |tail| {
        tail.iter().take_while(|byte| byte.is_ascii_digit()).count()
    })
}

/// The bytes of a 16-byte chunk that are a backslash or below 0x20, one bit each (bit i
/// for byte i): a vector compare where the CPU has one (SSE2 on x86-64, NEON on arm64).
#[inline]
pub(crate) fn escapes_or_controls(chunk: &[u8; 16]) -> u32 {
    let bytes = u8x16::new(*chunk);
    (bytes.simd_eq(u8x16::splat(b'\\')) | bytes.min(u8x16::splat(0x1f)).simd_eq(bytes)).to_bitmask()
}

/// The number ASCII decimal `digits` spell, `None` when one is not a digit or the number
/// does not fit `u64`. Eight digits are converted at a time (three multiplications in
/// place of eight steps, each waiting on the one before): a CloudWatch timestamp has 13, a
/// record's `usecs` 16.
pub(crate) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut number: u64 = 0;
    let mut rest = digits;
    // Up to 19 digits cannot overflow; past that every step is checked.
    let unchecked = digits.len() <= 19;
    if unchecked {
        while let Some((chunk, after)) = rest.split_first_chunk::<8>() {
            number = number * 100_000_000 + u64::from(eight_digits(chunk)?);
            rest = after;
        }
    }
    for &byte in rest {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = u64::from(byte - b'0');
        number = if unchecked {
            number * 10 + digit
        } else {
            number.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(number)
}

/// Eight ASCII digits as the number they spell, or `None` if one is not a digit.
#[inline]
fn eight_digits(chunk: &[u8; 8]) -> Option<u32> {
    let word = u64::from_le_bytes(*chunk);
    // Each byte is a digit when its high nibble is 3, and stays 3 after adding 6 (so the
    // low nibble is at most 9).
    let high_nibbles = (word & 0xF0F0_F0F0_F0F0_F0F0)
        | ((word.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4);
    if high_nibbles != 0x3333_3333_3333_3333 {
        return None;
    }
    // Pairs of digits to numbers below 100, then pairs of those to numbers below 10,000
    // in the high half of two 64-bit products.
    let values = word - 0x3030_3030_3030_3030;
    let pairs = values * 10 + (values >> 8);
    let eight = (((pairs & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32)))
        .wrapping_add(((pairs >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32))))
        >> 32;
    u32::try_from(eight).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn finds_what_a_plain_search_finds(haystack in proptest::collection::vec(any::<u8>(), 0..70), byte in any::<u8>()) {
            prop_assert_eq!(find_byte(&haystack, byte), haystack.iter().position(|&b| b == byte));
            prop_assert_eq!(
                find_either_byte(&haystack, byte, b':'),
                haystack.iter().position(|&b| b == byte || b == b':')
            );
            for chunk in haystack.chunks_exact(8) {
                let word = u64::from_le_bytes(chunk.try_into().unwrap());
                let first_below = chunk.iter().position(|&b| b < 0x20).unwrap_or(8);
                prop_assert_eq!(first_mark(marks_below(word, 0x20)), first_below);
            }
        }
    }

    proptest! {
        #[test]
        fn marks_escapes_and_controls_as_a_plain_test_does(chunk in any::<[u8; 16]>()) {
            let expected = chunk
                .iter()
                .enumerate()
                .filter(|&(_, &byte)| byte == b'\\' || byte < 0x20)
                .fold(0, |bits, (at, _)| bits | 1 << at);
            prop_assert_eq!(escapes_or_controls(&chunk), expected);
        }

        #[test]
        fn counts_leading_digits_as_a_plain_loop_does(bytes in proptest::collection::vec(prop_oneof![b'0'..=b'9', any::<u8>()], 0..30)) {
            prop_assert_eq!(
                leading_digits(&bytes),
                bytes.iter().take_while(|byte| byte.is_ascii_digit()).count()
            );
        }

        #[test]
        fn reads_decimals_as_str_parse_does(text in "[0-9]{0,24}|[0-9/:;a ]{0,12}") {
            let expected = if text.is_empty() { None } else { text.parse::<u64>().ok() };
            prop_assert_eq!(decimal(text.as_bytes()), expected, "{}", text);
        }

        #[test]
        fn reads_any_u64(number in any::<u64>()) {
            prop_assert_eq!(decimal(number.to_string().as_bytes()), Some(number));
            prop_assert_eq!(decimal(format!("{number:020}").as_bytes()), Some(number));
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
