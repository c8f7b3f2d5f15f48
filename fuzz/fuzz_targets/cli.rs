//! Any bytes as the runner's command line (arguments split at NUL bytes): the parser accepts
//! it within the documented ranges or refuses it with a message; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../boot/src/cli.rs"]
#[allow(dead_code)]
mod cli;

fuzz_target!(|data: &[u8]| {
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    match cli::parse(&args) {
        Ok(Some(mut cl)) => {
            assert!(cli::SMP_RANGE.contains(&cl.smp));
            assert!((cli::MIN_MEMORY_MIB..=cli::MAX_MEMORY_MIB).contains(&cl.memory_mib));
            assert!(cl.timeout.is_none_or(|t| t.as_secs() > 0));
            let is_bench = cl.kernel_args.first().map(String::as_str) == Some("bench");
            let flagged = cl.kernel_args.iter().any(|a| a == "--both-memmaps");
            let took = cli::take_bench_both_memmaps(&mut cl.kernel_args);
            assert_eq!(took, is_bench && flagged);
            assert!(!took || !cl.kernel_args.iter().any(|a| a == "--both-memmaps"));
            let before = cl.kernel_args.len();
            match cli::take_bench_json(&mut cl.kernel_args) {
                Ok(Some(_)) => assert_eq!(cl.kernel_args.len(), before - 2),
                Ok(None) => assert_eq!(cl.kernel_args.len(), before),
                Err(e) => assert!(!e.is_empty()),
            }
        }
        Ok(None) => assert!(args.iter().any(|a| a == "-h" || a == "--help")),
        Err(e) => assert!(!e.is_empty()),
    }
});
