#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    waevent::fuzz_targets::group_fanout(data);
});
