#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvm_fuzz::evidence(cvm_evidence::fuzzing::hcl_report, data));
