//! Input decoding and checks shared by the blockq fuzz targets.
//!
//! Each target reads its case from the fuzzer's bytes with [`Src`], a cursor
//! that never runs dry: past the end of the input it keeps producing bytes
//! (zeros, the input's last bytes repeated, or a PRNG seeded by the input, as
//! the first byte chooses), so a short input still describes a whole layer and
//! its inputs (e.g. one GGUF block repeated over the whole matrix).
//! [`Enc`] writes the same layout; the seed generator (`examples/seeds.rs`)
//! uses it to build the committed corpus.
//!
//! Every differential check runs each ISA of [`dispatch::available`] (scalar
//! included) and compares with the scalar result bit for bit
//! ([`first_difference`]: NaN equals NaN, nothing else is forgiven).

use blockq::kernels::formats::{FloatElem, PackedBlock};
use blockq::kernels::match_format;
use blockq::{dispatch, first_difference, Error, Isa, QuantType, QuantizedLinear};
use half::f16;

/// Upper bound on `batch * out * in` multiply-adds of one forward in a case,
/// so that one execution stays in the millisecond range.
pub const MAX_MACS: usize = 1 << 21;

#[derive(Clone, Copy, Debug)]
enum Fill {
    Zero,
    /// Repeat the last `period` bytes of the input.
    Cycle(usize),
    Prng,
}

/// A byte cursor over the fuzzer's input that never fails (see the crate docs).
pub struct Src<'a> {
    data: &'a [u8],
    pos: usize,
    fill: Fill,
    rng: u64,
}

impl<'a> Src<'a> {
    /// Byte 0 (`f`) chooses the fill used past the end: by `f % 3`, zeros,
    /// the last `f / 3 + 1` input bytes (after byte 0) repeated, or xorshift
    /// bytes seeded by a hash of the input.
    pub fn new(data: &'a [u8]) -> Self {
        let f = data.first().copied().unwrap_or(0);
        let fill = match f % 3 {
            0 => Fill::Zero,
            1 => Fill::Cycle((f as usize / 3 + 1).min(data.len().saturating_sub(1))),
            _ => Fill::Prng,
        };
        let mut h = 0xcbf2_9ce4_8422_2325u64; // FNV-1a
        for &b in data {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Src {
            data,
            pos: data.len().min(1),
            fill,
            rng: h | 1,
        }
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        let i = self.pos;
        self.pos += 1;
        if let Some(&b) = self.data.get(i) {
            return b;
        }
        match self.fill {
            Fill::Zero => 0,
            Fill::Cycle(0) => 0,
            Fill::Cycle(p) => self.data[self.data.len() - p + (i - self.data.len()) % p],
            Fill::Prng => {
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            }
        }
    }

    /// Little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(core::array::from_fn(|_| self.u8()))
    }

    /// Little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(core::array::from_fn(|_| self.u8()))
    }

    /// `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }

    /// Input bytes not consumed yet.
    pub fn unread(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// A vector of `len` f32: a mode byte, a 4-byte scale, then per value:
    /// mode 0 raw f32 bits (4 bytes, every pattern), 1 an i8 times the scale,
    /// 2 f16 bits widened (2 bytes), 3 an entry of [`special`].
    pub fn values(&mut self, len: usize) -> Vec<f32> {
        let mode = self.u8() % 4;
        let scale = f32::from_bits(self.u32());
        (0..len)
            .map(|_| match mode {
                0 => f32::from_bits(self.u32()),
                1 => self.u8() as i8 as f32 * scale,
                2 => f16::from_bits(self.u16()).to_f32(),
                _ => special(self.u8(), scale),
            })
            .collect()
    }
}

/// Edge values of the activation quantizer, the quantizers and the float
/// formats.
pub const SPECIALS: [f32; 36] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -0.5,
    1.5,
    -2.5,
    127.0,
    -127.0,
    127.5,
    63.5,
    f32::NAN,
    -f32::NAN,
    f32::from_bits(0x7F80_0001), // signalling NaN
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MAX,
    -f32::MAX,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    f32::from_bits(1),           // smallest subnormal
    f32::from_bits(0x807F_FFFF), // largest negative subnormal
    f32::from_bits(7 << 23),     // 2^-120: smallest non-zero activation amax
    f32::from_bits((7 << 23) - 1),
    65504.0, // largest f16
    65520.0, // rounds to f16 infinity
    -65519.0,
    6e-8, // f16 subnormal range
    1e-7,
    3.0,
    -7.0,
    -65520.0,                    // a Q4_1 / Q5_1 minimum that overflows f16
    f32::from_bits(0x7F7F_7FFF), // largest f32 with a finite bf16
    f32::from_bits(0x7F7F_8000), // rounds to bf16 infinity
    f32::from_bits(0x3F80_8000), // bf16 tie (rounds to even, down)
];

