//! Criterion benchmarks of `QuantizedLinear::forward_into`: every ISA this CPU
//! runs (forced with `set_isa`, the in-place `with_isa`) x Q4_0 / Q8_0 / F16 x three layer shapes x
//! batch sizes 1, 8, 32, 128.
//!
//! ```text
//! cargo bench --bench kernels                              # all, < 10 minutes
//! cargo bench --bench kernels -- '^1t/q4_0/4096x4096/'     # a criterion filter
//! cargo bench --bench kernels -- --list                    # the benchmark names
//! ```
//!
//! Names are `{threads}t/{format}/{N}x{K}/{isa}/m{M}` (N outputs, K inputs).
//! Batch 1 reports weight bytes per second (it is bound by memory), larger
//! batches `2*M*N*K` operations per second. The `1t` groups run on a one-thread
//! rayon pool; the `2t` groups rerun the compute-bound cases (M >= 32, K = 4096)
//! on two threads. The scalar ISA runs batch 1 of 4096x4096 only: it takes
//! seconds per call on large batches. Layers are built only for benchmarks that
//! pass the filter.

#[path = "../examples/common/mod.rs"]
mod common;

use blockq::{dispatch, Isa, QuantType, QuantizedLinear};
use common::values;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::ThreadPool;
use std::cell::{OnceCell, RefCell};
use std::hint::black_box;
use std::time::Duration;

const SHAPES: [(usize, usize); 3] = [(4096, 4096), (14336, 4096), (4096, 14336)];
const BATCHES: [usize; 4] = [1, 8, 32, 128];
const FORMATS: [QuantType; 3] = [QuantType::Q4_0, QuantType::Q8_0, QuantType::F16];

fn build(qt: QuantType, n: usize, k: usize) -> QuantizedLinear {
    let w = values(n as u64 * 31 + k as u64, n * k, 0.05);
    let bias = values(7, n, 0.5);
    QuantizedLinear::from_linear_params(&w, Some(&bias), k, n, qt)
}

fn pool(threads: usize) -> ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

/// The cases of one (threads, format, shape) group.
fn cases(threads: usize, (n, k): (usize, usize)) -> Vec<(Isa, usize)> {
    let mut v = Vec::new();
    for isa in dispatch::available() {
        for m in BATCHES {
            let keep = if threads == 1 {
                isa != Isa::Scalar || (m == 1 && (n, k) == SHAPES[0])
            } else {
                isa != Isa::Scalar && m >= 32 && k == 4096
            };
            if keep {
                v.push((isa, m));
            }
        }
    }
    v
}

fn bench_forward(c: &mut Criterion) {
    if cfg!(target_arch = "aarch64") {
        eprintln!(
            "note: on aarch64 under qemu-user (as in CI) these timings are emulated and are \
             not performance figures; benchmark on real hardware"
        );
    }
    for threads in [1, 2] {
        let pool = pool(threads);
        for shape @ (n, k) in SHAPES {
            for qt in FORMATS {
                let list = cases(threads, shape);
                if list.is_empty() {
                    continue;
                }
                // Built on first use, so filtered-out groups cost nothing.
                let layer = OnceCell::new();
                let name = format!("{threads}t/{}/{n}x{k}", qt.name().to_lowercase());
                let mut group = c.benchmark_group(name);
                group
                    .sample_size(10)
                    .warm_up_time(Duration::from_millis(300))
                    .measurement_time(Duration::from_secs(1));
                for (isa, m) in list {
                    group.throughput(if m == 1 {
                        Throughput::BytesDecimal((qt.row_bytes(k) * n) as u64)
                    } else {
                        Throughput::Elements((2 * m * n * k) as u64)
                    });
                    let id = BenchmarkId::new(isa.name(), format!("m{m}"));
                    group.bench_function(id, |b| {
                        // One layer per group, switched to `isa` in place
                        // (`set_isa` is `with_isa` without the clone).
                        let mut cell = layer
                            .get_or_init(|| RefCell::new(build(qt, n, k)))
                            .borrow_mut();
                        cell.set_isa(isa).expect("available ISA");
                        let layer: &QuantizedLinear = &cell;
                        let x = values(m as u64, m * k, 1.0);
                        let mut y = vec![0.0f32; m * n];
                        pool.install(|| {
                            b.iter(|| {
                                layer
                                    .forward_into(black_box(&x), m, black_box(&mut y))
                                    .expect("shapes match")
                            })
                        });
                    });
                }
                group.finish();
            }
        }
    }
}

criterion_group!(benches, bench_forward);
criterion_main!(benches);
