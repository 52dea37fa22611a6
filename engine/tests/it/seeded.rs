//! The one seeded byte generator of the tests and benchmarks (included by path from the CLI's
//! tests and the benches crate): the same seed always gives the same bytes.

/// Pseudo-random bytes (xorshift64), incompressible like photos.
pub fn seeded(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A seeded stream of numbers, for offsets and sizes that must be the same on every run.
pub struct Xorshift(u64);

impl Xorshift {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let x = &mut self.0;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }
}
