//! Non-temporal stores: large outputs of the load loops written around the
//! caches.
//!
//! A plain store to a line that is not cached first reads the line (a
//! read-for-ownership), so writing a buffer larger than the caches costs
//! twice its bytes in memory traffic; on the 2-core Xeon VMs this crate is
//! measured on, filling 64 MiB with plain stores ran at 7 GB/s, with
//! non-temporal stores at 22 GB/s. SSE2's 16-byte `movntdq` is part of
//! baseline x86-64 and fills whole lines as fast as the 64-byte AVX-512 form
//! there, so one function serves every level.

use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

/// Writes with non-temporal stores; dropping it fences them (`sfence`), so
/// they are ordered before any later store of this thread (a rayon job's
/// completion flag, say): a thread that sees that sees the data.
pub(crate) struct NtWriter(());

impl NtWriter {
    pub(crate) fn new() -> NtWriter {
        NtWriter(())
    }

    /// Copies `src` into `dst` (same length, panics otherwise): the 16-byte
    /// aligned body of `dst` with non-temporal stores, its ends with plain
    /// ones.
    #[inline]
    pub(crate) fn copy(&mut self, src: &[u8], dst: &mut [u8]) {
        assert_eq!(src.len(), dst.len(), "NtWriter::copy: length mismatch");
        // Whole cache lines: a partly written line of non-temporal stores
        // is a slow partial write to memory; plain stores handle the ends.
        let head = dst.as_ptr().align_offset(64).min(dst.len());
        let body = (dst.len() - head) / 64 * 64;
        let (dst_head, rest) = dst.split_at_mut(head);
        let (dst_body, dst_tail) = rest.split_at_mut(body);
        let (src_head, rest) = src.split_at(head);
        let (src_body, src_tail) = rest.split_at(body);
        dst_head.copy_from_slice(src_head);
        for (d, s) in dst_body.chunks_exact_mut(16).zip(src_body.chunks_exact(16)) {
            // SAFETY: `s` and `d` are 16 bytes each; `d` is 16-byte aligned
            // (the body starts at `dst`'s first aligned byte and steps by
            // 16), as `movntdq` requires; `loadu` takes any alignment. SSE2
            // is part of every x86-64 CPU.
            unsafe {
                let v = _mm_loadu_si128(s.as_ptr().cast::<__m128i>());
                _mm_stream_si128(d.as_mut_ptr().cast::<__m128i>(), v);
            }
        }
        dst_tail.copy_from_slice(src_tail);
    }
}

impl Drop for NtWriter {
    fn drop(&mut self) {
        // SAFETY: `sfence` has no preconditions; SSE is part of x86-64.
        unsafe { _mm_sfence() };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copies_every_length_at_every_alignment() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for off in 0..32 {
            for len in (0..140).chain([256, 299 - off]) {
                let mut dst = vec![0xAAu8; 300];
                super::NtWriter::new().copy(&src[off..off + len], &mut dst[off..off + len]);
                assert_eq!(&dst[off..off + len], &src[off..off + len], "{off} {len}");
                assert!(dst[..off]
                    .iter()
                    .chain(&dst[off + len..])
                    .all(|&b| b == 0xAA));
            }
        }
    }
}
