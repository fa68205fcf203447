//! A user's config file: never a panic, and a configuration that loads
//! loads again, unchanged, from its own TOML.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let Ok(config) = vidgate::fuzzing::config(text) else { return };
    let written = toml::to_string(&config).expect("a loaded config serializes");
    let again = vidgate::fuzzing::config(written.as_bytes())
        .unwrap_or_else(|e| panic!("a loaded config does not load again: {e}\n{written}"));
    assert_eq!(config, again, "a loaded config changed on a round trip:\n{written}");
});
