//! Instruction-set levels and CPU detection.
//!
//! An [`Isa`] names a kernel family; [`Isa::is_supported`] asks the CPU (detection
//! runs once per process and is cached). The kernel table for an ISA can only be
//! obtained through [`crate::Kernels::for_isa`], which checks support first, so a
//! held `&Kernels` proves its target features are present.

use core::fmt;
use core::str::FromStr;
use std::sync::OnceLock;

/// A kernel family, from the portable scalar reference to the widest SIMD level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust; defines the canonical results.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (`vpmaddubsw` integer dots).
    Avx2,
    /// x86-64 AVX-VNNI: AVX2 level plus 256-bit VEX `vpdpbusd`.
    AvxVnni,
    /// x86-64 AVX-512 F/BW/VL (+F16C), 512-bit `vpmaddubsw`.
    Avx512,
    /// x86-64 AVX-512 level plus AVX512-VNNI 512-bit `vpdpbusd`.
    Avx512Vnni,
    /// aarch64 Advanced SIMD baseline.
    Neon,
    /// aarch64 NEON plus `sdot` (FEAT_DotProd).
    NeonDotprod,
    /// aarch64 dotprod level plus `smmla` (FEAT_I8MM).
    NeonI8mm,
}

/// What one ISA level is, declared once: its name (`BLOCKQ_ISA`), other
/// accepted spellings, and the CPU features its kernels enable (the
/// `#[target_feature]` list of its kernel table, checked by a test). CPU
/// detection asks for exactly these features.
struct Decl {
    name: &'static str,
    aliases: &'static [&'static str],
    features: &'static str,
}

/// One row per [`Isa`], in [`Isa::ALL`] order.
const DECLS: [Decl; 8] = [
    Decl {
        name: "scalar",
        aliases: &["portable"],
        features: "",
    },
    Decl {
        name: "avx2",
        aliases: &[],
        features: "avx2,fma,f16c",
    },
    Decl {
        name: "avxvnni",
        aliases: &[],
        features: "avx2,fma,f16c,avxvnni",
    },
    Decl {
        name: "avx512",
        aliases: &["avx512bw"],
        features: "avx512f,avx512bw,avx512vl,avx2,fma,f16c",
    },
    Decl {
        name: "avx512vnni",
        aliases: &["vnni"],
        features: "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    },
    Decl {
        name: "neon",
        aliases: &[],
        features: "neon",
    },
    Decl {
        name: "dotprod",
        aliases: &["neondotprod"],
        features: "neon,dotprod",
    },
    Decl {
        name: "i8mm",
        aliases: &["neoni8mm"],
        features: "neon,dotprod,i8mm",
    },
];

impl Isa {
    /// Every level, in the order [`Isa::best`] prefers them (last = best).
    pub const ALL: [Isa; 8] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::AvxVnni,
        Isa::Avx512,
        Isa::Avx512Vnni,
        Isa::Neon,
        Isa::NeonDotprod,
        Isa::NeonI8mm,
    ];

    const fn decl(self) -> &'static Decl {
        &DECLS[self as usize]
    }

    /// The spelling used by `BLOCKQ_ISA`, `FromStr` and `Display`.
    pub const fn name(self) -> &'static str {
        self.decl().name
    }

    /// The CPU features this level's kernels enable (and detection asks
    /// for), comma-separated as `#[target_feature]` names them; empty for
    /// scalar.
    pub const fn features(self) -> &'static str {
        self.decl().features
    }

    /// Whether this CPU runs this level (cached after the first call).
    pub fn is_supported(self) -> bool {
        supported_mask() & (1 << self as u32) != 0
    }

    /// All levels this CPU runs, scalar first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The fastest level this CPU runs.
    pub fn best() -> Isa {
        *Isa::available().last().unwrap_or(&Isa::Scalar)
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An ISA name that [`Isa::from_str`] does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownIsa(pub String);

impl fmt::Display for UnknownIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Isa::ALL.iter().map(|i| i.name()).collect();
        write!(
            f,
            "unknown ISA {:?}; expected one of: {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownIsa {}

impl FromStr for Isa {
    type Err = UnknownIsa;

    /// A name or alias, case-insensitive, `-` and `_` ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Isa::ALL
            .into_iter()
            .find(|i| i.name() == t || i.decl().aliases.contains(&t.as_str()))
            .ok_or_else(|| UnknownIsa(s.to_string()))
    }
}

fn supported_mask() -> u32 {
    static MASK: OnceLock<u32> = OnceLock::new();
    *MASK.get_or_init(detect)
}

/// `a == b`, usable in constants: kernel tables assert at compile time that
/// their `#[target_feature]` list is their ISA's declared one.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether every feature of the comma-separated list `b` is in the list
/// `a` (usable in constants: a table that borrows another level's tiles
/// asserts that it enables all that level's features).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const fn features_include(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut i = 0;
    while i < b.len() {
        let mut j = i;
        while j < b.len() && b[j] != b',' {
            j += 1;
        }
        if !list_has(a, b, i, j) {
            return false;
        }
        i = j + 1;
    }
    true
}

