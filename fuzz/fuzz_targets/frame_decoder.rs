//! Fuzz target: see `kapacitor_pagertree::fuzzing::frames` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kapacitor_pagertree::fuzzing::frames(data));
