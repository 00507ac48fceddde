//! `forward_into` allocates nothing once warmed up (4096 x 4096 layers, or
//! 1024 x 4096 under qemu-user; every format, the default ISA and the default
//! rayon pool).
//!
//! Allocations are counted by dhat's global allocator (all threads). On a
//! failure dhat writes `dhat-heap.json` with a backtrace of every allocation
//! site (view it with DHAT's `dh_view.html`). The file has its own `main`
//! (`harness = false`): libtest's thread allocates while a test runs (for
//! example its "running for over 60 seconds" notice under emulation), and
//! nothing but the check may run in the process while it counts.

mod common;

use blockq::{QuantType, QuantizedLinear};
use common::values;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const NAME: &str = "forward_into_allocates_nothing_after_warm_up";
const CALLS: usize = 100;

/// rayon queues a job that a thread outside the pool hands it in a
/// `crossbeam_deque::Injector`, which allocates one block per 63 jobs
/// (`Registry::inject` -> `Injector::push` -> `Block::new`). Each parallel
/// `forward_into` called from outside the pool injects one job.
const INJECTOR_BLOCK_JOBS: usize = 63;

/// Blocks allocated (by any thread) while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    f();
    dhat::HeapStats::get().total_blocks - before
}

/// Warms `layer` up on the calling thread (batch `m`), then counts the
/// allocations of `calls` more calls.
fn count(layer: &QuantizedLinear, m: usize, calls: usize) -> u64 {
    let (k, n) = (layer.in_features, layer.out_features);
    let x = values(m as u64 + 3, m * k, 1.0);
    let mut y = vec![0.0f32; m * n];
    // Several warm-up calls: the pool's threads finish starting (and register
    // with crossbeam's epoch GC) asynchronously after the first one.
    for _ in 0..8 {
        layer.forward_into(&x, m, &mut y).unwrap();
    }
    allocations(|| {
        for _ in 0..calls {
            layer.forward_into(&x, m, &mut y).unwrap();
        }
    })
}

/// Runs the check unless a name filter (as `cargo test FILTER`) excludes it;
/// `--list` lists it. Other libtest flags (`--nocapture`, ...) are ignored.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return;
    }
    if let Some(f) = args.iter().find(|a| !a.starts_with('-')) {
        if !NAME.contains(f.as_str()) {
            println!("alloc: 0 passed, 0 failed ({NAME} filtered out)");
            return;
        }
    }
    forward_into_allocates_nothing_after_warm_up();
    println!("alloc: 1 passed, 0 failed");
}

fn forward_into_allocates_nothing_after_warm_up() {
    let _profiler = dhat::Profiler::builder().testing().build();
    // Under qemu-user (the aarch64 CI sets QEMU_CPU) a 4096 x 4096 layer takes
    // minutes; 1024 x 4096 still has PARALLEL_MIN_MACS multiply-adds at batch
    // 1, so it takes the same parallel path.
    let (k, n) = match std::env::var_os("QEMU_CPU") {
        Some(_) => (4096, 1024),
        None => (4096, 4096),
    };
    assert!(n * k >= blockq::kernels::PARALLEL_MIN_MACS);
    let w: Vec<f32> = values(1, n * k, 0.05);
    let bias = values(2, n, 1.0);
    // With one thread the layer never enters the pool; both counts are then 0.
    // The broadcast makes every pool thread start before anything is counted.
    rayon::broadcast(|_| ());
    eprintln!(
        "{n}x{k} layers; default pool: {} threads",
        rayon::current_num_threads()
    );
    for qt in [QuantType::Q4_0, QuantType::Q8_0, QuantType::F16] {
        let layer = QuantizedLinear::from_linear_params(&w, Some(&bias), k, n, qt);
        // A thread allocates its batch buffer the first time it runs a tile,
        // and which pool thread steals which tile is up to rayon: warm up
        // every thread with a batched call of its own (the caller always runs
        // the first part of its call itself), so that the count below does
        // not depend on how earlier calls happened to be split.
        rayon::broadcast(|_| {
            let x = values(11, 8 * k, 1.0);
            let mut y = vec![0.0f32; 8 * n];
            layer.forward_into(&x, 8, &mut y).unwrap();
        });
        // Called from a worker of the default pool (as inside a rayon-parallel
        // model): the library and rayon allocate nothing.
        let mut on_worker = [0u64; 2];
        rayon::scope(|s| {
            s.spawn(|_| {
                on_worker = [count(&layer, 1, 32), count(&layer, 8, 16)];
            })
        });
        eprintln!(
            "{qt} ({}): on a pool thread: {} allocations in 32 calls (M=1), {} in 16 (M=8)",
            layer.isa(),
            on_worker[0],
            on_worker[1]
        );
        dhat::assert_eq!(on_worker, [0, 0]);

        // Called from a thread outside the pool: only rayon's job queue may
        // allocate (one block per 63 calls, plus 2 for one-time registrations
        // of pool threads that may land late); one allocation per call from
        // the library would exceed this bound.
        let outside = count(&layer, 1, CALLS);
        let bound = CALLS.div_ceil(INJECTOR_BLOCK_JOBS) as u64 + 2;
        eprintln!(
            "{qt}: {CALLS} calls from outside the pool: {outside} allocations (bound {bound})"
        );
        dhat::assert!(outside <= bound);
    }
}
