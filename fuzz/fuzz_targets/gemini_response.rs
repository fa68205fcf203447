//! A 2xx body from Gemini's `generateContent`: never a panic, and an answer
//! that is accepted has text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(answer) = vidgate::fuzzing::gemini_response(body) {
        assert!(!answer.text.trim().is_empty(), "an empty answer was accepted: {answer:?}");
    }
});
