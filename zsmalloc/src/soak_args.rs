//! The command line of the kernel's `soak` mode, parsed by one function that both the
//! runner (before it boots, so a bad argument costs no boot) and the kernel use.

use alloc::format;
use alloc::string::String;

use crate::Policy;

/// What `soak [OPERATIONS] [--seed S] [--policy P]` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoakArgs {
    /// Operations in all, across the CPUs (at least 1; `_` may group digits).
    pub ops: u64,
    /// The seed of the random operations.
    pub seed: u64,
    /// The pool's policy.
    pub policy: Policy,
    /// `--snapshots`: print the pool's snapshot and the frame census at the end, and again
    /// after a last compaction (the runner's `soak --pictures DIR` asks for it).
    pub snapshots: bool,
}

/// The usage line, for error messages.
pub const USAGE: &str = "soak [OPERATIONS] [--seed S] [--policy P] [--pictures DIR]";

impl Default for SoakArgs {
    fn default() -> Self {
        SoakArgs {
            ops: 1_000_000,
            seed: 0x50a4,
            policy: Policy::default(),
            snapshots: false,
        }
    }
}

impl SoakArgs {
    /// Parses the arguments after `soak`; the error names the argument at fault.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<SoakArgs, String> {
        let mut parsed = SoakArgs::default();
        let mut ops_given = false;
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg {
                "--seed" => {
                    let s = it.next().ok_or("soak: --seed needs a number")?;
                    parsed.seed = s
                        .replace('_', "")
                        .parse()
                        .map_err(|_| format!("soak: --seed '{s}' is not a number 0..2^64"))?;
                }
                "--policy" => {
                    let p = it.next().ok_or("soak: --policy needs a policy name")?;
                    parsed.policy = Policy::parse(p)?;
                }
                "--snapshots" => parsed.snapshots = true,
                n if !ops_given && !n.starts_with('-') => {
                    parsed.ops = n
                        .replace('_', "")
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| {
                            format!("soak: '{n}' is not a count of operations (1 or more)")
                        })?;
                    ops_given = true;
                }
                other => return Err(format!("soak: unexpected '{other}' (usage: {USAGE})")),
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn parse(line: &str) -> Result<SoakArgs, String> {
        SoakArgs::parse(line.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn good_lines_parse_and_defaults_fill_the_rest() {
        assert_eq!(parse(""), Ok(SoakArgs::default()));
        let a = parse("10_000_000 --seed 7 --policy zsos").unwrap();
        assert_eq!((a.ops, a.seed), (10_000_000, 7));
        assert_eq!(a.policy, Policy::parse("zsos").unwrap());
        assert_eq!(parse("--seed 9 5").unwrap().ops, 5);
        assert!(!parse("5").unwrap().snapshots);
        assert!(parse("5 --snapshots").unwrap().snapshots);
    }

    #[test]
    fn bad_lines_name_the_argument_at_fault() {
        for (line, names) in [
            ("-5", "'-5'"),
            ("0", "'0'"),
            ("ten", "'ten'"),
            ("5 6", "'6'"),
            ("--seed", "--seed"),
            ("--seed x", "'x'"),
            ("--policy", "--policy"),
            ("--policy nonsense", "nonsense"),
            ("--cpus 2", "'--cpus'"),
        ] {
            let e = parse(line).expect_err(line);
            assert!(e.contains(names), "{line:?} gave {e:?}");
        }
    }
}
