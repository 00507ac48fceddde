//! Read-only memory maps of weight files, behind a safe function, and large
//! zeroed buffers backed by huge pages ([`zeroed_vec_huge`]).
//!
//! Mapping a file is `unsafe` in `memmap2` because the mapped bytes may change
//! (or vanish) under the program if the file is modified or truncated while it
//! is mapped. [`map_file`] is safe to call under the assumption stated on it;
//! the blockq loaders rely on it so that they contain no `unsafe` themselves.

pub use memmap2::Mmap;

/// Maps `file` read-only into memory.
///
/// **Assumption:** the file is not modified or truncated, by this process or
/// any other, while the returned map (or a slice of it) is alive. Model files
/// are written once and then only read, which is the case this is for. If the
/// assumption is broken, reads of the map may return changing bytes or, for a
/// truncated file, raise `SIGBUS`; do not map files that other programs write.
///
/// Errors are those of the `mmap` system call (e.g. the file is not readable).
pub fn map_file(file: &std::fs::File) -> std::io::Result<Mmap> {
    // SAFETY: memmap2 requires that the mapped file is not modified while the
    // map is alive (otherwise `&[u8]` views of it could change under us). That
    // cannot be checked here; it is the documented assumption of this function,
    // which callers accept for read-only model files. The map itself is created
    // read-only, so nothing in this process writes through it.
    unsafe { Mmap::map(file) }
}

/// `len` zeroed values; on Linux, for buffers of 8 MiB or more, the kernel
/// is first asked (`madvise(MADV_HUGEPAGE)`) to back the buffer with
/// transparent huge pages. First touch of fresh memory then faults once per
/// 2 MiB rather than once per 4 KiB page, which bounds every load path that
/// fills a new buffer (packing, `dequantize_weights`): on a VM, 4 KiB faults
/// can cost more than the loop that fills the pages. (The buffer is zeroed
/// after the advice, not by `calloc`, which may clear reused heap memory
/// before any advice could apply.)
pub fn zeroed_vec_huge<T: bytemuck::Zeroable + Copy>(len: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    #[cfg(all(target_os = "linux", not(miri)))]
    advise_huge_pages(v.spare_capacity_mut());
    v.resize(len, T::zeroed());
    v
}

#[cfg(all(target_os = "linux", not(miri)))]
fn advise_huge_pages<T>(v: &mut [T]) {
    const HUGE: usize = 2 << 20;
    let bytes = core::mem::size_of_val(v);
    if bytes < 4 * HUGE {
        return;
    }
    let start = v.as_mut_ptr() as usize;
    let (first, end) = (start.next_multiple_of(HUGE), (start + bytes) / HUGE * HUGE);
    if end > first {
        // SAFETY: [first, end) lies inside `v`, which is borrowed mutably
        // here. MADV_HUGEPAGE only changes which pages the kernel backs the
        // range with (contents are kept), so no value Rust sees changes. The
        // advice may be refused (THP disabled); that is harmless.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_the_bytes_of_a_file() {
        let path = std::env::temp_dir().join(format!(
            "blockq-kernels-mmap-{}-{:?}.bin",
            std::process::id(),
            std::thread::current().id()
        ));
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&bytes))
            .unwrap();
        let map = map_file(&std::fs::File::open(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&map.unwrap()[..], &bytes[..]);
    }

    #[test]
    fn huge_zeroed_vectors_are_zero_and_writable() {
        // (Small under Miri, where the advice is not made.)
        let lens: &[usize] = if cfg!(miri) {
            &[0, 1, 5000]
        } else {
            &[0, 1, 5 << 20, (9 << 20) + 3]
        };
        for &len in lens {
            let mut v: Vec<u16> = zeroed_vec_huge(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0));
            for (i, x) in v.iter_mut().enumerate().step_by(4099) {
                *x = i as u16;
            }
            assert!(v
                .iter()
                .enumerate()
                .step_by(4099)
                .all(|(i, &x)| x == i as u16));
        }
    }
}
