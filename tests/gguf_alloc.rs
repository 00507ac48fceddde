//! Hostile GGUF headers must not make the parser allocate much.
//!
//! Every parse below runs under a memory cap: the live heap bytes at its start
//! plus [`LIMIT`], enforced by the `cap` crate's counting global allocator. An
//! allocation over the cap fails, which aborts this test binary ("memory
//! allocation of N bytes failed"). The binary holds a single test, so nothing
//! else allocates meanwhile. (Checked by hand: with the parser's bound on
//! preallocation removed, this test aborts.)

mod common;
mod gguf_writer;

use blockq::gguf::GgufFile;
use cap::Cap;
use gguf_writer::*;
use quickcheck::QuickCheck;
use std::alloc::System;

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// Heap bytes a parse of these (at most a few KB, or 1 MB of zeros) inputs
/// may hold at once. Hostile counts claim up to 2^64 items.
const LIMIT: usize = 256 << 10;

fn capped<T>(f: impl FnOnce() -> T) -> T {
    ALLOC
        .set_limit(ALLOC.allocated() + LIMIT)
        .expect("limit above the live bytes");
    let r = f();
    ALLOC.set_limit(usize::MAX).expect("no limit");
    r
}

#[test]
fn hostile_files_allocate_little() {
    // The cap is in force: inside `capped` at most LIMIT more bytes may be
    // live, and allocations count against them.
    capped(|| {
        let before = ALLOC.remaining();
        assert!(before <= LIMIT, "{before}");
        let v = vec![1u8; LIMIT / 2];
        assert!(ALLOC.remaining() <= before - v.len());
    });

    // Every truncation.
    let written = small_file();
    for len in 0..written.bytes.len() {
        let prefix = written.bytes[..len].to_vec();
        assert!(capped(|| GgufFile::parse(&prefix).is_err()), "{len}");
    }

    // Huge counts, lengths, dimensions and offsets.
    for (what, at) in count_fields(&written) {
        for v in HUGE_VALUES {
            let mut b = written.bytes.clone();
            set_u64(&mut b, at, v);
            assert!(capped(|| GgufFile::parse(&b).is_err()), "{what} = {v}");
        }
    }

    // Counts that do fit in 1 MB of (zero) bytes: memory grows with what is
    // parsed, not with what is claimed.
    for (tensors, kvs) in [(1u64 << 15, 0u64), (0, 80_000), (1 << 15, 80_000)] {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(tensors.to_le_bytes());
        b.extend(kvs.to_le_bytes());
        b.resize(1 << 20, 0);
        assert!(capped(|| GgufFile::parse(&b).is_err()), "{tensors} {kvs}");
    }

    // Random large values over any 8 header bytes, then using the result.
    fn prop(seed: u64, at: u16, v: u64, shift: u8) -> bool {
        let written = random_file(seed).0.build();
        let mut bytes = written.bytes;
        let at = at as usize % (written.data_offset.max(9) - 8);
        set_u64(&mut bytes, at, v >> (shift % 64));
        capped(|| exercise(&bytes))
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(u64, u16, u64, u8) -> bool);
}
