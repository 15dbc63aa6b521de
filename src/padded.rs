//! [`Padded`]: a value on cache lines of its own.

/// A value on cache lines of its own, so that two threads writing two neighbouring
/// values (two locks, say) never write the same line. 128 bytes: the pair of lines
/// the CPU's prefetcher fetches together.
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);
