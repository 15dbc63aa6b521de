//! Read-only memory maps of the few header words the change stamp is made of (SPEC
//! T4), read with atomic loads: the only `unsafe` code of the crate.
//!
//! SQLite itself reads the WAL-index header through a shared memory map of the `-shm`
//! file, with plain loads and a memory barrier between its two copies. Reading the same
//! words here costs a few nanoseconds where a `pread` costs a system call, which is what
//! lets a cached decision prove itself fresh at the speed of memory.

#![allow(unsafe_code)]

use std::fs::File;
use std::sync::atomic::AtomicU32;

/// The first bytes of a file, mapped read-only and shared, so that every write any
/// process makes to them is seen. Read only as aligned 32-bit words with atomic loads:
/// never as a byte slice, since other processes change the bytes under the map.
pub(crate) struct MappedWords {
    map: memmap2::Mmap,
    words: usize,
}

impl MappedWords {
    /// Maps the first `words` 32-bit words of `file`. Fails when the file is shorter
    /// than that, so that no word read later lies past its end.
    pub(crate) fn new(file: &File, words: usize) -> std::io::Result<Self> {
        let len = words * 4;
        if file.metadata()?.len() < len as u64 {
            return Err(std::io::Error::other("file too short to map its header"));
        }
        // SAFETY: `Mmap::map` is unsafe because the file may change under the map, which
        // would break the immutability a `&[u8]` promises. This module never makes a
        // `&[u8]` (nor calls `Deref`): it reads the mapped words only through `AtomicU32`
        // (see `load`). The other hazard of a file map is `SIGBUS`, raised only by an
        // access to a page that lies wholly past the end of the file. Every word mapped
        // here lies in the file's first page, so the access is safe while the file has
        // at least one byte: SQLite truncates a `-shm` file to 3 bytes when it first
        // opens it, never to 0, and never truncates a database file to 0 while it is
        // open (see `ChangeProbe`). What is left: another program truncating either file
        // to 0 bytes while this process reads it would crash the process, as it would
        // crash SQLite's own readers of the same map.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
        Ok(Self { map, words })
    }

    /// The mapped words, in the machine's byte order, to be read with acquire loads
    /// only: a load after another in program order is not moved before it, which the
    /// two-copy check of the WAL-index header relies on (SQLite's writer stores the
    /// second copy, then a barrier, then the first; the reader loads the first, then the
    /// second). One slice, so that a caller reading many words checks bounds once.
    pub(crate) fn words(&self) -> &[AtomicU32] {
        let base = self.map.as_ptr().cast::<AtomicU32>();
        // SAFETY: the map is page-aligned, so `base` is 4-aligned; `words` words of 4
        // bytes lie inside the mapped length, which is inside the file (checked in
        // `new`); the slice borrows `self`, so it does not outlive the map. `AtomicU32`
        // has the size and alignment of `u32`, and this map is only ever read, through
        // atomics. SQLite writes the same physical words with plain stores through its
        // own mapping, which Rust's memory model counts as a data race with these loads;
        // in practice it is the seqlock SQLite's own readers rely on: a torn or stale
        // read fails the two-copy check and the caller goes to SQL.
        unsafe { std::slice::from_raw_parts(base, self.words) }
    }

    /// The `i`th 32-bit word of the file (see [`words`](Self::words)).
    #[cfg(test)]
    pub(crate) fn load(&self, i: usize) -> u32 {
        self.words()[i].load(std::sync::atomic::Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn mapped_words_see_later_writes_to_the_file() -> std::io::Result<()> {
        let mut file = tempfile::tempfile()?;
        file.write_all(&[0u8; 16])?;
        let words = MappedWords::new(&file, 4)?;
        assert_eq!(words.load(2), 0);
        file.write_all_at(&7u32.to_ne_bytes(), 8)?;
        assert_eq!(words.load(2), 7);
        Ok(())
    }

    #[test]
    fn a_file_shorter_than_the_map_is_refused() -> std::io::Result<()> {
        let mut file = tempfile::tempfile()?;
        file.write_all(&[0u8; 7])?;
        assert!(MappedWords::new(&file, 2).is_err());
        Ok(())
    }
}
