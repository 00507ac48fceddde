//! The ISA registry: which kernel table serves which [`Isa`], and the table
//! type itself. Holding a `&'static Kernels` proves its ISA runs here.

#[cfg(target_arch = "aarch64")]
use crate::aarch64;
use crate::formats::WeightFormat;
use crate::isa::Isa;
use crate::scalar;
use crate::tile::{QuantizeFn, TileFn, Tiles};
#[cfg(target_arch = "x86_64")]
use crate::x86;

/// The kernel table of one ISA. Obtaining one (through [`Kernels::for_isa`])
/// checks that the CPU has the ISA, so its functions may be called.
pub struct Kernels {
    pub(crate) isa: Isa,
    /// One row; `out.len() == ceil(x.len() / 32)` (checked by the caller).
    pub(crate) quantize_row: QuantizeFn,
    /// Tile kernels by format.
    pub(crate) tiles: Tiles,
    /// Panels per call when the batch has one row.
    pub(crate) gemv_panels: usize,
    /// Panels per call for batches (at most `MAX_GEMM_PANELS`).
    pub(crate) gemm_panels: usize,
    /// Whether batched float tiles read x packed chunk-major (`TileArgs::xp`):
    /// packed once per row group and thread, read by all the group's tiles.
    pub(crate) pack_x: bool,
}

impl core::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Kernels").field("isa", &self.isa).finish()
    }
}

/// Why a kernel table cannot be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsaError {
    /// The CPU lacks a feature this ISA needs.
    NotSupported(Isa),
    /// This build has no kernels for this ISA (another architecture).
    NotCompiled(Isa),
}

impl core::fmt::Display for IsaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IsaError::NotSupported(isa) => write!(
                f,
                "ISA {isa} needs CPU features [{}] that this CPU lacks; available: {}",
                isa.features(),
                available_names()
            ),
            IsaError::NotCompiled(isa) => write!(
                f,
                "ISA {isa} has no kernels in this build (other architecture); available: {}",
                available_names()
            ),
        }
    }
}

impl std::error::Error for IsaError {}

fn available_names() -> String {
    Isa::available()
        .into_iter()
        .filter(|&i| Kernels::is_compiled(i))
        .map(|i| i.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Kernels {
    /// The table for `isa`, if this CPU runs it and this build has it.
    pub fn for_isa(isa: Isa) -> Result<&'static Kernels, IsaError> {
        let table = Self::compiled(isa).ok_or(IsaError::NotCompiled(isa))?;
        if !isa.is_supported() {
            return Err(IsaError::NotSupported(isa));
        }
        Ok(table)
    }

    /// The table of the best ISA this CPU runs.
    pub fn best() -> &'static Kernels {
        Isa::available()
            .into_iter()
            .rev()
            .find_map(|i| Self::for_isa(i).ok())
            .unwrap_or(&scalar::KERNELS)
    }

    fn compiled(isa: Isa) -> Option<&'static Kernels> {
        match isa {
            Isa::Scalar => Some(&scalar::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(&x86::avx2::plain::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => Some(&x86::avx2::vnni::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(&x86::avx512::bw::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Some(&x86::avx512::vnni::KERNELS),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Some(&aarch64::NEON),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDotprod => Some(&aarch64::DOTPROD),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonI8mm => Some(&aarch64::I8MM),
            _ => None,
        }
    }

    /// Whether this build contains kernels for `isa` (regardless of the CPU).
    pub fn is_compiled(isa: Isa) -> bool {
        Self::compiled(isa).is_some()
    }

    /// The ISA of this table.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Whether this ISA has a kernel of its own for `format` (else the
    /// scalar kernel runs it, with the same bits).
    pub fn has_kernel(&self, format: WeightFormat) -> bool {
        self.tiles.get(format).is_some()
    }

    /// The tile kernel for `format` and whether it is this ISA's own.
    pub(crate) fn tile(&self, format: WeightFormat) -> (TileFn, bool) {
        match self.tiles.get(format) {
            Some(t) => (t, true),
            None => match scalar::KERNELS.tiles.get(format) {
                Some(t) => (t, false),
                None => unreachable!("the scalar table has every format"),
            },
        }
    }
}
