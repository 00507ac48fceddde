//! How this copy of blockq was built (recorded by build.rs).

use core::fmt;

/// Build provenance of the blockq library: compiler, target, profile and the
/// target features enabled at compile time. The kernels choose their ISA at
/// run time ([`crate::dispatch`]); the compile-time features only tell how the
/// scalar and glue code was compiled (e.g. `-C target-cpu=native`).
///
/// `Display` prints one line, e.g.
/// `blockq 0.1.0, rustc 1.89.0 (29483883e 2025-08-04), x86_64-unknown-linux-gnu,
/// release (opt-level 3, debuginfo), target features: default`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildInfo {
    /// blockq's version.
    pub version: &'static str,
    /// The compiler's version line, e.g. `rustc 1.89.0 (29483883e 2025-08-04)`.
    pub rustc: &'static str,
    /// The compiler's host triple.
    pub rustc_host: &'static str,
    /// The target triple compiled for.
    pub target: &'static str,
    /// Cargo's profile: `debug` or `release` (custom profiles report the one
    /// they inherit from).
    pub profile: &'static str,
    /// Optimization level (`0`-`3`, `s`, `z`).
    pub opt_level: &'static str,
    /// Whether debuginfo is generated: `true` or `false` (as Cargo reports it).
    pub debug: &'static str,
    /// Target features enabled at compile time, sorted, comma-separated.
    pub target_features: &'static str,
    /// Target features added (`+avx2`) or removed (`-sse3`) relative to the
    /// target's defaults, comma-separated, empty for none; `None` if the
    /// compiler could not report the defaults.
    pub target_features_changed: Option<&'static str>,
}

static BUILD_INFO: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    rustc: env!("BLOCKQ_BUILD_RUSTC_VERSION"),
    rustc_host: env!("BLOCKQ_BUILD_RUSTC_HOST"),
    target: env!("BLOCKQ_BUILD_TARGET"),
    profile: env!("BLOCKQ_BUILD_PROFILE"),
    opt_level: env!("BLOCKQ_BUILD_OPT_LEVEL"),
    debug: env!("BLOCKQ_BUILD_DEBUG"),
    target_features: env!("BLOCKQ_BUILD_TARGET_FEATURES"),
    target_features_changed: option_env!("BLOCKQ_BUILD_TARGET_FEATURES_CHANGED"),
};

/// How this copy of blockq was built; see [`BuildInfo`].
///
/// ```
/// println!("{}", blockq::build_info());
/// ```
pub fn build_info() -> &'static BuildInfo {
    &BUILD_INFO
}

impl BuildInfo {
    /// [`BuildInfo::target_features`] one by one.
    pub fn target_features(&self) -> impl Iterator<Item = &'static str> {
        self.target_features.split(',').filter(|f| !f.is_empty())
    }
}

impl fmt::Display for BuildInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blockq {}, {}, {}",
            self.version, self.rustc, self.target
        )?;
        if self.rustc_host != self.target {
            write!(f, " (built on {})", self.rustc_host)?;
        }
        write!(f, ", {} (opt-level {}", self.profile, self.opt_level)?;
        match self.debug {
            "false" | "0" => {}
            "true" => f.write_str(", debuginfo")?,
            level => write!(f, ", debuginfo {level}")?,
        }
        f.write_str("), target features: ")?;
        match self.target_features_changed {
            Some("") => f.write_str("default"),
            Some(changed) => write!(f, "default {}", changed.replace(',', " ")),
            None => f.write_str(&self.target_features.replace(',', " ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_is_filled_in() {
        let b = build_info();
        assert!(b.rustc.starts_with("rustc "), "{b:?}");
        assert!(b.rustc.len() > "rustc ".len(), "{b:?}");
        assert_ne!(b.rustc_host, "unknown", "{b:?}");
        assert!(b.profile == "debug" || b.profile == "release", "{b:?}");
        assert!(!b.opt_level.is_empty() && b.opt_level != "unknown", "{b:?}");
        assert!(!b.debug.is_empty() && b.debug != "unknown", "{b:?}");
        // The recorded target is the one this test was compiled for.
        let arch = b.target.split('-').next().unwrap();
        assert!(cfg!(target_arch = "x86_64") == (arch == "x86_64"), "{b:?}");
        assert!(
            cfg!(target_arch = "aarch64") == (arch == "aarch64"),
            "{b:?}"
        );
        // And so are its target features.
        let has = |f: &str| b.target_features().any(|g| g == f);
        assert_eq!(has("sse2"), cfg!(target_feature = "sse2"), "{b:?}");
        assert_eq!(has("avx2"), cfg!(target_feature = "avx2"), "{b:?}");
        assert_eq!(has("neon"), cfg!(target_feature = "neon"), "{b:?}");
        if let Some(changed) = b.target_features_changed {
            for c in changed.split(',').filter(|c| !c.is_empty()) {
                let (sign, name) = c.split_at(1);
                assert_eq!(has(name), sign == "+", "{b:?}");
            }
        }
        let line = b.to_string();
        assert!(!line.contains('\n') && line.contains(b.target), "{line}");
    }
}
