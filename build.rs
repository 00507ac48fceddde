//! Build provenance for `blockq::build_info()`: the compiler, the target, the
//! profile and the target features enabled at compile time, passed to the
//! crate as `BLOCKQ_BUILD_*` environment variables (`env!` in
//! src/build_info.rs). The examples print it, so that a benchmark figure says
//! which toolchain and codegen settings produced it.
//!
//! cfgs: none today. The kernels need nothing toolchain-dependent within
//! the supported range: the x86 intrinsics they use (AVX-512, AVX-VNNI) are
//! stable since Rust 1.89, the MSRV, and the aarch64 `sdot` / `usdot` /
//! `usmmla` instructions are written with `asm!` because their intrinsics
//! (`stdarch_neon_dotprod`, `stdarch_neon_i8mm`) are still unstable. Once a
//! Rust release stabilizes those intrinsics, this script is where a cfg
//! switching the kernels to them on that release and later would be emitted
//! (with its `cargo::rustc-check-cfg` declaration). The only non-feature cfgs
//! in the crates, `doctest` and `miri`, are built in and need no declaration.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // Target features come from RUSTFLAGS (-C target-cpu / -C target-feature);
    // TARGET, PROFILE, OPT_LEVEL, DEBUG and the compiler version are already
    // part of what makes Cargo rerun this script.
    println!("cargo::rerun-if-env-changed=RUSTFLAGS");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = var("TARGET");
    let verbose = run(&rustc, &["-vV"]).unwrap_or_default();
    // First line: "rustc 1.89.0 (29483883e 2025-08-04)".
    let version = verbose.lines().next().unwrap_or("unknown");
    let host = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("unknown");

    let mut features: Vec<String> = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    features.sort();

    emit("RUSTC_VERSION", version);
    emit("RUSTC_HOST", host);
    emit("TARGET", &target);
    emit("PROFILE", &var("PROFILE"));
    emit("OPT_LEVEL", &var("OPT_LEVEL"));
    emit("DEBUG", &var("DEBUG"));
    emit("TARGET_FEATURES", &features.join(","));
    // The same relative to the target's defaults (what the flags changed),
    // when rustc can tell them; left unset otherwise.
    if let Some(default) = run(&rustc, &["--print", "cfg", "--target", &target]) {
        let default: Vec<&str> = default
            .lines()
            .filter_map(|l| l.strip_prefix("target_feature=\""))
            .filter_map(|l| l.strip_suffix('"'))
            .collect();
        let added = features
            .iter()
            .filter(|f| !default.contains(&f.as_str()))
            .map(|f| format!("+{f}"));
        let removed = default
            .iter()
            .filter(|f| !features.iter().any(|g| g == *f))
            .map(|f| format!("-{f}"));
        emit(
            "TARGET_FEATURES_CHANGED",
            &added.chain(removed).collect::<Vec<_>>().join(","),
        );
    }
}

/// A variable Cargo sets for build scripts ("unknown" if it did not).
fn var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| "unknown".into())
}

/// The standard output of `rustc args`, if it ran and succeeded.
fn run(rustc: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(rustc).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

fn emit(name: &str, value: &str) {
    // One line per directive: no newline may end up in the value.
    let value = value.replace(['\r', '\n'], " ");
    println!("cargo::rustc-env=BLOCKQ_BUILD_{name}={}", value.trim());
}
