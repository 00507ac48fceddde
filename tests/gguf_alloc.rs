//! Hostile GGUF headers must not make the parser allocate much.
//!
//! Every parse below runs under a memory cap: the live heap bytes at its start
//! plus [`LIMIT`], enforced by the `cap` crate's counting global allocator. An
//! allocation over the cap fails, which aborts this test binary ("memory
//! allocation of N bytes failed"). The binary holds a single test, so nothing
//! else allocates meanwhile; a child process checks that the cap does abort.

mod common;
mod gguf_writer;

use blockq::gguf::GgufFile;
use cap::Cap;
use gguf_writer::*;
use quickcheck::QuickCheck;
use std::alloc::System;
use std::process::Command;

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// Heap bytes a parse of these (at most a few KB, or 1 MB of zeros) inputs
/// may hold at once. Hostile counts claim up to 2^64 items.
const LIMIT: usize = 256 << 10;

/// Set in the child process that checks the cap itself.
const SELF_CHECK: &str = "BLOCKQ_GGUF_ALLOC_SELF_CHECK";

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
    if std::env::var_os(SELF_CHECK).is_some() {
        // The child: this must abort.
        let v = capped(|| vec![1u8; 2 * LIMIT]);
        println!("allocated {} bytes past the cap", v.len());
        return;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hostile_files_allocate_little",
            "--test-threads=1",
        ])
        .env(SELF_CHECK, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        !child.status.success() && stderr.contains("memory allocation of"),
        "the cap did not stop an allocation: {:?} {stderr}",
        child.status
    );

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
