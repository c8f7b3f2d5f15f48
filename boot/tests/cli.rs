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

#[test]
fn replay_runs_a_trace_file_and_reports_at_every_c_and_s() {
    let trace = concat!(env!("CARGO_MANIFEST_DIR"), "/../traces/sample.trace");
    // With a policy other than the default: the counts below do not depend on it, and every
    // REPLAY line names it (the default policy runs in the bad-line test below).
    let out = boot_cmd(&[
        "--timeout",
        "180",
        "replay",
        "--policy",
        "fitted-chain=4",
        trace,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("into a fresh pool, policy fitted-chain=4"),
        "{stdout}"
    );
    let replay_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("REPLAY "))
        .collect();
    // sample.trace: 's' at line 13 with 6 objects; 'c' at 16 with 4; 's' at 19 and the end
    // with 5 (sizes 100+4096+1632+700 after freeing the 3000 and one 1632).
    let expect = [
        ("line=13 at=s objects=6 bytes=12092 ", 0),
        ("line=16 at=c objects=4 bytes=7460 ", 1),
        ("line=19 at=s objects=5 bytes=8160 ", 2),
        ("line=19 at=end objects=5 bytes=8160 ", 3),
    ];
    assert_eq!(replay_lines.len(), expect.len(), "{stdout}");
    for (needle, i) in expect {
        assert!(replay_lines[i].contains(needle), "{needle}\n{stdout}");
        assert!(
            replay_lines[i].ends_with(" policy=fitted-chain=4"),
            "{}",
            replay_lines[i]
        );
    }
    assert!(
        stdout.contains(" class  size"),
        "the class table is printed"
    );
    assert!(stdout.contains("zsos: replay sample.trace done: 19 lines, 17 operations"));
}

