//! The deterministic PRNG for randomized tests and workloads: zsmalloc's SplitMix64, seeded,
//! so a failing run can be replayed from its printed seed.

pub use zsmalloc::model::Rng;