/// Value of special-mode byte `b`: [`SPECIALS`] or a multiple of `scale`.
pub fn special(b: u8, scale: f32) -> f32 {
    match b as usize % (SPECIALS.len() + 4) {
        i if i < SPECIALS.len() => SPECIALS[i],
        i if i == SPECIALS.len() => scale,
        i if i == SPECIALS.len() + 1 => -scale,
        i if i == SPECIALS.len() + 2 => scale * 0.5,
        _ => scale * 127.5,
    }
}

/// `v` made finite (NaN to 0, ±Inf to ±MAX), for buffers the API requires finite.
pub fn finite(v: f32) -> f32 {
    if v.is_nan() {
        0.0
    } else if v.is_infinite() {
        f32::MAX.copysign(v)
    } else {
        v
    }
}

/// f16 `bits` made finite by clearing the top exponent bit of NaN/Inf.
pub fn finite_f16(bits: u16) -> f16 {
    let h = f16::from_bits(bits);
    if h.is_finite() {
        h
    } else {
        f16::from_bits(bits ^ 0x4000)
    }
}

/// Number of layer sources [`read_layer`] knows: the stored weights of each
/// format of [`QuantType::ALL`] as they are, then each format quantized by
/// the layer itself from f32 values.
pub const LAYER_KINDS: usize = 2 * QuantType::COUNT;

/// A block of `B` with arbitrary codes: its `B::SCALES` f16 scales (`d`, then
/// the minimum `m` or `dmin` for formats with one), then its `B::GROUPS`
/// 4-byte lane groups of stored codes (every byte pattern: every code, every
/// Q5 high bit) and `B::SCALE_GROUPS` of sub-block scales (k-quants: every
/// 6-bit scale and minimum, every Q6_K scale). NaN/Inf scales are made
/// finite (see [`finite_f16`]) when `finite`.
pub fn raw_block<B: PackedBlock>(src: &mut Src, finite: bool) -> B {
    let mut scales = [f16::ZERO; 2];
    for d in scales.iter_mut().take(B::SCALES) {
        let bits = src.u16();
        *d = if finite {
            finite_f16(bits)
        } else {
            f16::from_bits(bits)
        };
    }
    let groups: Vec<[u8; 4]> = (0..B::GROUPS + B::SCALE_GROUPS)
        .map(|_| src.u32().to_le_bytes())
        .collect();
    B::from_packed(scales, |c| groups[c])
}

/// A value of the float format `E` with arbitrary bits (read as GGUF stores
/// it, little-endian), made finite when `finite` by clearing the top bit of
/// its exponent (as [`finite_f16`] does).
pub fn raw_float<E: FloatElem>(src: &mut Src, finite: bool) -> E {
    let mut b = src.bytes(core::mem::size_of::<E>());
    let top = if cfg!(target_endian = "little") {
        b.len() - 1
    } else {
        0
    };
    if finite && bytemuck::pod_read_unaligned::<E>(&b).is_non_finite() {
        b[top] ^= 0x40;
    }
    bytemuck::pod_read_unaligned(&b)
}

