#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmgate_fuzz::canonical_path(data));
