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

/// Buffers of this many bytes or more are advised to use huge pages and
/// are zeroed as [`zeroed_vec_huge`] describes (small under Miri, so that
/// its tests run those paths).
const LARGE: usize = if cfg!(miri) { 4096 } else { 8 << 20 };

/// `len` zeroed values. Large buffers (8 MiB or more) are made so that their
/// pages are first touched by the threads that fill them, not by this
/// function on the calling thread: on a VM a fresh page's first touch (the
/// kernel's fault and zeroing, and the host's) costs more than the loop
/// that fills it, and `dequantize_weights` or parallel packing then fault
/// their pages in on every thread. On Linux the kernel is also asked
/// (`madvise(MADV_HUGEPAGE)`) to back the untouched pages with transparent
/// huge pages: first touch faults once per 2 MiB rather than once per
/// 4 KiB page.
/// - Types aligned to 16 bytes or less come from the allocator's zeroed
///   allocation (`calloc`), which for a fresh mapping writes nothing.
/// - More aligned types (the 64-byte lines of packed panels, which the
///   system allocator would zero with a plain `memset` on this thread) are
///   zeroed by rayon's current pool, one 2 MiB piece per task.
pub fn zeroed_vec_huge<T: bytemuck::Zeroable + Copy + Send>(len: usize) -> Vec<T> {
    let size = core::mem::size_of::<T>();
    if len.saturating_mul(size) < LARGE {
        return vec![T::zeroed(); len];
    }
    if core::mem::align_of::<T>() <= 16 {
        let layout = core::alloc::Layout::array::<T>(len)
            .unwrap_or_else(|_| panic!("zeroed_vec_huge: {len} values overflow"));
        // SAFETY: the layout's size is at least LARGE, so not zero.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `ptr` comes from the global allocator with the layout of
        // `len` values of `T`, which is the layout a `Vec<T>` of capacity
        // `len` owns; its `len` values are initialized, since all-zero
        // bytes are a valid `T` (`Zeroable`).
        let mut v = unsafe { Vec::from_raw_parts(ptr, len, len) };
        #[cfg(all(target_os = "linux", not(miri)))]
        advise_huge_pages(&mut v);
        return v;
    }
    use rayon::prelude::*;
    let mut v: Vec<T> = Vec::with_capacity(len);
    #[cfg(all(target_os = "linux", not(miri)))]
    advise_huge_pages(v.spare_capacity_mut());
    let piece = (2 << 20) / size.max(1);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(piece.max(1))
        .for_each(|c| c.fill(core::mem::MaybeUninit::new(T::zeroed())));
    // SAFETY: the first `len` values were all written just above.
    unsafe { v.set_len(len) };
    v
}

#[cfg(all(target_os = "linux", not(miri)))]
fn advise_huge_pages<T>(v: &mut [T]) {
    const HUGE: usize = 2 << 20;
    let bytes = core::mem::size_of_val(v);
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
        /// A 64-byte aligned value (as the packed panels' lines are).
        #[repr(C, align(64))]
        #[derive(Clone, Copy, bytemuck::Zeroable)]
        struct Line([u16; 32]);
        fn check<T: bytemuck::Zeroable + Copy + Send>(
            len: usize,
            get: fn(&T) -> u16,
            set: fn(&mut T, u16),
        ) {
            let mut v: Vec<T> = zeroed_vec_huge(len);
            assert_eq!(v.len(), len);
            assert_eq!(v.as_ptr() as usize % core::mem::align_of::<T>(), 0);
            assert!(v.iter().all(|x| get(x) == 0));
            for (i, x) in v.iter_mut().enumerate().step_by(4099) {
                set(x, i as u16 | 1);
            }
            assert!(v
                .iter()
                .enumerate()
                .all(|(i, x)| get(x) == if i % 4099 == 0 { i as u16 | 1 } else { 0 }));
        }
        // Both sides of the large-buffer size, for an ordinary and a
        // 64-byte aligned type (Miri: a 4 KiB limit, smaller buffers).
        let (u16s, lines): (&[usize], &[usize]) = if cfg!(miri) {
            (&[0, 1, 2047, 2048, 5000], &[0, 63, 64, 100])
        } else {
            (
                &[0, 1, (4 << 20) - 1, 4 << 20, (9 << 20) + 3],
                &[0, 1, (128 << 10) - 1, 128 << 10, 300_001],
            )
        };
        for &len in u16s {
            check::<u16>(len, |x| *x, |x, v| *x = v);
        }
        for &len in lines {
            check::<Line>(
                len,
                |x| x.0.iter().fold(0, |a, b| a | b),
                |x, v| x.0[31] = v,
            );
        }
    }
}
