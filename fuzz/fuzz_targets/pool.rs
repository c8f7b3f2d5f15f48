//! Any bytes as a sequence of pool calls on a pool of any configuration, checked against a
//! shadow of every object: malloc, free, write, read, map and unmap (every mode), compaction,
//! page migration, isolation, and handles that are stale, double-freed or made up. Every
//! refusal must be the documented error, every live object must keep its bytes, and the
//! pool's invariants must hold after every call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zsmalloc::host::HostBackend;
use zsmalloc::seeded::{fill_seeded, seeded_mismatch};
use zsmalloc::{AutoCompact, Error, Growth, Handle, MapMode, MapPath, Placement, Pool, PoolConfig};

/// Reads the input a byte or a word at a time; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |w, _| w << 8 | self.byte() as u64)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let config = PoolConfig {
        max_chain: 4 + (input.byte() % 13) as usize,
        map_path: match input.byte() % 4 {
            0 => MapPath::Window,
            1 => MapPath::Copy,
            2 => MapPath::PerClass,
            _ => MapPath::LazyWindow,
        },
        placement: if input.byte() % 2 == 0 {
            Placement::Linux
        } else {
            Placement::Fitted
        },
        // Zspages of several lengths and frees that compact (zsos's policy's rules) too.
        growth: match input.byte() % 3 {
            0 => Growth::Fixed,
            n => Growth::Proportional {
                divisor: n,
                min_chain: 1 + input.byte() % 4,
            },
        },
        auto_compact: match input.byte() % 3 {
            0 => AutoCompact::Never,
            1 => AutoCompact::WhenFreeable {
                pages: (input.byte() % 5) as u16,
                share: input.byte() % 9,
            },
            _ => AutoCompact::Deferred {
                pages: (input.byte() % 5) as u16,
                share: input.byte() % 9,
            },
        },
        ..PoolConfig::default()
    };
    let pool = Pool::new("fuzz", HostBackend::new(96, 7), config);
    // Live objects with the seed of their bytes, and handles freed since.
    let mut live: Vec<(Handle, usize, u64)> = Vec::new();
    let mut freed: Vec<Handle> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut step = 0u64;
    while !input.0.is_empty() {
        step += 1;
        let pick = |n: usize, b: u8| (b as usize) % n.max(1);
        match input.byte() % 10 {
            0 | 1 => {
                let size = (input.u16() % 4100) as usize;
                match pool.malloc(size) {
                    Ok(h) => {
                        assert!((1..=4096).contains(&size));
                        let seed = step;
                        fill_seeded(&mut pool.map(h, MapMode::WriteOnly).unwrap(), seed);
                        live.push((h, size, seed));
                    }
                    Err(Error::InvalidSize(s)) => assert!(s == 0 || s > 4096),
                    Err(Error::OutOfMemory) => {}
                    Err(e) => panic!("malloc({size}): {e}"),
                }
            }
            2 if !live.is_empty() => {
                let (h, size, seed) = live.swap_remove(pick(live.len(), input.byte()));
                assert_eq!(pool.read(h, &mut buf), Ok(size));
                assert_eq!(seeded_mismatch(&buf[..size], seed), None, "bytes changed");
                pool.free(h).unwrap();
                freed.push(h);
            }
            3 if !live.is_empty() => {
                let (h, size, seed) = live[pick(live.len(), input.byte())];
                let how = input.byte() % 3;
                let got: Vec<u8> = match how {
                    0 => pool.map(h, MapMode::ReadOnly).unwrap().to_vec(),
                    1 => pool.map(h, MapMode::ReadWrite).unwrap().to_vec(),
                    _ => {
                        assert_eq!(pool.read(h, &mut buf), Ok(size));
                        buf[..size].to_vec()
                    }
                };
                assert_eq!(seeded_mismatch(&got, seed), None, "bytes changed");
            }
            4 if !live.is_empty() => {
                // Rewrite an object with new bytes.
                let i = pick(live.len(), input.byte());
                let (h, size, _) = live[i];
                let seed = step;
                let mut bytes = vec![0u8; size];
                fill_seeded(&mut bytes, seed);
                pool.write(h, &bytes).unwrap();
                live[i].2 = seed;
            }
            5 => {
                // An explicit compaction, or (odd byte) a pause that drains deferred
                // compaction within a budget of pages.
                let b = input.byte();
                if b % 2 == 0 {
                    pool.compact();
                } else {
                    pool.compact_pending(b as usize / 2);
                }
            }
            6 => {
                let pages = pool.pages();
                if !pages.is_empty() {
                    let pfn = pages[pick(pages.len(), input.byte())];
                    match pool.migrate_page(pfn) {
                        Ok(_) | Err(Error::OutOfMemory) => {}
                        Err(e) => panic!("migrating {pfn:#x}: {e}"),
                    }
                }
            }
            7 => {
                let pages = pool.pages();
                if !pages.is_empty() {
                    let pfn = pages[pick(pages.len(), input.byte())];
                    pool.isolate_page(pfn).unwrap();
                    assert_eq!(pool.isolate_page(pfn), Err(Error::ZspageBusy(pfn)));
                    pool.putback_page(pfn);
                }
            }
            8 if !freed.is_empty() => {
                let h = freed[pick(freed.len(), input.byte())];
                assert!(matches!(
                    pool.free(h),
                    Err(Error::DoubleFree(_) | Error::StaleHandle(_))
                ));
            }
            _ => {
                let raw = input.u64();
                let h = Handle::from_raw(raw);
                if !live.iter().any(|l| l.0 == h) {
                    assert!(
                        matches!(
                            pool.free(h),
                            Err(Error::InvalidHandle(_)
                                | Error::ForeignHandle(_)
                                | Error::StaleHandle(_)
                                | Error::DoubleFree(_))
                        ),
                        "a made-up handle {raw:#x} was accepted"
                    );
                }
            }
        }
        pool.check_invariants()
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
    }
    for (h, size, seed) in live {
        assert_eq!(pool.read(h, &mut buf), Ok(size));
        assert_eq!(seeded_mismatch(&buf[..size], seed), None, "bytes changed");
        pool.free(h).unwrap();
    }
    assert_eq!(pool.total_pages(), 0);
});
