//! Fuzz target: see `kapacitor_pagertree::fuzzing::init_options` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kapacitor_pagertree::fuzzing::init_options(data));
