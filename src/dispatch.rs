//! Run-time choice of the kernel ISA.
//!
//! By default a layer uses the best ISA this CPU runs ([`Isa::best`]). The
//! environment variable `BLOCKQ_ISA=<name>` (read once per process) overrides
//! that default, and [`crate::QuantizedLinear::with_isa`] overrides it per layer.
//! Both refuse an ISA the CPU lacks with [`Error::IsaUnavailable`].

use crate::Error;
pub use blockq_kernels::Isa;
use blockq_kernels::Kernels;
use std::sync::OnceLock;

/// Name of the environment variable that overrides the default ISA.
pub const ISA_ENV: &str = "BLOCKQ_ISA";

/// The kernel table for `isa`, or why it cannot run here.
pub fn kernels(isa: Isa) -> Result<&'static Kernels, Error> {
    Ok(Kernels::for_isa(isa)?)
}

/// Parses an ISA name as `BLOCKQ_ISA` does, and checks that it runs here.
pub fn parse_isa(name: &str) -> Result<Isa, Error> {
    let isa: Isa = name
        .parse()
        .map_err(|_| Error::UnknownIsa(name.to_string()))?;
    kernels(isa)?;
    Ok(isa)
}

/// The ISA new layers use: `BLOCKQ_ISA` if set (and valid here), else the best.
pub fn default_isa() -> Result<Isa, Error> {
    static DEFAULT: OnceLock<Result<Isa, Error>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| match std::env::var(ISA_ENV) {
            Ok(name) if !name.trim().is_empty() => parse_isa(&name),
            _ => Ok(available().last().copied().unwrap_or(Isa::Scalar)),
        })
        .clone()
}

/// ISAs with kernels in this build that this CPU runs, slowest first.
pub fn available() -> Vec<Isa> {
    Isa::available()
        .into_iter()
        .filter(|&i| Kernels::is_compiled(i))
        .collect()
}

/// The CPU's model name as the OS reports it (Linux: `model name` in
/// `/proc/cpuinfo`), or the architecture's name where it does not.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_isa_errors_are_clear() {
        assert_eq!(parse_isa("scalar").unwrap(), Isa::Scalar);
        let e = parse_isa("mmx").unwrap_err();
        assert!(matches!(e, Error::UnknownIsa(_)));
        assert!(e.to_string().contains("avx512vnni"));
        let foreign = if cfg!(target_arch = "x86_64") {
            "neon"
        } else {
            "avx2"
        };
        let e = parse_isa(foreign).unwrap_err();
        assert!(matches!(e, Error::IsaUnavailable { .. }), "{e}");
        assert!(e.to_string().contains("available"), "{e}");
    }

    #[test]
    fn default_is_available() {
        let isa = default_isa().unwrap();
        assert!(available().contains(&isa));
        assert_eq!(available()[0], Isa::Scalar);
    }
}
