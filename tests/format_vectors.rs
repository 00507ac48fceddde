//! Fixed test vectors from independent oracles: every record must give
//! blockq the same quantized bytes and the same dequantized values, bit for
//! bit (any NaN equals any NaN).
//!
//! - tests/data/format_vectors.bin (written by
//!   tests/data/make_format_vectors.py with gguf-py, llama.cpp's Python
//!   package, and checked there against a port of llama.cpp's C reference
//!   quantizers): Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and BF16: random rows, exact
//!   rounding ties, signed zeros, all-equal blocks, subnormals, blocks so
//!   small that 1/d overflows, scales that overflow f16 and, for BF16, NaNs
//!   and infinities.
//! - tests/data/kquant_vectors.bin (written by
//!   tests/data/make_kquant_vectors.py with llama.cpp's C reference built
//!   from source, its dequantization cross-checked with gguf-py's): Q4_K,
//!   Q5_K and Q6_K on random, edge-case and real trained weight rows.
//!
//! Layout of the files, all integers and floats little-endian:
//!
//! ```text
//! magic    4 bytes  b"BQFV"
//! version  u32      1
//! count    u32      number of records
//! count records, each:
//!   u8 len, len ASCII bytes   format name as ggml spells it ("Q8_0", ..., "Q6_K")
//!   u8 len, len ASCII bytes   case name
//!   u32 n                     number of values (whole blocks)
//!   n f32                     input
//!   u32 nbytes, nbytes bytes  quantized row (GGUF block bytes)
//!   n f32                     dequantization of those bytes
//! ```

use blockq::{first_difference, QuantType};
use std::collections::BTreeMap;

/// Each file and the formats it must hold.
const FIXTURES: [(&str, &[&str]); 2] = [
    (
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/format_vectors.bin"),
        &["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "BF16"],
    ),
    (
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kquant_vectors.bin"),
        &["Q4_K", "Q5_K", "Q6_K"],
    ),
];

struct Record {
    format: String,
    case: String,
    input: Vec<f32>,
    bytes: Vec<u8>,
    dequantized: Vec<f32>,
}

struct Reader<'a> {
    path: &'a str,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .unwrap_or_else(|| panic!("{}: truncated at byte {}", self.path, self.pos));
        let s = &self.data[self.pos..end];
        self.pos = end;
        s
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }

    fn name(&mut self) -> String {
        let len = self.u8() as usize;
        let s = self.take(len);
        assert!(s.is_ascii(), "{}: name {s:?} is not ASCII", self.path);
        String::from_utf8(s.to_vec()).unwrap()
    }

    fn f32s(&mut self, n: usize) -> Vec<f32> {
        let len = n.checked_mul(4).expect("value count overflows");
        self.take(len)
            .chunks_exact(4)
            .map(|c| f32::from_bits(u32::from_le_bytes(c.try_into().unwrap())))
            .collect()
    }
}

fn records(path: &str) -> Vec<Record> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut r = Reader {
        path,
        data: &data,
        pos: 0,
    };
    assert_eq!(r.take(4), b"BQFV".as_slice(), "{path}: bad magic");
    assert_eq!(r.u32(), 1, "{path}: unknown version");
    let count = r.u32() as usize;
    let records = (0..count)
        .map(|_| {
            let format = r.name();
            let case = r.name();
            let n = r.u32() as usize;
            let input = r.f32s(n);
            let nbytes = r.u32() as usize;
            let bytes = r.take(nbytes).to_vec();
            let dequantized = r.f32s(n);
            Record {
                format,
                case,
                input,
                bytes,
                dequantized,
            }
        })
        .collect();
    assert_eq!(r.pos, data.len(), "{path}: bytes after the last record");
    records
}

#[test]
fn format_vectors_match_gguf_py() {
    check_fixture(FIXTURES[0]);
}

#[test]
fn kquant_vectors_match_the_c_reference() {
    check_fixture(FIXTURES[1]);
}

