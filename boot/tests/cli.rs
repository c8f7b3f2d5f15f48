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

const SAMPLE_TRACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../traces/sample.trace");

/// One boot shared by the tests of pictures and the viewer: `replay --pictures DIR --viewer
/// DIR traces/sample.trace`, as the README shows it.
struct SampleReplay {
    dir: std::path::PathBuf,
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

fn sample_replay() -> &'static SampleReplay {
    static RUN: std::sync::OnceLock<SampleReplay> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sample-replay");
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.to_str().unwrap();
        let out = boot_cmd(&[
            "--timeout",
            "180",
            "replay",
            "--pictures",
            d,
            "--viewer",
            d,
            SAMPLE_TRACE,
        ]);
        SampleReplay {
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
            code: out.status.code(),
            dir,
        }
    })
}

#[test]
fn replay_draws_the_pool_at_every_point_when_asked() {
    let run = sample_replay();
    let (stdout, stderr, dir) = (&run.stdout, &run.stderr, &run.dir);
    assert_eq!(run.code, Some(0), "{stdout}\n{stderr}");
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
    assert!(
        !dir.join("pool-step-1.svg").exists(),
        "the viewer's steps are not pictures"
    );
    // The README shows these: they must be what zsos draws and writes today.
    for (name, fresh) in [
        ("pool-line13-s.svg", "pool-line13-s.svg"),
        ("pool-line16-c.svg", "pool-line16-c.svg"),
        ("sample-replay.html", boot::viewer::FILE_NAME),
    ] {
        let shown = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/pictures/");
        let committed = std::fs::read_to_string(format!("{shown}{name}")).unwrap();
        let fresh = std::fs::read_to_string(dir.join(fresh)).unwrap();
        assert!(
            committed == fresh,
            "docs/pictures/{name} is not what `cargo run -- replay --pictures DIR --viewer \
             DIR traces/sample.trace` writes now: copy it from DIR"
        );
    }
}

