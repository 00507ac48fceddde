//! ISA detection and the default choice, optionally against an expected list.
//!
//! `BLOCKQ_EXPECT_ISAS` (comma-separated ISA names, e.g. `scalar,neon,dotprod`)
//! states exactly which levels this CPU must run; CI sets it for each emulated
//! aarch64 CPU (see `.ci/aarch64.sh`), so a detection bug fails the run instead
//! of silently skipping a level.

use blockq::{dispatch, Isa};

/// Name of the variable listing the expected ISAs.
const EXPECT_ENV: &str = "BLOCKQ_EXPECT_ISAS";

#[test]
fn detection_is_consistent_and_as_expected() {
    let avail = dispatch::available();
    // Each level extends the one it names here, so it cannot run without it.
    let needs = [
        (Isa::AvxVnni, Isa::Avx2),
        (Isa::Avx512, Isa::Avx2),
        (Isa::Avx512Vnni, Isa::Avx512),
        (Isa::NeonDotprod, Isa::Neon),
        (Isa::NeonI8mm, Isa::NeonDotprod),
    ];
    for (level, base) in needs {
        if avail.contains(&level) {
            assert!(avail.contains(&base), "{level} available without {base}");
        }
    }
    // NEON is part of every aarch64 CPU, and this build has its kernels.
    assert_eq!(avail.contains(&Isa::Neon), cfg!(target_arch = "aarch64"));
    if std::env::var_os(dispatch::ISA_ENV).is_none() {
        assert_eq!(dispatch::default_isa().unwrap(), *avail.last().unwrap());
    }

    let Ok(list) = std::env::var(EXPECT_ENV) else {
        eprintln!("{EXPECT_ENV} not set: detected {avail:?}, not compared with an expectation");
        return;
    };
    let mut want: Vec<Isa> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{EXPECT_ENV}: {e}")))
        .collect();
    want.sort();
    want.dedup();
    assert_eq!(
        avail, want,
        "detected ISAs differ from {EXPECT_ENV}={list:?}"
    );
    eprintln!("detected ISAs as expected: {avail:?}");
}
