//! Read-only memory maps of weight files, behind a safe function, and large
//! zeroed buffers backed by huge pages ([`zeroed_vec_huge`], [`PageBuf`]).
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

/// Buffers of this many bytes or more that [`PageBuf`] takes from `calloc`
/// (glibc maps them afresh: its largest threshold for reusing freed memory
/// is 32 MiB on 64-bit targets); small under Miri, as [`LARGE`].
const FRESH: usize = if cfg!(miri) { 8192 } else { 32 << 20 };

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

/// `len` zeroed values of a plain-data type of any alignment. Buffers of
/// 32 MiB or more, which glibc's allocator always maps afresh, come with
/// no pass that writes zeros over them: the allocator's zeroed allocation
/// (`calloc`, which writes nothing to a fresh mapping) at 16-byte
/// alignment, the values starting at the first multiple of their
/// alignment. A `Vec` of a type aligned to more than 16 bytes (the 64-byte
/// lines of packed panels) is zeroed with a `memset` instead: packing a
/// 4096 x 4096 F16 matrix spent 7% of its time there. Smaller buffers are
/// a [`zeroed_vec_huge`]: the allocator may hand back memory it reuses,
/// which must be zeroed, and that vector zeroes it on every thread.
///
/// Large buffers are advised to use huge pages and first touched on
/// rayon's current pool, a 2 MiB piece per task and one write per 4 KiB
/// page: left to the loops that fill them, two threads' adjacent panels
/// fault the same huge page and one waits while the other's fault clears
/// it.
pub struct PageBuf<T: bytemuck::Pod + Send> {
    /// The values (`len` of them), inside `base`'s allocation.
    values: core::ptr::NonNull<T>,
    len: usize,
    base: core::ptr::NonNull<u8>,
    layout: core::alloc::Layout,
}

// SAFETY: a PageBuf owns its values as a Vec does (no shared state); Pod
// values may be sent and shared between threads.
unsafe impl<T: bytemuck::Pod + Send> Send for PageBuf<T> {}
// SAFETY: as above; `&PageBuf` only gives `&[T]`.
unsafe impl<T: bytemuck::Pod + Send> Sync for PageBuf<T> {}

impl<T: bytemuck::Pod + Send> PageBuf<T> {
    /// `len` zeroed values. Panics if their size overflows `isize`.
    pub fn zeroed(len: usize) -> Self {
        Self::zeroed_with(len, true)
    }

    /// [`Self::zeroed`], but a buffer that the allocator maps afresh is
    /// left for its filler to fault in (still advised to huge pages): a
    /// fill whose stores follow each other through the buffer then writes
    /// lines the kernel has just cleared, still in cache. Packing F16 /
    /// BF16 GGUF bytes (128 KiB panels at 4096 columns) ran 4-10% faster so
    /// on one thread here, and level on two (where the pool's threads share
    /// a huge page only where their ranges of panels meet); a copy by
    /// `copy_from_slice` and the F32 packing (256 KiB panels) ran 7-14%
    /// slower, and keep [`Self::zeroed`].
    pub fn zeroed_lazy(len: usize) -> Self {
        Self::zeroed_with(len, false)
    }

