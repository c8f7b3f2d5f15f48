//! Any bytes as a trace file: the parser accepts a line or refuses it with a reason, and a
//! replay either runs or stops at a line with a reason; neither ever panics, and the pool is
//! consistent afterwards either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zsmalloc::host::HostBackend;
use zsmalloc::trace::{self, parse_line};
use zsmalloc::{Pool, PoolConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        for line in text.lines() {
            if let Err(reason) = parse_line(line) {
                assert!(!reason.is_empty(), "a refusal without a reason: {line:?}");
            }
        }
    }
    // Few frames, so that replays also run out of memory.
    let pool = Pool::new("fuzz", HostBackend::new(64, 1), PoolConfig::default());
    if let Err(e) = trace::replay(&pool, data, |_| {}) {
        assert!(e.line >= 1 && !e.reason.is_empty(), "{e:?}");
    }
    pool.check_invariants().unwrap();
});
