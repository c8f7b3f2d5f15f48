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

/// Length after which [`pattern`] repeats.
const PERIOD: usize = 512;

/// [`pattern`] for seed 0 over two periods: byte `k` is bits 1..=8 of `7·k`, i.e.
/// `(7·k mod 512) >> 1`. Two periods, so that any 512-byte window is one slice.
static PERIOD_BYTES: [u8; 2 * PERIOD] = {
    let mut t = [0u8; 2 * PERIOD];
    let mut k = 0;
    while k < 2 * PERIOD {
        t[k] = (((7 * k) % PERIOD) >> 1) as u8;
        k += 1;
    }
    t
};

/// Bytes that differ per object and per position: byte `i` is bits 1..=8 of
/// `31·seed + 7·i`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    // Byte i depends only on (31·seed + 7·i) mod 512. As 7·439 ≡ 1 (mod 512), that is
    // 7·(i + r) with r = 439·(31·seed mod 512) mod 512: the bytes are PERIOD_BYTES from r on,
    // repeating every 512. Built by copying (memcpy), which also keeps this cheap under Miri,
    // where a loop costs per byte.
    let r = (seed.wrapping_mul(31) % PERIOD as u64 * 439 % PERIOD as u64) as usize;
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&PERIOD_BYTES[r..r + len.min(PERIOD)]);
    while bytes.len() < len {
        let n = bytes.len().min(len - bytes.len());
        bytes.extend_from_within(..n);
    }
    bytes
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