#[test]
fn replay_draws_the_pool_at_every_point_when_asked() {
    let trace = concat!(env!("CARGO_MANIFEST_DIR"), "/../traces/sample.trace");
    let dir = std::env::temp_dir().join(format!("zsos-pictures-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = boot_cmd(&[
        "--timeout",
        "180",
        "replay",
        "--pictures",
        dir.to_str().unwrap(),
        trace,
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("SNAP "), "snapshots stay off the console");
    assert!(
        stderr.contains("4 pool and 4 memmap pictures in"),
        "{stderr}"
    );
    // sample.trace reports at lines 13 (s), 16 (c), 19 (s) and the end; at line 13 six
    // objects are live, at the end five.
    for (point, objects) in [
        ("line13-s", 6),
        ("line16-c", 4),
        ("line19-s", 5),
        ("line19-end", 5),
    ] {
        let svg = std::fs::read_to_string(dir.join(format!("pool-{point}.svg")))
            .unwrap_or_else(|e| panic!("pool-{point}.svg: {e}"));
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let allocated = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("rect")
                    && n.attribute("fill").map(str::to_ascii_lowercase) == Some("#2f6fc4".into())
            })
            .count();
        assert_eq!(
            allocated, objects,
            "{point}: one filled box per live object"
        );
        assert!(svg.contains(&format!("pool at {point}")), "{point}");
        // The memmap at the same point: the replay's pool is the only one, so its pages
        // are the zsmalloc frames the legend counts.
        let pages = svg
            .split(" pages")
            .next()
            .and_then(|t| t.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{point}: no page count in the pool's title"));
        let memmap = std::fs::read_to_string(dir.join(format!("memmap-{point}.svg")))
            .unwrap_or_else(|e| panic!("memmap-{point}.svg: {e}"));
        let doc = roxmltree::Document::parse(&memmap).expect("well-formed SVG");
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        assert!(
            texts[0].starts_with(&format!("memmap at {point} (wide layout)")),
            "{texts:?}"
        );
        assert!(
            texts.contains(&format!("zsmalloc {pages}").as_str()),
            "{point}: {pages} zsmalloc frames in the legend: {texts:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_pictures_into_a_directory_it_cannot_write_is_a_usage_error_without_booting() {
    let trace = concat!(env!("CARGO_MANIFEST_DIR"), "/../traces/sample.trace");
    let out = boot_cmd(&["replay", "--pictures", "/proc/zsos-pictures", trace]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot make directory '/proc/zsos-pictures'"),
        "{err}"
    );
    let out = boot_cmd(&["replay", trace, "--pictures"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pictures needs a directory"));
}

#[test]
fn replay_stops_at_a_bad_line_with_its_number_and_fails() {
    let path = std::env::temp_dir().join(format!("zsos-bad-{}.trace", std::process::id()));
    std::fs::write(&path, "a 1 100\nw 1\nf 9\na 2 200\n").unwrap();
    let out = boot_cmd(&["--timeout", "180", "replay", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("into a fresh pool, policy zsos"),
        "{stdout}"
    );
    assert!(
        stdout.contains("zsos: error: replay zsos-bad-")
            && stdout.contains("line 3: unknown object 9"),
        "{stdout}"
    );
}

#[test]
fn replay_without_a_readable_file_is_a_usage_error_without_booting() {
    for (args, needle) in [
        (&["replay"][..], "replay needs a trace FILE"),
        (
            &["replay", "/nonexistent/zsos.trace"],
            "cannot read trace '/nonexistent/zsos.trace'",
        ),
        (&["replay", "a", "b"], "replay takes one FILE, got also 'b'"),
        (
            &["replay", "--policy", "zbud", "a.trace"],
            "unknown policy 'zbud': expected default, linux, linux-chain=N, fitted",
        ),
        (
            &["replay", "--policy", "linux-chain=32", "a.trace"],
            "unknown policy 'linux-chain=32'",
        ),
        (
            &["replay", "a.trace", "--policy"],
            "replay --policy needs a policy name",
        ),
        (
            &["replay", "--verbose"],
            "replay: unknown option '--verbose'",
        ),
    ] {
        let out = boot_cmd(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn soak_with_bad_arguments_is_a_usage_error_without_booting() {
    for (args, needle) in [
        (&["soak", "-5"][..], "soak: unexpected '-5'"),
        (&["soak", "0"], "'0' is not a count of operations"),
        (&["soak", "5", "--seed"], "--seed needs a number"),
        (&["soak", "--policy", "zbud"], "unknown policy 'zbud'"),
    ] {
        let out = boot_cmd(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(boot::KERNEL_BANNER),
            "{args:?}: the kernel booted"
        );
    }
}

#[test]
fn replay_refuses_too_little_memory_for_its_trace_without_booting() {
    // 3 MiB of trace: the bootloader needs about three times that besides the kernel's 64M.
    let path = std::env::temp_dir().join(format!("zsos-big-{}.trace", std::process::id()));
    let line = "a 1 100 # padding to make the trace large enough to need more memory\n";
    std::fs::write(&path, line.repeat(3 * 1024 * 1024 / line.len())).unwrap();
    let out = boot_cmd(&["--memory", "64M", "replay", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --memory 73M or more"), "{err}");
}

/// Boots with `smp` CPUs and checks the boot lists exactly `ids` in the MADT and starts all.
fn check_cpus_found_and_started(smp: &str, ids: &str) {
    let out = boot_cmd(&["--timeout", "120", "--smp", smp, "bench", "memmap"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("cpus: "))
        .unwrap_or_else(|| panic!("no cpus line with --smp {smp}:\n{stdout}"));
    assert!(
        line.contains(&format!("cpus: {smp} in the ACPI MADT ({ids}")),
        "--smp {smp}: {line}"
    );
    assert!(
        line.ends_with(&format!("running: {smp}")),
        "--smp {smp}: {line}"
    );
    assert!(!stdout.contains("did not come up"), "{stdout}");
}

#[test]
fn the_one_cpu_qemu_gives_is_found_in_the_acpi_madt() {
    check_cpus_found_and_started("1", "APIC ids 0*;");
}

#[test]
fn every_cpu_of_four_is_found_in_the_acpi_madt_and_started() {
    check_cpus_found_and_started("4", "APIC ids 0* 1 2 3;");
}

#[test]
fn a_panic_on_an_application_processor_stops_the_machine_with_that_cpus_diagnostic() {
    let out = boot_cmd(&["--timeout", "120", "--smp", "2", "crash", "ap-panic"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("on CPU 1: crash requested on an application processor"),
        "{stdout}"
    );
}

#[test]
fn a_stack_overflow_on_an_application_processor_is_a_diagnosed_double_fault() {
    let out = boot_cmd(&[
        "--timeout",
        "120",
        "--smp",
        "2",
        "crash",
        "ap-stack-overflow",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FATAL: double fault") && stdout.contains("(on CPU 1)"),
        "{stdout}"
    );
    assert!(!stdout.contains("without overflowing"), "{stdout}");
}

#[test]
fn bench_figures_go_to_a_json_file_and_stay_off_the_console() {
    let file = std::env::temp_dir().join(format!("zsos-bench-{}.json", std::process::id()));
    let file_arg = file.to_string_lossy().into_owned();
    let out = boot_cmd(&["--timeout", "120", "bench", "memmap", "--json", &file_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("memmap:"),
        "the table is on the console:\n{stdout}"
    );
    assert!(
        !stdout.contains("BENCH "),
        "BENCH lines reached the console:\n{stdout}"
    );
    assert!(
        stderr.contains(&format!("written to {file_arg}")),
        "the runner says where:\n{stderr}"
    );
    let json = std::fs::read_to_string(&file).expect("the --json file was written");
    let _ = std::fs::remove_file(&file);
    assert!(json.contains("\"zsos_bench\": 1"), "{json}");
    assert!(
        json.contains("\"command\": [\"bench\", \"memmap\"]"),
        "{json}"
    );
    assert!(json.contains("\"name\": \"memmap."), "{json}");
    assert!(json.contains("\"unit\": \"us\""), "{json}");
}

#[test]
fn bench_json_without_a_file_is_a_usage_error() {
    let out = boot_cmd(&["bench", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bench --json needs a FILE"), "{err}");
}

#[test]
fn bench_with_a_bad_policy_is_a_usage_error_without_booting() {
    for (args, needle) in [
        (
            &["bench", "density", "--policy"][..],
            "bench --policy needs a policy name",
        ),
        (
            &["bench", "density", "--policy", "zbud"],
            "unknown policy 'zbud'",
        ),
    ] {
        let out = boot_cmd(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
