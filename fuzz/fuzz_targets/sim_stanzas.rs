//! Hostile stanzas into the simulator's sans-IO server from every connection state;
//! every node it answers with must encode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| waevent::fuzz_targets::sim_stanzas(data));
