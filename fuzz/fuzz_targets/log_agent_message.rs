#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_fuzz::protocol(cvm_protocol::fuzzing::log_agent_message, data));
