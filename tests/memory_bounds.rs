//! Memory bounds of decoding: a decompression bomb is refused without the function
//! ever holding much more than `MAX_INFLATED_BYTES`, since the Lambda runs at 128 MB.
//!
//! A counting global allocator (in this test binary only) records the peak of live
//! heap bytes. Every test takes a lock first, before it builds its input: the counter is
//! process-wide and the harness runs tests on several threads, so another test's
//! allocations (a 4 MiB payload, the bomb's compression) must never fall inside a
//! measurement, however the threads happen to be scheduled.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use hsm_audit::config::DEFAULT_MAX_INFLATED_BYTES;
use hsm_audit::decode::{
    DecodeError, Decoded, RawTextSource, decode_awslogs_data, decode_document, decode_event,
    inflate_capped,
};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if moved.is_null() {
            return moved;
        }
        // A block that moved was, for a moment, held twice: counted so, the peak is an
        // upper bound whatever the system allocator does in place.
        if moved != ptr {
            grew(new_size);
            shrank(layout.size());
        } else if new_size >= layout.size() {
            grew(new_size - layout.size());
        } else {
            shrank(layout.size() - new_size);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static MEASURING: Mutex<()> = Mutex::new(());

/// Runs `work` and returns its result and the peak of heap bytes it added to what was
/// live before it started.
fn peak_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let baseline = LIVE.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let result = work();
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(baseline);
    eprintln!("peak heap above baseline: {peak} bytes");
    (result, peak)
}

const MIB: usize = 1024 * 1024;
const CAP: usize = DEFAULT_MAX_INFLATED_BYTES;
/// The decoder's window and tables, the read chunk, the base64-decoded input, error
/// strings: well under a MiB each.
const MARGIN: usize = 2 * MIB;

/// 512 MiB of zeros as one gzip member, compressed from a small buffer written again
/// and again, so that the bomb's content is never held, only its ~0.5 MiB compressed form.
fn zero_bomb() -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    for _ in 0..512 {
        encoder.write_all(&zeros).expect("compress");
    }
    encoder.finish().expect("compress")
}

fn bomb() -> &'static [u8] {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(zero_bomb)
}

/// The same bomb with a trailer announcing 1 KiB: what the inflater reserves from the
/// trailer is a hint it must not trust.
fn lying_bomb() -> Vec<u8> {
    let mut bomb = bomb().to_vec();
    let at = bomb.len() - 4;
    bomb[at..].copy_from_slice(&1024u32.to_le_bytes());
    bomb
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    MEASURING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn the_bomb_is_small_compressed_and_huge_inflated() {
    let _guard = lock();
    let bomb = bomb();
    assert!(bomb.len() < MIB, "compressed: {} bytes", bomb.len());
    // ISIZE: the inflated length mod 2^32, as the encoder wrote it.
    let isize = u32::from_le_bytes(bomb[bomb.len() - 4..].try_into().unwrap());
    assert_eq!(isize as usize, 512 * MIB);
}

#[test]
fn inflating_a_bomb_is_refused_within_the_cap() {
    let _guard = lock();
    let bomb = bomb();
    let (result, peak) = peak_during(|| inflate_capped(bomb, CAP));
    assert_eq!(result, Err(DecodeError::TooLarge { cap: CAP }));
    assert!(
        peak <= CAP + MARGIN,
        "peak {peak} bytes while refusing a bomb; cap {CAP}"
    );
}

/// A trailer that lies makes the inflater grow its buffer as it goes; growth is
/// bounded by the cap, so the worst is the last doubling (the old buffer and the new
/// one, at most the cap, live together for the copy): 1.5 x the cap, not 2 x or 3 x.
#[test]
fn a_bomb_with_a_lying_trailer_grows_no_further_than_the_cap() {
    let _guard = lock();
    let bomb = lying_bomb();
    let (result, peak) = peak_during(|| inflate_capped(&bomb, CAP));
    assert_eq!(result, Err(DecodeError::TooLarge { cap: CAP }));
    assert!(
        peak <= CAP + CAP / 2 + MARGIN,
        "peak {peak} bytes while refusing a bomb; cap {CAP}"
    );
}

#[test]
fn a_bomb_in_a_lambda_event_is_quarantined_with_its_reason_within_the_cap() {
    let _guard = lock();
    let data = base64::engine::general_purpose::STANDARD.encode(bomb());
    let event = serde_json::json!({"awslogs": {"data": data}});
    let (decoded, peak) = peak_during(|| decode_event(&event, CAP).into_decoded());
    let [Decoded::Quarantined(item)] = decoded.as_slice() else {
        panic!("the bomb must be quarantined: {decoded:?}")
    };
    assert!(
        item.reason.contains("exceeds the cap") && item.reason.contains("MAX_INFLATED_BYTES"),
        "{}",
        item.reason
    );
    assert!(
        item.raw_truncated,
        "what is kept is cut, not the whole input"
    );
    // The base64-decoded input (~0.5 MiB) is held beside the inflation.
    assert!(
        peak <= CAP + bomb().len() + MARGIN,
        "peak {peak} bytes while refusing a bomb; cap {CAP}"
    );
}

#[test]
fn a_bomb_as_a_file_is_quarantined_within_the_cap() {
    let _guard = lock();
    let bomb = bomb();
    let (decoded, peak) =
        peak_during(|| decode_document(bomb, "bomb.gz", &RawTextSource::default(), CAP));
    let decoded = decoded.expect("a bomb is quarantined, not an error");
    let [Decoded::Quarantined(item)] = decoded.as_slice() else {
        panic!("the bomb must be quarantined: {decoded:?}")
    };
    assert!(item.reason.contains("exceeds the cap"), "{}", item.reason);
    assert!(
        peak <= CAP + MARGIN,
        "peak {peak} bytes while refusing a bomb; cap {CAP}"
    );
}

#[test]
fn a_payload_just_under_the_cap_is_inflated_into_one_buffer() {
    let _guard = lock();
    let small_cap = 4 * MIB;
    let json = format!(
        r#"{{"messageType":"DATA_MESSAGE","logGroup":"g","logStream":"s","logEvents":[{{"id":"1","timestamp":1,"message":"{}"}}]}}"#,
        "x".repeat(small_cap - 200)
    );
    let compressed = {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(json.as_bytes()).expect("compress");
        encoder.finish().expect("compress")
    };
    drop(json);
    let data = base64::engine::general_purpose::STANDARD.encode(&compressed);
    let (inflated, peak) = peak_during(|| inflate_capped(&compressed, small_cap));
    let inflated = inflated.expect("under the cap");
    assert!(inflated.len() < small_cap);
    assert!(
        peak <= inflated.len() + MARGIN,
        "an honest payload needs one buffer of its size: peak {peak}, size {}",
        inflated.len()
    );
    drop(inflated);
    let payload = decode_awslogs_data(&data, small_cap).expect("decodes");
    assert_eq!(payload.log_events[0].message.len(), small_cap - 200);
}