/// The largest f32 that the float format `E` converts to a finite value
/// (f32::MAX for F32, 65519.996 for F16): conversions are monotone in the
/// magnitude, so a binary search over the bit patterns finds it.
pub fn float_limit<E: FloatElem>() -> f32 {
    let finite = |bits: u32| E::from_f32_le(f32::from_bits(bits)).le_to_f32().is_finite();
    let (mut lo, mut hi) = (0u32, 0x7F80_0000u32);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if finite(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    f32::from_bits(lo)
}

/// The error building a layer from these stored blocks must give: the first
/// block (row-major, `nb` per row) with a NaN/Inf scale or minimum.
pub fn stored_blocks_error<B: PackedBlock>(blocks: &[B], nb: usize) -> Option<Error> {
    blocks
        .iter()
        .position(|b| b.scales()[..B::SCALES].iter().any(|d| !d.is_finite()))
        .map(|i| Error::NonFiniteScale {
            quant_type: B::FORMAT,
            row: i / nb,
            block: i % nb,
        })
}

/// The error building a layer from these stored float weights (rows of `k`)
/// must give: for the first NaN/Inf value, F32 `NonFinite` (f32 weights are
/// checked as inputs), the narrower formats `NonFiniteScale` at its row and
/// column.
pub fn stored_floats_error<E: FloatElem>(w: &[E], k: usize) -> Option<Error> {
    let i = w.iter().position(|v| v.is_non_finite())?;
    Some(if E::FORMAT == QuantType::F32 {
        Error::NonFinite {
            what: "weight",
            index: i,
            value: w[i].to_f32(),
        }
    } else {
        Error::NonFiniteScale {
            quant_type: E::FORMAT,
            row: i / k,
            block: i % k,
        }
    })
}

/// Reads a `[n, k]` layer of kind `kind % LAYER_KINDS` (see [`LAYER_KINDS`])
/// and an optional bias (finite). Kind `i < QuantType::COUNT`: the stored
/// weights of format `QuantType::ALL[i]`: raw blocks ([`raw_block`]: arbitrary
/// codes, scales and minimums) through `from_blocks`, or raw values
/// ([`raw_float`]) through `from_floats`. Kind `COUNT + i`: f32 values
/// (finite, within what the format holds: ±65504 for block formats, whose f16
/// scales and minimums then cannot overflow, [`float_limit`] for float
/// formats) quantized by `try_from_linear_params`.
///
/// Stored scales and values are made finite when `finite`; otherwise they are
/// arbitrary and the returned error is the one the build must fail with (none
/// for a valid layer). Returns the build's result and a description too.
pub fn try_read_layer(
    src: &mut Src,
    kind: u8,
    k: usize,
    n: usize,
    bias: bool,
    finite_stored: bool,
) -> (Result<QuantizedLinear, Error>, Option<Error>, String) {
    let kind = kind as usize % LAYER_KINDS;
    let qt = QuantType::ALL[kind % QuantType::COUNT];
    let bias: Option<Vec<f32>> = bias.then(|| src.values(n).into_iter().map(finite).collect());
    let b = bias.as_deref();
    let (layer, expected, what) = if kind < QuantType::COUNT {
        let (layer, expected) = match_format!(
            qt,
            B => {
                let nb = k.div_ceil(B::VALUES);
                let blocks: Vec<B> = (0..n * nb).map(|_| raw_block::<B>(src, finite_stored)).collect();
                (
                    QuantizedLinear::from_blocks(&blocks, b, k, n),
                    stored_blocks_error(&blocks, nb),
                )
            },
            E => {
                let w: Vec<E> = (0..n * k).map(|_| raw_float::<E>(src, finite_stored)).collect();
                (
                    QuantizedLinear::from_floats(&w, b, k, n),
                    stored_floats_error(&w, k),
                )
            },
        );
        (layer, expected, format!("raw {qt}"))
    } else {
        let limit = match_format!(qt, B => 65504.0, E => float_limit::<E>());
        let w: Vec<f32> = src
            .values(n * k)
            .into_iter()
            .map(|v| finite(v).clamp(-limit, limit))
            .collect();
        (
            QuantizedLinear::try_from_linear_params(&w, b, k, n, qt),
            None,
            format!("{qt} from f32"),
        )
    };
    let desc = format!(
        "{what} layer k={k} n={n} bias={}",
        if bias.is_some() { "yes" } else { "no" }
    );
    (layer, expected, desc)
}

/// [`try_read_layer`] with finite stored scales and values: a valid layer.
pub fn read_layer(
    src: &mut Src,
    kind: u8,
    k: usize,
    n: usize,
    bias: bool,
) -> (QuantizedLinear, String) {
    let (layer, _, desc) = try_read_layer(src, kind, k, n, bias, true);
    let layer =
        layer.unwrap_or_else(|e| panic!("building a valid layer failed: {e} ({e:?}); {desc}"));
    (layer, desc)
}

/// Panics with the first differing element (as `[row, col]` of a row length
/// `cols`) unless `got` and `want` have the same bits (NaN equal to NaN).
pub fn assert_same(what: &str, got: &[f32], want: &[f32], cols: usize) {
    if let Some(i) = first_difference(got, want) {
        let show = |v: Option<&f32>| match v {
            Some(v) => format!("{v:e} ({:#010x})", v.to_bits()),
            None => "<missing>".into(),
        };
        panic!(
            "MISMATCH {what}: first difference at [{}, {}] (index {i}; lengths {} vs {}): \
             got {} want {}",
            i / cols.max(1),
            i % cols.max(1),
            got.len(),
            want.len(),
            show(got.get(i)),
            show(want.get(i)),
        );
    }
}

/// `layer` switched to `isa`, which must work for an available ISA.
pub fn on_isa(layer: &mut QuantizedLinear, isa: Isa) {
    layer
        .set_isa(isa)
        .unwrap_or_else(|e| panic!("set_isa({isa}) failed for an available ISA: {e}"));
}

/// The differential check: the `m` rows `x` forwarded by every available ISA
/// equal the scalar result; and on each ISA the first, the last and row
/// `split % m` forwarded alone, and the rows from `split % m` on forwarded as
/// their own batch, equal the same rows of the whole batch (batch invariance).
/// (Not every row alone: that would multiply the cost by the batch size.)
pub fn check_forward(layer: &QuantizedLinear, x: &[f32], m: usize, split: usize, case: &str) {
    let (k, n) = (layer.in_features, layer.out_features);
    let mut l = layer.clone();
    on_isa(&mut l, Isa::Scalar);
    let forward = |l: &QuantizedLinear, x: &[f32], m: usize| {
        l.try_forward_f32(x, m)
            .unwrap_or_else(|e| panic!("{} forward of valid shapes failed: {e}; {case}", l.isa()))
    };
    let want = forward(&l, x, m);
    for isa in dispatch::available() {
        on_isa(&mut l, isa);
        let got = forward(&l, x, m);
        assert_same(
            &format!("{isa} vs scalar, batch {m}, {case}"),
            &got,
            &want,
            n,
        );
        if m == 1 {
            continue;
        }
        let s = split % m;
        let mut alone_rows = vec![0, s, m - 1];
        alone_rows.sort_unstable();
        alone_rows.dedup();
        for i in alone_rows {
            let alone = forward(&l, &x[i * k..(i + 1) * k], 1);
            assert_same(
                &format!("{isa}: row {i} forwarded alone vs in a batch of {m}, {case}"),
                &alone,
                &got[i * n..(i + 1) * n],
                n,
            );
        }
        if s > 0 && m - s > 1 {
            let tail = forward(&l, &x[s * k..], m - s);
            assert_same(
                &format!(
                    "{isa}: rows {s}..{m} as a batch of {} vs in a batch of {m}, {case}",
                    m - s
                ),
                &tail,
                &got[s * n..],
                n,
            );
        }
    }
}

/// Whether `e` is one of `allowed` (compared field by field; NaN values in
/// `NonFinite` compare by bits).
pub fn error_in(e: &Error, allowed: &[Error]) -> bool {
    allowed.iter().any(|a| match (e, a) {
        (
            Error::NonFinite { what, index, value },
            Error::NonFinite {
                what: w2,
                index: i2,
                value: v2,
            },
        ) => what == w2 && index == i2 && value.to_bits() == v2.to_bits(),
        _ => e == a,
    })
}

/// Panics unless `r` is `Ok` exactly when `allowed` is empty, and otherwise an
/// error from `allowed`. Returns the `Ok` value.
pub fn check_result<T>(r: Result<T, Error>, allowed: &[Error], case: &str) -> Option<T> {
    match r {
        Ok(v) if allowed.is_empty() => Some(v),
        Ok(_) => panic!("ACCEPTED invalid call, expected one of {allowed:?}; {case}"),
        Err(e) if allowed.is_empty() => panic!("REJECTED valid call: {e} ({e:?}); {case}"),
        Err(e) if error_in(&e, allowed) => None,
        Err(e) => panic!("WRONG ERROR {e:?} ({e}), expected one of {allowed:?}; {case}"),
    }
}

/// The first non-finite value of `v`, as the error the API documents for it.
pub fn non_finite(what: &'static str, v: &[f32]) -> Option<Error> {
    v.iter()
        .position(|x| !x.is_finite())
        .map(|index| Error::NonFinite {
            what,
            index,
            value: v[index],
        })
}

/// Errors a bias of `bias` may cause for a layer with `n` outputs.
pub fn bias_errors(bias: Option<&[f32]>, n: usize) -> Vec<Error> {
    match bias {
        Some(b) if b.len() != n => vec![Error::LengthMismatch {
            what: "bias",
            expected: n,
            actual: b.len(),
        }],
        Some(b) => non_finite("bias", b).into_iter().collect(),
        None => vec![],
    }
}

/// Writes inputs in the layout [`Src`] reads (for seeds).
#[derive(Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    /// Starts an input with fill byte `fill` (see [`Src::new`]).
    pub fn new(fill: u8) -> Self {
        Enc(vec![fill])
    }
    /// Starts an input whose last `period` (1..=86) bytes repeat past its end.
    pub fn cycle(period: u8) -> Self {
        Enc(vec![(period - 1) * 3 + 1])
    }
    /// One byte.
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    /// Little-endian u16.
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Little-endian u32.
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Little-endian u64.
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Raw bytes.
    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    /// A value vector in raw-bits mode (mode 0).
    pub fn raw_values(mut self, v: &[f32]) -> Self {
        self = self.u8(0).u32(0);
        for x in v {
            self = self.u32(x.to_bits());
        }
        self
    }
    /// A value vector in i8-times-scale mode (mode 1).
    pub fn i8_values(mut self, scale: f32, v: &[i8]) -> Self {
        self = self.u8(1).u32(scale.to_bits());
        for &x in v {
            self = self.u8(x as u8);
        }
        self
    }
    /// A value vector of [`special`] indices (mode 3).
    pub fn special_values(mut self, scale: f32, idx: &[u8]) -> Self {
        self = self.u8(3).u32(scale.to_bits());
        self.bytes(idx)
    }
}
