//! Workloads for the demo and the benchmarks: "real-looking" pages (text, records, code-like
//! bytes, sparse pages, zero pages, noise) compressed with LZ4, the way zram fills zsmalloc.
//! Every page is generated from its number, so any page can be regenerated to verify it.

use alloc::vec::Vec;

use zsmalloc::seeded::Rng;

/// Size of one page of workload data.
pub const PAGE: usize = 4096;

const WORDS: &[&str] = &[
    "the",
    "of",
    "memory",
    "page",
    "allocator",
    "zsmalloc",
    "class",
    "object",
    "handle",
    "kernel",
    "compressed",
    "frame",
    "buddy",
    "window",
    "map",
    "free",
    "and",
    "to",
    "in",
    "is",
    "a",
    "size",
    "zspage",
    "descriptor",
    "migration",
    "compaction",
    "lock",
    "cpu",
    "fault",
    "table",
];

/// The kinds of page the generator makes, and how often (out of 100). A `mixed` page is 2 to
/// 4 runs of the other kinds at random boundaries, as real pages often are (a heap page with
/// strings, structures and free space); it spreads compressed sizes over the whole range.
pub const KINDS: &[(&str, u64)] = &[
    ("zero", 6),
    ("text", 18),
    ("records", 14),
    ("code", 10),
    ("sparse", 8),
    ("noise", 6),
    ("mixed", 38),
];

/// The kinds a run of a mixed page can be.
const RUN_KINDS: [&str; 6] = ["zero", "text", "records", "code", "sparse", "noise"];

/// Fills `out` with page number `n` of the workload seeded by `seed`; returns its kind.
pub fn page(seed: u64, n: u64, out: &mut [u8; PAGE]) -> &'static str {
    let mut rng = Rng::new(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut roll = rng.below(100);
    let kind = KINDS
        .iter()
        .find(|(_, p)| {
            if roll < *p {
                true
            } else {
                roll -= p;
                false
            }
        })
        .map_or("noise", |k| k.0);
    if kind == "mixed" {
        let runs = 2 + rng.below(3) as usize;
        let mut cuts: [usize; 5] = [0, PAGE, PAGE, PAGE, PAGE];
        for cut in cuts.iter_mut().take(runs).skip(1) {
            *cut = 64 * rng.below(PAGE as u64 / 64) as usize;
        }
        cuts[..runs].sort_unstable();
        for r in 0..runs {
            let (from, to) = (cuts[r], cuts[r + 1]);
            let run_kind = RUN_KINDS[rng.below(RUN_KINDS.len() as u64) as usize];
            fill(run_kind, n, &mut rng, &mut out[from..to]);
        }
    } else {
        fill(kind, n, &mut rng, out);
    }
    kind
}

/// Fills `out` (a page or a run of one) with bytes of `kind`.
fn fill(kind: &str, n: u64, rng: &mut Rng, out: &mut [u8]) {
    let len = out.len();
    match kind {
        "zero" => out.fill(0),
        "text" => {
            let mut i = 0;
            while i < len {
                let w = WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes();
                for &b in w.iter().chain(b" ") {
                    if i < len {
                        out[i] = b;
                        i += 1;
                    }
                }
            }
        }
        "records" => {
            // 32-byte records: an id, a counter, a few flags, padding.
            for (r, rec) in out.chunks_mut(32).enumerate() {
                rec.fill(0);
                rec[..8].copy_from_slice(&(n * 128 + r as u64).to_le_bytes());
                rec[8..12].copy_from_slice(&((rng.below(1000)) as u32).to_le_bytes());
                rec[12] = rng.below(4) as u8;
            }
        }
        "code" => {
            // Instruction-like bytes: a small alphabet with structure.
            const OPS: [u8; 12] = [
                0x48, 0x89, 0x8b, 0xe8, 0xc3, 0x55, 0x5d, 0x0f, 0x83, 0xff, 0x00, 0x01,
            ];
            for b in out.iter_mut() {
                *b = OPS[rng.below(OPS.len() as u64) as usize];
            }
        }
        "sparse" => {
            out.fill(0);
            for _ in 0..len / 64 {
                let at = rng.below(len as u64) as usize;
                out[at] = rng.next_u64() as u8;
            }
        }
        _ => {
            for chunk in out.chunks_mut(8) {
                let bytes = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
        }
    }
}

/// LZ4-compresses a page.
pub fn compress(page: &[u8; PAGE]) -> Vec<u8> {
    lz4_flex::block::compress(page)
}

/// Decompresses a page compressed by [`compress`].
pub fn decompress(data: &[u8], out: &mut [u8; PAGE]) -> Result<(), &'static str> {
    match lz4_flex::block::decompress_into(data, out) {
        Ok(PAGE) => Ok(()),
        Ok(_) => Err("decompressed to the wrong length"),
        Err(_) => Err("corrupt compressed data"),
    }
}
