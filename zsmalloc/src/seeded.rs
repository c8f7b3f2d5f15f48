//! Seeded randomness and object contents: the generator and the byte patterns that the
//! workloads, trace replay and the tests share, so that any run can be repeated from its
//! seed and any corrupted byte is caught.

use alloc::vec::Vec;

/// SplitMix64: small, fast, good enough for tests and workloads.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with the given seed.
    pub const fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Shuffles a slice in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Bytes that differ per object and per position.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) >> 1) as u8)
        .collect()
}

/// Byte `i` of the object seeded with `seed`, computed in place (no buffer): for soaks that
/// fill and check many objects where [`pattern`]'s allocation would dominate.
pub fn seeded_byte(seed: u64, i: usize) -> u8 {
    let x = seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (x >> 56) as u8 ^ (x >> 24) as u8
}

/// Fills `obj` with the bytes of `seed` ([`seeded_byte`]).
pub fn fill_seeded(obj: &mut [u8], seed: u64) {
    for (i, b) in obj.iter_mut().enumerate() {
        *b = seeded_byte(seed, i);
    }
}

/// The first offset at which `obj` differs from the bytes of `seed`, if any.
pub fn seeded_mismatch(obj: &[u8], seed: u64) -> Option<usize> {
    (0..obj.len()).find(|&i| obj[i] != seeded_byte(seed, i))
}
