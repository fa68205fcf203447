//! `timecode::parse` on any text: never a panic, and a time it reads formats
//! back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vidgate::timecode;

fuzz_target!(|data: &[u8]| {
    if let Ok(bytes) = <[u8; 8]>::try_from(data.get(..8).unwrap_or_default()) {
        let _ = timecode::format(u64::from_le_bytes(bytes));
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(ms) = timecode::parse(text) {
        let formatted = timecode::format(ms);
        assert_eq!(timecode::parse(&formatted), Some(ms), "{text:?} read as {ms} ms, formatted {formatted:?}");
    }
});