/// Whether the comma-separated list `a` has the item `b[start..end]`.
const fn list_has(a: &[u8], b: &[u8], start: usize, end: usize) -> bool {
    let mut i = 0;
    while i < a.len() {
        let mut j = i;
        while j < a.len() && a[j] != b',' {
            j += 1;
        }
        if j - i == end - start {
            let mut k = 0;
            while k < end - start && a[i + k] == b[start + k] {
                k += 1;
            }
            if k == end - start {
                return true;
            }
        }
        i = j + 1;
    }
    false
}

/// Levels whose every declared feature this CPU has.
fn detect() -> u32 {
    Isa::ALL
        .into_iter()
        .filter(|isa| {
            isa.features()
                .split(',')
                .filter(|f| !f.is_empty())
                .all(has_feature)
        })
        .fold(0, |mask, isa| mask | 1 << isa as u32)
}

/// Whether this CPU has the feature `name` (a name used in [`DECLS`]).
/// Features of another architecture are absent.
fn has_feature(name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        match name {
            "avx2" => has!("avx2"),
            "fma" => has!("fma"),
            "f16c" => has!("f16c"),
            "avxvnni" => has!("avxvnni"),
            "avx512f" => has!("avx512f"),
            "avx512bw" => has!("avx512bw"),
            "avx512vl" => has!("avx512vl"),
            "avx512vnni" => has!("avx512vnni"),
            _ => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        match name {
            "neon" => has!("neon"),
            "dotprod" => has!("dotprod"),
            "i8mm" => has!("i8mm"),
            _ => false,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = name;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
            assert_eq!(isa.to_string().to_uppercase().parse::<Isa>().unwrap(), isa);
        }
        let err = "sse9".parse::<Isa>().unwrap_err().to_string();
        assert!(err.contains("sse9") && err.contains("avx512vnni"), "{err}");
    }

    #[test]
    fn scalar_always_available_and_best_is_supported() {
        assert!(Isa::Scalar.is_supported());
        assert_eq!(Isa::available()[0], Isa::Scalar);
        assert!(Isa::best().is_supported());
    }

    #[test]
    fn other_arch_levels_are_unsupported() {
        let foreign: &[Isa] = if cfg!(target_arch = "x86_64") {
            &[Isa::Neon, Isa::NeonDotprod, Isa::NeonI8mm]
        } else {
            &[Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Avx512Vnni]
        };
        for isa in foreign {
            assert!(!isa.is_supported(), "{isa}");
        }
    }

    #[test]
    fn feature_lists_include() {
        assert!(features_include("avx2,fma,f16c,avxvnni", "avx2,fma,f16c"));
        assert!(!features_include("avx2,fma,f16c", "avx2,fma,f16c,avxvnni"));
        assert!(!features_include("avx512f,avx2", "avx512"));
        for isa in Isa::ALL {
            assert!(features_include(isa.features(), isa.features()), "{isa}");
        }
    }
}
