//! Read-only memory maps of weight files, behind a safe function.
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
}