    fn zeroed_with(len: usize, touch: bool) -> Self {
        let (size, align) = (core::mem::size_of::<T>(), core::mem::align_of::<T>());
        if (1..FRESH).contains(&len.saturating_mul(size)) {
            // A [`zeroed_vec_huge`], whose allocation this frees (with the
            // Vec's own layout) when dropped.
            let mut v = core::mem::ManuallyDrop::new(zeroed_vec_huge::<T>(len));
            let layout = core::alloc::Layout::array::<T>(v.capacity())
                .unwrap_or_else(|_| panic!("PageBuf: {len} values overflow"));
            let values = core::ptr::NonNull::new(v.as_mut_ptr()).expect("Vec pointer");
            return PageBuf {
                values,
                len,
                base: values.cast(),
                layout,
            };
        }
        let extra = align.saturating_sub(16);
        let layout = len
            .checked_mul(size)
            .and_then(|b| b.checked_add(extra))
            .and_then(|b| core::alloc::Layout::from_size_align(b.max(1), align.min(16)).ok())
            .unwrap_or_else(|| panic!("PageBuf: {len} values overflow"));
        // SAFETY: the layout's size is at least 1.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = core::ptr::NonNull::new(base) else {
            std::alloc::handle_alloc_error(layout);
        };
        // The first multiple of `align` at or after `base` (a multiple of
        // 16, so at most `align - 16` bytes on).
        let addr = base.as_ptr().addr();
        let offset = addr.next_multiple_of(align) - addr;
        assert!(offset <= extra, "PageBuf: allocator alignment");
        // SAFETY: `offset + len * size <= layout.size()`: inside the
        // allocation.
        let values = unsafe { base.add(offset) }.cast::<T>();
        let mut buf = PageBuf {
            values,
            len,
            base,
            layout,
        };
        if len * size >= LARGE && !cfg!(miri) {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf[..]);
            #[cfg(all(target_os = "linux", not(miri)))]
            advise_huge_pages(bytes);
            if !touch {
                return buf;
            }
            // Pieces along huge-page boundaries (one task per huge page).
            const HUGE: usize = 2 << 20;
            let head = (bytes.as_ptr() as usize).next_multiple_of(HUGE) - bytes.as_ptr() as usize;
            let (head, rest) = bytes.split_at_mut(head.min(bytes.len()));
            let touch = |piece: &mut [u8]| {
                for b in piece.iter_mut().step_by(4096) {
                    // Zero as it is: the write only faults the page in.
                    *b = 0;
                }
            };
            use rayon::prelude::*;
            rayon::join(|| touch(head), || rest.par_chunks_mut(HUGE).for_each(touch));
        }
        buf
    }
}

impl<T: bytemuck::Pod + Send> Drop for PageBuf<T> {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc_zeroed(layout)` and is freed once.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

impl<T: bytemuck::Pod + Send> core::ops::Deref for PageBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `values` points at `len` initialized (zeroed or since
        // written) values of `T` inside the allocation, aligned for `T`;
        // all-zero bytes are a valid Pod value.
        unsafe { core::slice::from_raw_parts(self.values.as_ptr(), self.len) }
    }
}

impl<T: bytemuck::Pod + Send> core::ops::DerefMut for PageBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.values.as_ptr(), self.len) }
    }
}

impl<T: bytemuck::Pod + Send> Clone for PageBuf<T> {
    fn clone(&self) -> Self {
        let mut copy = PageBuf::zeroed(self.len);
        copy.copy_from_slice(self);
        copy
    }
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
    fn page_buffers_are_zero_aligned_and_writable() {
        #[repr(C, align(64))]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        struct Line([u8; 64]);
        // Both paths: a zeroed_vec_huge below FRESH, calloc at an offset
        // (touched on the pool, or left untouched) above it.
        let sizes = [3, (LARGE / 64) + 5, (FRESH / 64) + 5];
        for (len, lazy) in sizes.iter().flat_map(|&l| [(l, false), (l, true)]) {
            let mut b: PageBuf<Line> = if lazy {
                PageBuf::zeroed_lazy(len)
            } else {
                PageBuf::zeroed(len)
            };
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % 64, 0);
            assert!(b.iter().all(|l| l.0 == [0; 64]));
            for (i, l) in b.iter_mut().enumerate().step_by(97) {
                l.0[i % 64] = i as u8 | 1;
            }
            let c = b.clone();
            assert!(c.iter().zip(b.iter()).all(|(x, y)| x.0 == y.0));
            assert!(c.iter().enumerate().all(|(i, l)| {
                let set = i % 97 == 0;
                l.0.iter()
                    .enumerate()
                    .all(|(j, &v)| v == if set && j == i % 64 { i as u8 | 1 } else { 0 })
            }));
        }
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
