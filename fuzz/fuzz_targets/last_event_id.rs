#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::last_event_id(data));
