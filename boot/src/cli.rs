//! The runner's command line: the options before the mode, parsed with nothing but `std`,
//! so that the fuzzers (`fuzz/fuzz_targets/cli.rs`) can include this file as it is. What the
//! options mean for QEMU is the runner's business (`main.rs`).

use std::time::Duration;

/// The least `--memory` accepted, in MiB: what boots the kernel without a payload.
pub const MIN_MEMORY_MIB: u64 = 64;
/// The most `--memory` accepted, in MiB (1 TiB: QEMU refuses far less on these machines).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// CPUs `--smp` accepts.
pub const SMP_RANGE: std::ops::RangeInclusive<u32> = 1..=64;

/// The runner's options and the kernel's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// `--bios` (else UEFI).
    pub bios: bool,
    /// `--smp N` (default 2).
    pub smp: u32,
    /// `--memory SIZE` in MiB (default 512), and whether it was given.
    pub memory_mib: u64,
    /// `--memory` was on the command line.
    pub memory_given: bool,
    /// `--timeout SECS`, if given.
    pub timeout: Option<Duration>,
    /// `--gdb`.
    pub gdb: bool,
    /// `--memdesc`: the kernel builds the 8-byte-a-frame memmap.
    pub memdesc: bool,
    /// The mode and everything after it, for the kernel.
    pub kernel_args: Vec<String>,
}

/// Parses the command line (without the program's name). `Ok(None)` for `--help`; an error
/// names the option and the value it refuses.
pub fn parse(args: &[String]) -> Result<Option<CommandLine>, String> {
    let mut cl = CommandLine {
        bios: false,
        smp: 2,
        memory_mib: 512,
        memory_given: false,
        timeout: None,
        gdb: false,
        memdesc: false,
        kernel_args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--uefi" => cl.bios = false,
            "--bios" => cl.bios = true,
            "--gdb" => cl.gdb = true,
            "--memdesc" => cl.memdesc = true,
            "--smp" => {
                let v = value("--smp")?;
                cl.smp = match v.parse::<u32>() {
                    Ok(n) if SMP_RANGE.contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "--smp takes a number of CPUs from 1 to 64, not '{v}'"
                        ));
                    }
                };
            }
            "--memory" => {
                let v = value("--memory")?;
                cl.memory_mib = parse_memory(&v)?;
                cl.memory_given = true;
            }
            "--timeout" => {
                let v = value("--timeout")?;
                cl.timeout = match v.parse::<u64>() {
                    Ok(s) if s > 0 => Some(Duration::from_secs(s)),
                    _ => {
                        return Err(format!(
                            "--timeout takes a positive number of seconds, not '{v}'"
                        ));
                    }
                };
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option '{flag}'")),
            _ => {
                cl.kernel_args.push(arg.clone());
                cl.kernel_args.extend(it.cloned());
                break;
            }
        }
    }
    Ok(Some(cl))
}

/// A memory size in MiB: a number with an optional K/M/G suffix (M if none), from 64M to
/// 1 TiB.
pub fn parse_memory(v: &str) -> Result<u64, String> {
    let bad = || format!("--memory takes a size like 256M or 2G (at least 64M), not '{v}'");
    let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "M"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mib = match unit {
        "K" | "k" => n / 1024,
        "M" | "m" => n,
        "G" | "g" => n.checked_mul(1024).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(bad());
    }
    Ok(mib)
}

/// `bench ... --both-memmaps`: takes the runner's own flag out of the kernel's arguments and
/// says whether it was there.
pub fn take_bench_both_memmaps(kernel_args: &mut Vec<String>) -> bool {
    if kernel_args.first().map(String::as_str) != Some("bench") {
        return false;
    }
    let before = kernel_args.len();
    kernel_args.retain(|a| a != "--both-memmaps");
    kernel_args.len() != before
}

/// `bench ... --json FILE`: takes the runner's own option out of the kernel's arguments and
/// returns FILE.
pub fn take_bench_json(kernel_args: &mut Vec<String>) -> Result<Option<String>, String> {
    if kernel_args.first().map(String::as_str) != Some("bench") {
        return Ok(None);
    }
    let Some(i) = kernel_args.iter().position(|a| a == "--json") else {
        return Ok(None);
    };
    let file = kernel_args
        .get(i + 1)
        .cloned()
        .ok_or("bench --json needs a FILE to write the figures to")?;
    kernel_args.drain(i..i + 2);
    Ok(Some(file))
}
