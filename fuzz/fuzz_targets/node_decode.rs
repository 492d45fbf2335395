//! `binary::unmarshal` on arbitrary frame payloads, checking that whatever decodes
//! re-encodes to bytes that decode to the same node.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| waevent::fuzz_targets::node_decode(data));