#[test]
fn replay_pictures_or_viewer_into_a_directory_it_cannot_write_is_a_usage_error_without_booting() {
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
    // The same for the viewer's directory.
    let out = boot_cmd(&["replay", "--viewer", "/proc/zsos-viewer", trace]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot make directory '/proc/zsos-viewer'"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(boot::KERNEL_BANNER));
    let out = boot_cmd(&["replay", trace, "--viewer"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--viewer needs a directory"));
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
        (
            &["soak", "5", "--pictures"],
            "soak --pictures needs a directory",
        ),
        (
            &["soak", "--pictures", "/proc/zsos-pictures"],
            "cannot make directory '/proc/zsos-pictures'",
        ),
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

/// `soak N --pictures DIR`: the pool and memory at the soak's end and after a last
/// compaction, which keeps every object in no more pages.
#[test]
fn soak_draws_the_pool_at_its_end_and_after_a_last_compaction() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("soak-pictures");
    let _ = std::fs::remove_dir_all(&dir);
    let out = boot_cmd(&[
        "--timeout",
        "180",
        "soak",
        "20000",
        "--pictures",
        dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("2 pool and 2 memmap pictures in"),
        "{stderr}"
    );
    // (objects, pages) from each pool picture's title and its filled boxes.
    let pool = |point: &str| -> (usize, u64) {
        let svg = std::fs::read_to_string(dir.join(format!("pool-{point}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let objects = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("rect")
                    && n.attribute("fill").map(str::to_ascii_lowercase) == Some("#2f6fc4".into())
            })
            .count();
        let pages = svg
            .split(" pages")
            .next()
            .and_then(|t| t.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        (objects, pages)
    };
    let (end, compacted) = (pool("end"), pool("compacted"));
    let live: usize = stdout
        .lines()
        .find_map(|l| l.split_once(" objects live at the end"))
        .and_then(|(t, _)| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no live count in the soak's report: {stdout}"));
    assert_eq!(end.0, live, "one filled box per surviving object");
    assert_eq!(compacted.0, live, "compaction keeps every object");
    assert!(compacted.1 <= end.1, "{end:?} then {compacted:?}");
    assert!(dir.join("memmap-end.svg").exists() && dir.join("memmap-compacted.svg").exists());
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

/// Headless Chromium, or a failure that says how to install it: the viewer's tests never
/// pass without a browser.
fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "the replay viewer is tested in a headless browser and none was found: \
                 `apt-get install -y chromium` (scripts/setup installs it)"
            )
        })
}

/// What the viewer shows after `presses` (the page's `#press=` fragment, clicked through its
/// own buttons at load), as the browser's DOM.
struct Shown {
    dom: String,
}

impl Shown {
    fn after(presses: &str) -> Shown {
        Shown::after_ms(presses, 0)
    }

    /// After `presses` and `ms` milliseconds of the page's own time (the browser's virtual
    /// time: a timer of the page runs as if that long had passed, at once).
    fn after_ms(presses: &str, ms: u32) -> Shown {
        let page = sample_replay().dir.join(boot::viewer::FILE_NAME);
        assert!(
            page.exists(),
            "{}\n{}",
            sample_replay().stderr,
            page.display()
        );
        let url = format!("file://{}#press={presses}", page.display());
        let budget = format!("--virtual-time-budget={ms}");
        let mut args = vec![
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--dump-dom",
        ];
        if ms > 0 {
            args.push(&budget);
        }
        let out = Command::new(chromium())
            .args(args)
            .arg(&url)
            .output()
            .expect("chromium runs");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            dom.contains("id=\"op\""),
            "{presses}: no page in the DOM: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Shown { dom }
    }

    /// The text of the element with this id.
    fn text(&self, id: &str) -> String {
        let open = format!("id=\"{id}\"");
        let at = self.dom.find(&open).unwrap_or_else(|| panic!("no #{id}"));
        let body = &self.dom[at..];
        let start = body.find('>').unwrap() + 1;
        let end = body[start..].find('<').unwrap();
        body[start..start + end].replace("&gt;", ">")
    }

    /// Every element `<tag ...>` with its attributes.
    fn elements(&self, tag: &str) -> Vec<Vec<(String, String)>> {
        let open = format!("<{tag} ");
        self.dom
            .match_indices(&open)
            .map(|(at, _)| {
                let end = at + self.dom[at..].find('>').unwrap();
                let mut attrs = Vec::new();
                let mut rest = &self.dom[at + open.len()..end];
                while let Some(eq) = rest.find("=\"") {
                    let name = rest[..eq].trim().to_string();
                    let close = rest[eq + 2..].find('"').unwrap();
                    attrs.push((name, rest[eq + 2..eq + 2 + close].to_string()));
                    rest = &rest[eq + 2 + close + 1..];
                }
                attrs
            })
            .collect()
    }

    /// The object slots drawn: (state, the trace id in it).
    fn slots(&self) -> Vec<(String, Option<u64>)> {
        let get = |attrs: &[(String, String)], k: &str| {
            attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        self.elements("rect")
            .into_iter()
            .filter(|a| get(a, "class").as_deref() == Some("slot"))
            .map(|a| {
                (
                    get(&a, "data-state").unwrap(),
                    get(&a, "data-id").map(|i| i.parse().unwrap()),
                )
            })
            .collect()
    }

    /// The class table's rows: (class, size, pages, used, slots).
    fn class_rows(&self) -> Vec<[u64; 5]> {
        let table = &self.dom[self.dom.find("<tbody>").unwrap()..];
        let table = &table[..table.find("</tbody>").unwrap()];
        table
            .split("<tr")
            .skip(1)
            .map(|row| {
                let cells: Vec<&str> = row
                    .split("<td>")
                    .skip(1)
                    .map(|c| &c[..c.find('<').unwrap()])
                    .collect();
                let (used, slots) = cells[5].split_once('/').unwrap();
                let n = |s: &str| s.parse::<u64>().unwrap();
                [n(cells[0]), n(cells[1]), n(cells[4]), n(used), n(slots)]
            })
            .collect()
    }
}

/// The kernel's own class table printed before the `REPLAY line=LINE` line: (class, size,
/// pages, used, slots) per row.
fn kernel_class_rows(stdout: &str, line: usize) -> Vec<[u64; 5]> {
    let lines: Vec<&str> = stdout.lines().collect();
    let end = lines
        .iter()
        .position(|l| l.starts_with(&format!("REPLAY line={line} ")))
        .unwrap();
    let start = lines[..end]
        .iter()
        .rposition(|l| l.starts_with(" class  size"))
        .unwrap();
    lines[start + 1..end]
        .iter()
        .filter(|l| !l.trim_start().starts_with("Total"))
        .map(|l| {
            let f: Vec<u64> = l.split_whitespace().map(|w| w.parse().unwrap()).collect();
            // class size 11 groups obj_allocated obj_used pages_used pages_per_zspage freeable
            [f[0], f[1], f[15], f[14], f[13]]
        })
        .collect()
}

/// The figure `name=` of the `REPLAY line=LINE` line.
fn replay_figure(stdout: &str, line: usize, name: &str) -> u64 {
    let l = stdout
        .lines()
        .find(|l| l.starts_with(&format!("REPLAY line={line} ")))
        .unwrap();
    l.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_replay_viewer_shows_each_step_as_the_trace_and_the_kernel_say() {
    let run = sample_replay();
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("the replay viewer (17 steps)"),
        "{}",
        run.stderr
    );
    // The truth from the trace file itself: each operation, its line, the objects live.
    let text = std::fs::read_to_string(SAMPLE_TRACE).unwrap();
    let mut ops = Vec::new();
    let mut live = std::collections::BTreeSet::new();
    for (i, l) in text.lines().enumerate() {
        if let Some(op) = zsmalloc::trace::parse_line(l).unwrap() {
            match op {
                zsmalloc::trace::Op::Alloc { id, .. } => live.insert(id),
                zsmalloc::trace::Op::Free { id } => live.remove(&id),
                _ => false,
            };
            ops.push((i + 1, op, live.clone()));
        }
    }
    assert_eq!(ops.len(), 17);
    let empty = Shown::after("next*0");
    assert!(empty.text("op").starts_with("step 0 of 17"));
    assert!(empty.slots().is_empty(), "the empty pool");
    // Steps: the first alloc, the sixth (an object spanning two pages), the `s` at line 13,
    // the frees at 14 and 15, the `c` at 16, the `s` at 19.
    for step in [1, 6, 11, 12, 13, 14, 17] {
        let shown = Shown::after(&format!("next*{step}"));
        let (line, op, live) = &ops[step - 1];
        assert_eq!(
            shown.text("op"),
            format!("step {step} of 17: line {line}: {op}"),
            "step {step}"
        );
        let summary = shown.text("summary");
        assert!(
            summary.starts_with(&format!("objects {} · pages ", live.len())),
            "step {step}: {summary}"
        );
        // Every live object is in an allocated slot, once; no other slot holds an id.
        let mut ids: Vec<u64> = shown.slots().iter().filter_map(|s| s.1).collect();
        ids.sort();
        assert_eq!(ids, live.iter().copied().collect::<Vec<_>>(), "step {step}");
        let states = |state: &str| -> Vec<Option<u64>> {
            shown
                .slots()
                .into_iter()
                .filter(|s| s.0 == state)
                .map(|s| s.1)
                .collect()
        };
        match op {
            zsmalloc::trace::Op::Alloc { id, .. } | zsmalloc::trace::Op::Write { id } => {
                assert_eq!(states("current"), [Some(*id)], "step {step}")
            }
            zsmalloc::trace::Op::Free { id } => {
                assert!(!ids.contains(id));
                let change = shown.text("change");
                assert!(
                    change.starts_with(&format!("object {id} freed from class ")),
                    "{change}"
                );
                // Object 2 (line 14) was alone in its zspage (cut to one page by the pause
                // at line 13), which goes with it; object 4 (line 15) leaves a free slot
                // beside objects 5 and 6.
                if *line == 14 {
                    assert!(states("freed").is_empty());
                    assert!(change.contains("; pages 5 → 4"), "{change}");
                } else {
                    assert_eq!(states("freed").len(), 1, "step {step}: the slot it left");
                }
            }
            zsmalloc::trace::Op::Compact | zsmalloc::trace::Op::Stats => {
                // A report: the kernel printed its pages and its class table.
                let pages = replay_figure(&run.stdout, *line, "pages");
                assert!(
                    summary.contains(&format!("pages {pages} ")),
                    "step {step}: {summary}"
                );
                assert_eq!(
                    shown.class_rows(),
                    kernel_class_rows(&run.stdout, *line),
                    "step {step}: the page's class table and the kernel's"
                );
            }
        }
        if matches!(op, zsmalloc::trace::Op::Compact) {
            // What this compaction gave back, from the kernel's own line.
            let by_this_c: u64 = run
                .stdout
                .lines()
                .find(|l| l.contains(&format!("line {line} (after c)")))
                .and_then(|l| l.rsplit('(').next())
                .and_then(|t| t.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap();
            let after = replay_figure(&run.stdout, *line, "pages");
            let change = shown.text("change");
            assert!(
                change.contains(&format!("pages {} → {after}", after + by_this_c)),
                "{change}"
            );
            let moved = states("moved").len();
            assert!(moved > 0, "compaction moved objects: {change}");
            assert!(
                change.contains(&format!("compaction moved {moved} object")),
                "{change}"
            );
        }
    }
}

#[test]
fn the_replay_viewer_goes_back_plays_and_jumps_to_a_line() {
    let back = Shown::after("next*15,back");
    assert!(back.text("op").starts_with("step 14 of 17: line 16: c"));
    let jump = Shown::after("jump:16");
    assert_eq!(jump.text("op"), back.text("op"));
    assert_eq!(jump.slots(), back.slots(), "the same step, drawn the same");
    // A line between operations goes to the next operation; past the end, to the last.
    assert!(
        Shown::after("jump:2")
            .text("op")
            .starts_with("step 1 of 17: line 3: a 1 100")
    );
    assert!(
        Shown::after("jump:99")
            .text("op")
            .starts_with("step 17 of 17: line 19: s")
    );
    // Play steps on by itself (0.7 s a step) and stops at the last step.
    let playing = Shown::after_ms("play", 3000);
    let step: usize = playing.text("op")["step ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..17).contains(&step), "{}", playing.text("op"));
    assert!(playing.text("play").contains("pause"));
    let played = Shown::after_ms("play", 30_000);
    assert!(played.text("op").starts_with("step 17 of 17"));
    assert!(played.text("play").contains("play"), "stopped at the end");
    let bad = Shown::after("next*3,jump:0");
    assert!(bad.text("change").contains("no such line"));
    assert!(bad.text("op").starts_with("step 3 of 17"), "nothing moved");
}

#[test]
fn a_trace_too_large_for_the_viewer_is_refused_and_still_replayed() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("viewer-too-large");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("big.trace");
    let ops = zsmalloc::steps::VIEWER_MAX_OPS + 1;
    let text: String = (0..ops).map(|i| format!("a {i} 32\n")).collect();
    std::fs::write(&trace, text).unwrap();
    let out = boot_cmd(&[
        "--timeout",
        "180",
        "replay",
        "--viewer",
        dir.to_str().unwrap(),
        trace.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "has {ops} operations; the viewer shows at most 2000"
        )),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "zsos: replay big.trace done: {ops} lines, {ops} operations"
        )),
        "the replay still ran and reported: {stdout}"
    );
    assert!(!dir.join(boot::viewer::FILE_NAME).exists());
    assert!(!stdout.contains("VIEW "));
}
