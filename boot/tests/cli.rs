//! Tests of the `boot` binary as `cargo run` uses it: options, errors and exit statuses.

use std::process::Command;

fn boot_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_boot"))
        .args(args)
        .output()
        .expect("the runner starts")
}

#[test]
fn help_prints_usage_and_succeeds() {
    let out = boot_cmd(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--bios",
        "--uefi",
        "--smp",
        "--memory",
        "--timeout",
        "--gdb",
        "test [FILTER]",
        "bench",
    ] {
        assert!(text.contains(needle), "usage lacks {needle}:\n{text}");
    }
}

#[test]
fn unknown_option_is_a_usage_error_without_booting() {
    let out = boot_cmd(&["--frobnicate", "run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown option '--frobnicate'"), "{err}");
}

#[test]
fn kernel_panic_ends_the_run_non_zero_with_the_message_visible() {
    let out = boot_cmd(&["--timeout", "180", "crash", "panic"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("KERNEL PANIC at kernel/src/modes/crash.rs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("crash requested from the command line"),
        "{stdout}"
    );
}