fn check_fixture((path, formats): (&str, &[&str])) {
    let records = records(path);
    let mut checked: BTreeMap<&str, usize> = BTreeMap::new();
    for rec in &records {
        let (format, case, x) = (rec.format.as_str(), rec.case.as_str(), &rec.input);
        let n = x.len();
        let f: QuantType = format
            .parse()
            .unwrap_or_else(|_| panic!("{format} {case}: unknown format name"));
        assert_eq!(n % f.block_size(), 0, "{format} {case}: {n} values");

        assert_eq!(
            f.row_bytes(n),
            rec.bytes.len(),
            "{format} {case}: row_bytes({n})"
        );
        let mut q = vec![0u8; f.row_bytes(n)];
        f.quantize_to_bytes(x, &mut q);
        let first = q.iter().zip(&rec.bytes).position(|(a, b)| a != b);
        assert_eq!(
            q, rec.bytes,
            "{format} {case}: quantized bytes differ, first at byte {first:?}"
        );

        let mut d = vec![0f32; n];
        f.dequantize_bytes(&rec.bytes, &mut d);
        if let Some(i) = first_difference(&d, &rec.dequantized) {
            let (got, want) = (d[i], rec.dequantized[i]);
            panic!(
                "{format} {case}: dequantized value {i} is {got:e} ({:#010x}), expected {want:e} ({:#010x})",
                got.to_bits(),
                want.to_bits()
            );
        }
        *checked.entry(format).or_default() += 1;
    }
    for format in formats {
        let count = checked.get(format).copied().unwrap_or(0);
        println!("{format}: {count} records checked");
        assert!(count > 0, "{path}: no {format} records");
    }
    assert_eq!(
        checked.len(),
        formats.len(),
        "{path}: unexpected formats {checked:?}"
    );
}

/// The same records on each clone of the load-time loops this CPU runs
/// (`blockq_kernels::load`): the bytes and values of the reference.
#[test]
fn format_vectors_match_on_every_load_clone() {
    use blockq::kernels::formats::{FloatElem, PackedBlock};
    use blockq::kernels::load::{self, Level};
    use blockq::kernels::match_format;
    let records: Vec<Record> = FIXTURES.iter().flat_map(|(p, _)| records(p)).collect();
    for level in Level::ALL {
        if !level.available() {
            println!("{level}: SKIPPED (this CPU lacks it)");
            continue;
        }
        for rec in &records {
            let f: QuantType = rec.format.parse().unwrap();
            let (x, n) = (&rec.input, rec.input.len());
            let at = format!("{} {} on {level}", rec.format, rec.case);
            let (bytes, deq) = match_format!(
                f,
                B => {
                    let mut q = vec![B::padding(); n / B::VALUES];
                    load::quantize_blocks_on(level, x, &mut q).unwrap();
                    let stored: Vec<B> = rec
                        .bytes
                        .chunks_exact(f.bytes_per_block())
                        .map(bytemuck::pod_read_unaligned)
                        .collect();
                    let mut d = vec![0f32; n];
                    load::dequantize_blocks_on(level, &stored, &mut d).unwrap();
                    (bytemuck::cast_slice::<B, u8>(&q).to_vec(), d)
                },
                E => {
                    let mut q = vec![E::from_f32_le(0.0); n];
                    load::floats_from_f32_on(level, x, &mut q).unwrap();
                    let stored: Vec<E> = rec
                        .bytes
                        .chunks_exact(f.bytes_per_block())
                        .map(bytemuck::pod_read_unaligned::<E>)
                        .collect();
                    let mut d = vec![0f32; n];
                    load::floats_to_f32_on(level, &stored, &mut d).unwrap();
                    (bytemuck::cast_slice::<E, u8>(&q).to_vec(), d)
                },
            );
            assert!(bytes == rec.bytes, "{at}: quantized bytes differ");
            assert!(
                first_difference(&deq, &rec.dequantized).is_none(),
                "{at}: dequantized values differ"
            );
        }
    }
}
