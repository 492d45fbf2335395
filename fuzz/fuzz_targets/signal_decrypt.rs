#![no_main]
//! Arbitrary bytes as pkmsg / msg / skmsg / SKDM into real Signal sessions (first byte
//! selects the kind); also checks that failures leave records unchanged and that
//! nothing decrypts twice.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    waevent::fuzz_targets::signal_decrypt(data);
});
