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

    /// The spelling used by `BLOCKQ_ISA`, `FromStr` and `Display`.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "dotprod",
            Isa::NeonI8mm => "i8mm",
        }
    }

    /// The CPU features this level needs, as the vendor names them.
    pub const fn features(self) -> &'static str {
        match self {
            Isa::Scalar => "none",
            Isa::Avx2 => "avx2 fma f16c",
            Isa::AvxVnni => "avx2 fma f16c avxvnni",
            Isa::Avx512 => "avx512f avx512bw avx512vl avx2 fma f16c",
            Isa::Avx512Vnni => "avx512f avx512bw avx512vl avx512vnni avx2 fma f16c",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon dotprod",
            Isa::NeonI8mm => "neon dotprod i8mm",
        }
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

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase().replace(['-', '_'], "");
        let isa = match t.as_str() {
            "scalar" | "portable" => Isa::Scalar,
            "avx2" => Isa::Avx2,
            "avxvnni" => Isa::AvxVnni,
            "avx512" | "avx512bw" => Isa::Avx512,
            "avx512vnni" | "vnni" => Isa::Avx512Vnni,
            "neon" => Isa::Neon,
            "dotprod" | "neondotprod" => Isa::NeonDotprod,
            "i8mm" | "neoni8mm" => Isa::NeonI8mm,
            _ => return Err(UnknownIsa(s.to_string())),
        };
        Ok(isa)
    }
}

fn supported_mask() -> u32 {
    static MASK: OnceLock<u32> = OnceLock::new();
    *MASK.get_or_init(detect)
}

#[allow(unused_mut)]
fn detect() -> u32 {
    let mut mask = 1u32 << Isa::Scalar as u32;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        let avx512 = avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vl");
        if avx2 {
            mask |= 1 << Isa::Avx2 as u32;
        }
        if avx2 && has!("avxvnni") {
            mask |= 1 << Isa::AvxVnni as u32;
        }
        if avx512 {
            mask |= 1 << Isa::Avx512 as u32;
        }
        if avx512 && has!("avx512vnni") {
            mask |= 1 << Isa::Avx512Vnni as u32;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        let neon = has!("neon");
        let dotprod = neon && has!("dotprod");
        if neon {
            mask |= 1 << Isa::Neon as u32;
        }
        if dotprod {
            mask |= 1 << Isa::NeonDotprod as u32;
        }
        if dotprod && has!("i8mm") {
            mask |= 1 << Isa::NeonI8mm as u32;
        }
    }
    mask
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
}
