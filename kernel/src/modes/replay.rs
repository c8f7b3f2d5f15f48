//! Mode `replay NAME`: replays the trace that came as the ramdisk's payload (see
//! `zsmalloc::trace` for the format) into a fresh pool with movable pages, printing the
//! pool's state at every `c` and `s` and at the end: a human line, the class table, and one
//! machine-readable `REPLAY` line. A bad line stops the replay with its number and the reason,
//! and the run fails.

use zsmalloc::Policy;
use zsmalloc::steps::{StepView, VIEWER_MAX_OPS};
use zsmalloc::trace::{self, Report};

use crate::arch::qemu::ExitCode;
use crate::println;
use crate::zs_backend::MovablePool;

/// Runs the mode: `replay NAME [--policy P] [--snapshots] [--steps]`; `payload` is the
/// trace. With `--steps`, every operation is followed by the pool as the replay viewer shows
/// it (`zsmalloc::steps`: `VIEW` and `SNAP` lines, at most `VIEWER_MAX_OPS` steps). With
/// `--snapshots`, each report is followed by the pool's snapshot as `SNAP` lines
/// (`zsmalloc::snapshot`) and the frame census as `MEMMAP` lines (`docs/protocol.md`),
/// which the runner draws.
pub fn run(rest: &[&str], payload: &[u8]) -> ExitCode {
    let (mut name, mut policy, mut snapshots, mut steps) =
        ("(unnamed)", Policy::default(), false, false);
    let mut args = rest.iter();
    while let Some(&arg) = args.next() {
        match arg {
            "--policy" => match args.next().map(|p| Policy::parse(p)) {
                Some(Ok(p)) => policy = p,
                Some(Err(e)) => {
                    println!("zsos: error: replay: {e}");
                    return ExitCode::Failure;
                }
                None => {
                    println!("zsos: error: replay: --policy needs a policy name");
                    return ExitCode::Failure;
                }
            },
            "--snapshots" => snapshots = true,
            "--steps" => steps = true,
            n if name == "(unnamed)" && !n.starts_with("--") => name = n,
            extra => {
                println!(
                    "zsos: error: mode 'replay' takes a trace name, --policy P, --snapshots and --steps, got '{extra}'"
                );
                return ExitCode::Failure;
            }
        }
    }
    if payload.is_empty() {
        println!(
            "zsos: error: replay {name}: no trace came with the boot image (cargo run -- replay FILE)"
        );
        return ExitCode::Failure;
    }
    let policy_name = policy.name();
    println!(
        "zsos: replaying {name} ({} bytes) into a fresh pool, policy {policy_name}",
        payload.len()
    );
    let pool = MovablePool::new("replay", policy.config());
    let start = crate::arch::tsc::start();
    let mut step_n = 0;
    let result = trace::replay_steps(
        &pool,
        payload,
        |r| {
            print_report(name, &policy_name, r);
            if snapshots {
                let at = match r.at {
                    'c' => "c",
                    's' => "s",
                    _ => "end",
                };
                crate::pictures::print(&pool, &alloc::format!("line{}-{at}", r.line));
            }
        },
        |step| {
            if !steps {
                return;
            }
            step_n += 1;
            if step_n > VIEWER_MAX_OPS {
                if step_n == VIEWER_MAX_OPS + 1 {
                    println!(
                        "zsos: error: replay {name}: the viewer takes at most {VIEWER_MAX_OPS} operations; no more steps"
                    );
                }
                return;
            }
            for line in StepView::of(&pool, step, step_n).lines() {
                println!("{line}");
            }
        },
    );
    let us = crate::arch::tsc::cycles_to_us(crate::arch::tsc::stop() - start);
    match result {
        Ok(t) => {
            println!(
                "zsos: replay {name} done: {} lines, {} operations ({} a, {} f, {} w, {} c) in {} ms",
                t.lines,
                t.ops,
                t.allocs,
                t.frees,
                t.writes,
                t.compactions,
                us / 1000
            );
            ExitCode::Success
        }
        Err(e) => {
            println!("zsos: error: replay {name}: {e}");
            ExitCode::Failure
        }
    }
}

fn print_report(name: &str, policy: &str, r: &Report) {
    let at = match r.at {
        'c' => "after c",
        's' => "at s",
        _ => "at the end",
    };
    println!(
        "replay {name}: line {} ({at}): {} objects, {} bytes in {} pages, density {:.3}; \
         {} pages compacted ({} by this c)",
        r.line, r.live_objects, r.live_bytes, r.pages, r.density, r.pages_compacted, r.freed_now
    );
    crate::print!("{}", r.stats);
    println!(
        "REPLAY line={} at={} objects={} bytes={} pages={} density={:.4} compacted={} policy={policy}",
        r.line,
        if r.at == '$' {
            "end"
        } else if r.at == 'c' {
            "c"
        } else {
            "s"
        },
        r.live_objects,
        r.live_bytes,
        r.pages,
        r.density,
        r.pages_compacted
    );
}
