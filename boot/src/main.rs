//! `cargo run -- [OPTIONS] [MODE [ARGS...]]`: build a zsos disk image, boot it under QEMU,
//! stream the serial console, and exit with the kernel's verdict.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use boot::bench;
use boot::image::{self, Firmware};
use boot::ktest;
use boot::qemu::{self, Machine};

mod cli;

const USAGE: &str = "\
usage: cargo run -- [OPTIONS] [MODE [ARGS...]]

Builds a zsos disk image, boots it under QEMU (TCG), streams the serial console and exits
0 only if the kernel reports success.

Options (before the mode):
  --uefi            boot with UEFI firmware (OVMF; the default)
  --bios            boot with legacy BIOS
  --smp N           number of CPUs, 1 to 64 (default 2)
  --memory SIZE     guest memory, e.g. 256M or 2G (default 512M)
  --timeout SECS    kill QEMU after SECS seconds (default 300; 3600 with --gdb)
  --gdb             start halted with a gdb server on localhost:1234 and print the gdb command
  --memdesc         memdesc mode: the kernel builds an 8-byte descriptor per frame (a type tag
                    and a pointer) instead of the 64-byte one, and allocates zsmalloc's zsdescs
                    apart (docs/memdesc.md); any mode runs in it, e.g. `--memdesc soak`
  -h, --help        show this help

Modes (passed to the kernel; everything after the mode goes to it unchanged):
  run [--pictures DIR]
                    the default demo; --pictures draws its pool after the fill, the discards
                    and the compaction as DIR/pool-fill.svg, pool-discard.svg,
                    pool-compacted.svg, and physical memory by owner as memmap-*.svg
  test [FILTER] [--exact] [--list]
                    run the in-kernel tests whose names contain FILTER (libtest style lines,
                    then 'N passed, N failed'); --list only lists them. They are built into
                    the test kernel only: run them with `cargo ktest [FILTER]` (an alias for
                    `cargo run -p boot --features ktest -- test`)
  bench [SECTION...] [--policy P] [--json FILE] [--both-memmaps]
                    run the benchmarks (all sections, or those named); the console shows the
                    tables, the runner writes every figure to target/zsos/bench-TIME.json
                    (and to FILE) and draws SVG charts beside it; P: the policy of the
                    density section's zsmalloc (default: zsos's); --both-memmaps boots the
                    bench twice, wide then --memdesc, and prints every figure side by side
                    with the memdesc/wide ratio (e.g. `bench speed --both-memmaps`)
  replay [--policy P] [--pictures DIR] [--viewer DIR] FILE
                    replay a trace of pool operations (a ID SIZE, f ID, w ID, c, s, # comment)
                    from the host file FILE, reporting at every c and s and at the end; P:
                    zsos (the default; docs/policies.md), zsos-chain=N, linux (upstream's
                    rules), linux-chain=N (N 4..16), fitted, fitted-chain=N; --pictures
                    draws the pool at each of those points as DIR/pool-lineN-AT.svg and
                    physical memory (every frame by owner) as DIR/memmap-lineN-AT.svg;
                    --viewer writes DIR/replay.html, a page that steps through the replay
                    operation by operation (traces of at most 2000 operations)
  soak [N] [--seed S] [--policy P] [--pictures DIR]
                    N random pool operations (default 1000000) on every CPU, with compaction,
                    page migration and ranges emptied, every object checked byte for byte;
                    --pictures draws the pool and memory at the end and after a last
                    compaction (DIR/pool-end.svg, pool-compacted.svg, memmap-*.svg)
  crash KIND        end in a chosen failure (panic, page-fault, gp, ud, ap-panic,
                    ap-stack-overflow) to see its
                    diagnostic

Exit status: 0 kernel success, 1 kernel failure, 2 usage error, 3 timeout or no verdict.";

/// Exit status for a bad command line.
const EXIT_USAGE: u8 = 2;
/// Exit status for a run that ended without the kernel's verdict.
const EXIT_NO_VERDICT: u8 = 3;

struct Options {
    machine: Machine,
    timeout_given: bool,
    /// `--memory` was on the command line (else a replay's memory may be raised to fit).
    memory_given: bool,
    kernel_args: Vec<String>,
    /// Data for the kernel after its arguments (the trace file of `replay`).
    payload: Vec<u8>,
    /// `bench --json FILE`: where else to write the figures.
    bench_json: Option<PathBuf>,
    /// `bench --both-memmaps`: boot the bench in the wide and the memdesc memmap, one after
    /// the other, and compare.
    both_memmaps: bool,
    /// `replay ... --pictures DIR`: where the pool's pictures go.
    pictures: Option<PathBuf>,
    /// `replay ... --viewer DIR`: where the replay viewer's page goes, and the trace's name.
    viewer: Option<(PathBuf, String)>,
    /// Why the viewer was asked for and cannot be made (a trace too large): reported, and
    /// the run fails, after the replay's own result.
    viewer_refused: Option<String>,
}

/// `bench ... --json FILE` and `bench ... --both-memmaps`: the runner's own options, taken
/// out of the kernel's arguments. `bench ... --policy P`: checked here, before any boot, and
/// passed on by its full name.
fn take_bench_options(opts: &mut Options) -> Result<(), String> {
    opts.bench_json = cli::take_bench_json(&mut opts.kernel_args)?.map(PathBuf::from);
    opts.both_memmaps = cli::take_bench_both_memmaps(&mut opts.kernel_args);
    if opts.both_memmaps && opts.machine.memdesc {
        return Err("bench --both-memmaps boots both memmaps itself; leave out --memdesc".into());
    }
    if opts.kernel_args.first().map(String::as_str) == Some("bench")
        && let Some(i) = opts.kernel_args.iter().position(|a| a == "--policy")
    {
        let name = opts.kernel_args.get(i + 1).cloned().ok_or(
            "bench --policy needs a policy name (default, linux, linux-chain=N, zsos, ...)",
        )?;
        opts.kernel_args[i + 1] = zsmalloc::Policy::parse(&name)?.name();
    }
    Ok(())
}

/// `run --pictures DIR` (the demo) and `soak ... --pictures DIR`: the pool's pictures (after
/// the demo's fill, discards and compaction; at the soak's end and after a compaction) go to
/// DIR; the kernel is asked for its snapshots.
fn take_mode_pictures(opts: &mut Options) -> Result<(), String> {
    let mode = match opts.kernel_args.first().map(String::as_str) {
        Some(m @ ("run" | "soak")) => m.to_string(),
        _ => return Ok(()),
    };
    if let Some(i) = opts.kernel_args.iter().position(|a| a == "--pictures") {
        let dir = opts.kernel_args.get(i + 1).cloned().ok_or(format!(
            "{mode} --pictures needs a directory for the pictures"
        ))?;
        opts.pictures = Some(writable_dir(&dir)?);
        opts.kernel_args
            .splice(i..i + 2, ["--snapshots".to_string()]);
    }
    Ok(())
}

/// `soak ...`: its arguments are checked here, before any boot, by the kernel's own parser.
fn check_soak_args(opts: &Options) -> Result<(), String> {
    match opts.kernel_args.split_first() {
        Some((mode, rest)) if mode == "soak" => {
            zsmalloc::soak_args::SoakArgs::parse(rest.iter().map(String::as_str)).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// `replay [--policy P] FILE`: the file is read here and travels as the ramdisk's payload;
/// the kernel gets `replay NAME --policy P` (NAME only labels its output). A bad policy
/// is refused here, before any boot.
fn load_replay_file(opts: &mut Options) -> Result<(), String> {
    if opts.kernel_args.first().map(String::as_str) != Some("replay") {
        return Ok(());
    }
    let mut rest = opts.kernel_args[1..].to_vec();
    let mut policy = zsmalloc::Policy::default();
    if let Some(i) = rest.iter().position(|a| a == "--policy") {
        let name = rest.get(i + 1).cloned().ok_or(
            "replay --policy needs a policy name (default, linux, linux-chain=N, zsos, ...)",
        )?;
        policy = zsmalloc::Policy::parse(&name)?;
        rest.drain(i..i + 2);
    }
    if let Some(i) = rest.iter().position(|a| a == "--pictures") {
        let dir = rest
            .get(i + 1)
            .cloned()
            .ok_or("replay --pictures needs a directory for the pictures")?;
        opts.pictures = Some(writable_dir(&dir)?);
        rest.drain(i..i + 2);
    }
    let mut viewer_dir = None;
    if let Some(i) = rest.iter().position(|a| a == "--viewer") {
        let dir = rest
            .get(i + 1)
            .cloned()
            .ok_or("replay --viewer needs a directory for the page")?;
        viewer_dir = Some(writable_dir(&dir)?);
        rest.drain(i..i + 2);
    }
    let file = match &rest[..] {
        [file] if !file.starts_with("--") => file.clone(),
        [flag] => return Err(format!("replay: unknown option '{flag}'")),
        [] => return Err("replay needs a trace FILE: cargo run -- replay FILE".into()),
        [_, extra, ..] => return Err(format!("replay takes one FILE, got also '{extra}'")),
    };
    opts.payload = std::fs::read(&file).map_err(|e| format!("cannot read trace '{file}': {e}"))?;
    let needed = memory_for_payload(opts.payload.len());
    let given = opts.machine.memory_mib();
    if given < needed {
        if opts.memory_given {
            return Err(format!(
                "replay: the trace '{file}' ({} KiB) needs --memory {needed}M or more: the \
                 bootloader loads it whole into memory before the kernel starts",
                opts.payload.len().div_ceil(1024)
            ));
        }
        opts.machine.memory = format!("{needed}M");
    }
    let name = std::path::Path::new(&file)
        .file_name()
        .map_or(file.clone(), |n| n.to_string_lossy().into_owned());
    opts.kernel_args = vec![
        "replay".into(),
        name.replace(['\n', '\r'], "?"),
        "--policy".into(),
        policy.name(),
    ];
    if opts.pictures.is_some() {
        opts.kernel_args.push("--snapshots".into());
    }
    if let Some(dir) = viewer_dir {
        // Counted as the kernel will (a malformed line stops the replay there, and the
        // kernel says so).
        let ops = String::from_utf8_lossy(&opts.payload)
            .lines()
            .map_while(|l| zsmalloc::trace::parse_line(l).ok())
            .flatten()
            .count();
        if ops > zsmalloc::steps::VIEWER_MAX_OPS {
            let why = format!(
                "viewer: '{file}' has {ops} operations; the viewer shows at most {} (cut the \
                 trace, or draw its reports with --pictures); replaying without it",
                zsmalloc::steps::VIEWER_MAX_OPS
            );
            eprintln!("zsos: error: {why}");
            opts.viewer_refused = Some(why);
        } else {
            opts.kernel_args.push("--steps".into());
            opts.viewer = Some((dir, name));
        }
    }
    Ok(())
}

/// `dir`, made if missing, once a file can be written in it (checked before any boot).
fn writable_dir(dir: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(dir);
    std::fs::create_dir_all(&path).map_err(|e| format!("cannot make directory '{dir}': {e}"))?;
    let probe = path.join(".zsos-write-check");
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write in '{dir}': {e}"))?;
    let _ = std::fs::remove_file(probe);
    Ok(path)
}

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let Some(cl) = cli::parse(args)? else {
        return Ok(None);
    };
    Ok(Some(Options {
        machine: Machine {
            firmware: if cl.bios {
                Firmware::Bios
            } else {
                Firmware::Uefi
            },
            smp: cl.smp,
            memory: format!("{}M", cl.memory_mib),
            timeout: cl.timeout.unwrap_or(Duration::from_secs(300)),
            gdb: cl.gdb,
            memdesc: cl.memdesc,
            kernel: None,
        },
        timeout_given: cl.timeout.is_some(),
        memory_given: cl.memory_given,
        kernel_args: cl.kernel_args,
        payload: Vec::new(),
        bench_json: None,
        both_memmaps: false,
        pictures: None,
        viewer: None,
        viewer_refused: None,
    }))
}

/// The least guest memory, in MiB, that boots with a ramdisk payload of `bytes`: the
/// minimum without one, plus three times the payload (the UEFI bootloader needs room to read
/// the file and copy it; measured: a 39 MiB trace fails at 128M and boots at 160M).
fn memory_for_payload(bytes: usize) -> u64 {
    cli::MIN_MEMORY_MIB + (3 * bytes as u64).div_ceil(1 << 20)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = match parse_args(&args) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            out(USAGE);
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("zsos: error: {msg}\n(run with --help for usage)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(msg) = load_replay_file(&mut opts)
        .and_then(|()| take_bench_options(&mut opts))
        .and_then(|()| take_mode_pictures(&mut opts))
        .and_then(|()| check_soak_args(&opts))
    {
        eprintln!("zsos: error: {msg}");
        return ExitCode::from(EXIT_USAGE);
    }
    if opts.machine.gdb {
        if !opts.timeout_given {
            opts.machine.timeout = Duration::from_secs(3600);
        }
        eprintln!(
            "zsos: QEMU waits for gdb on localhost:1234. In another terminal:\n  \
             gdb -ex 'symbol-file -o {:#x} {}' -ex 'target remote localhost:1234'",
            boot::KERNEL_BASE,
            boot::kernel_elf().display()
        );
    }
    let is_test = opts.kernel_args.first().map(String::as_str) == Some("test");
    if is_test && !cfg!(feature = "ktest") {
        eprintln!(
            "zsos: error: the kernel `cargo run` builds has no tests; they are in the test \
             kernel: `cargo ktest [FILTER]` (cargo run -p boot --features ktest -- test ...)"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let is_list = opts.kernel_args.iter().any(|a| a == "--list");
    let result = if is_test && !is_list {
        run_tests(&opts)
    } else if opts.both_memmaps {
        run_both_memmaps(&opts)
    } else {
        run_once(&opts)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zsos: error: {e}");
            ExitCode::from(EXIT_NO_VERDICT)
        }
    }
}

/// Writes a line to stdout; a closed pipe (`cargo run | head`) is not an error worth a panic.
fn out(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints the console as it arrives, but holds back the firmware's own lines until the
/// kernel's banner: they are shown only if the kernel never starts (that is when they help).
#[derive(Default)]
struct Console {
    kernel_started: bool,
    held: Vec<String>,
}

impl Console {
    fn line(&mut self, line: &str) {
        if !self.kernel_started && line == boot::KERNEL_BANNER {
            self.kernel_started = true;
        }
        if self.kernel_started {
            out(line);
        } else {
            self.held.push(line.to_string());
        }
    }

    fn finish(&mut self) {
        if !self.kernel_started {
            eprintln!("zsos: the kernel never started; firmware output follows:");
            for line in self.held.drain(..) {
                out(&line);
            }
        }
    }
}

fn run_once(opts: &Options) -> std::io::Result<ExitCode> {
    let started = SystemTime::now();
    let (run, figures, snaps) = boot_and_collect(opts, &opts.machine)?;
    let is_bench = opts.kernel_args.first().map(String::as_str) == Some("bench");
    if is_bench {
        let success = run.ending == qemu::Ending::KernelSuccess;
        save_bench(opts, started, success, &figures);
    }
    let pictures = opts
        .pictures
        .as_deref()
        .map(|dir| draw_pictures(&snaps, dir));
    let viewer = opts
        .viewer
        .as_ref()
        .map(|(dir, name)| write_viewer(&snaps, dir, name));
    eprintln!("zsos: {} ({:.1} s)", run.ending, run.wall.as_secs_f64());
    let mut failed = false;
    for (what, result) in [("pictures", pictures), ("viewer", viewer)] {
        if let Some(Err(e)) = result {
            eprintln!("zsos: error: {what}: {e}");
            failed = true;
        }
    }
    if let Some(why) = &opts.viewer_refused {
        eprintln!("zsos: error: {why}");
        failed = true;
    }
    Ok(if failed {
        ExitCode::from(EXIT_NO_VERDICT)
    } else {
        exit_code(&run.ending)
    })
}

/// Writes the replay viewer's page from the steps the console carried.
fn write_viewer(lines: &[String], dir: &std::path::Path, name: &str) -> Result<(), String> {
    let steps = zsmalloc::steps::StepView::parse(lines.iter().map(String::as_str))?;
    let path = boot::viewer::write(dir, name, &steps).map_err(|e| e.to_string())?;
    eprintln!(
        "zsos: the replay viewer ({} steps) in {}",
        steps.len(),
        path.display()
    );
    Ok(())
}

/// Draws every snapshot the console carried into `dir`, as `pool-POINT.svg`, and every
/// frame census as `memmap-POINT.svg`.
fn draw_pictures(lines: &[String], dir: &std::path::Path) -> Result<(), String> {
    // A step's snapshot is the viewer's, not a picture.
    let snaps: Vec<_> = zsmalloc::snapshot::Snapshot::parse(lines.iter().map(String::as_str))?
        .into_iter()
        .filter(|s| !s.point.starts_with("step-"))
        .collect();
    let maps = zsmalloc::frame_map::FrameMap::parse(lines.iter().map(String::as_str))?;
    for snap in &snaps {
        let path = dir.join(format!("pool-{}.svg", snap.point));
        boot::pictures::draw_pool(snap, &path).map_err(|e| e.to_string())?;
    }
    for map in &maps {
        let path = dir.join(format!("memmap-{}.svg", map.point));
        boot::pictures::draw_memmap(map, &path).map_err(|e| e.to_string())?;
    }
    eprintln!(
        "zsos: {} pool and {} memmap pictures in {}",
        snaps.len(),
        maps.len(),
        dir.display()
    );
    Ok(())
}

/// The runner's exit status for how a run ended.
fn exit_code(ending: &qemu::Ending) -> ExitCode {
    match ending {
        qemu::Ending::KernelSuccess => ExitCode::SUCCESS,
        qemu::Ending::KernelFailure => ExitCode::FAILURE,
        _ => ExitCode::from(EXIT_NO_VERDICT),
    }
}

/// Boots `machine` with the options' kernel arguments, shows the console, and returns the
/// run with the bench figures it reported (a bench's machine-readable lines go to its file,
/// not to the console).
fn boot_and_collect(
    opts: &Options,
    machine: &Machine,
) -> std::io::Result<(qemu::Run, Vec<bench::Figure>, Vec<String>)> {
    let ramdisk = image::encode_ramdisk(&machine.kernel_args(&opts.kernel_args), &opts.payload)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.0))?;
    let img = image::build(machine.kernel_elf(), ramdisk, machine.firmware)?;
    let is_bench = opts.kernel_args.first().map(String::as_str) == Some("bench");
    let mut console = Console::default();
    let (mut figures, mut snaps) = (Vec::new(), Vec::new());
    let run = qemu::run(machine, img.path(), &mut |l| match bench::parse_line(l)
        .filter(|_| is_bench)
    {
        Some(figure) => figures.push(figure),
        // Lines for pictures and the viewer stay off the console (they are long).
        None if (opts.pictures.is_some() || opts.viewer.is_some())
            && ["SNAP ", "MEMMAP ", "VIEW "]
                .iter()
                .any(|p| l.starts_with(p)) =>
        {
            snaps.push(l.to_string())
        }
        None => console.line(l),
    })?;
    console.finish();
    Ok((run, figures, snaps))
}

/// `bench ... --both-memmaps`: the bench in the wide memmap, then in the memdesc one, then
/// every figure both reported side by side with the memdesc / wide ratio. The file gets the
/// wide run's figures as they are, the memdesc run's as `memdesc.NAME`, and the ratios as
/// `ratio.memdesc/wide.NAME`.
fn run_both_memmaps(opts: &Options) -> std::io::Result<ExitCode> {
    let started = SystemTime::now();
    let mut runs = Vec::new();
    for memdesc in [false, true] {
        let machine = Machine {
            memdesc,
            ..opts.machine.clone()
        };
        let layout = if memdesc { "memdesc" } else { "wide" };
        eprintln!("zsos: bench with the {layout} memmap");
        let (run, figures, _) = boot_and_collect(opts, &machine)?;
        eprintln!("zsos: {} ({:.1} s)", run.ending, run.wall.as_secs_f64());
        if run.ending != qemu::Ending::KernelSuccess {
            save_bench(opts, started, false, &figures);
            return Ok(exit_code(&run.ending));
        }
        runs.push(figures);
    }
    let (wide, memdesc) = (&runs[0], &runs[1]);
    let mut all = wide.clone();
    out("");
    out("zsos: memdesc memmap against the wide one (same figures, two boots of this run)");
    out(&format!(
        "  {:<48} {:>12} {:>12} {:>9}  unit",
        "figure", "wide", "memdesc", "ratio"
    ));
    for w in wide {
        let Some(m) = memdesc.iter().find(|m| m.name == w.name) else {
            continue;
        };
        let ratio = m.value / w.value;
        out(&format!(
            "  {:<48} {:>12} {:>12} {:>9}  {}",
            w.name,
            w.value,
            m.value,
            if ratio.is_finite() {
                format!("{ratio:.3}")
            } else {
                "-".into()
            },
            w.unit
        ));
        if ratio.is_finite() {
            all.push(bench::Figure {
                name: format!("ratio.memdesc/wide.{}", w.name),
                value: ratio,
                unit: "ratio".into(),
            });
        }
    }
    all.extend(memdesc.iter().map(|m| bench::Figure {
        name: format!("memdesc.{}", m.name),
        ..m.clone()
    }));
    save_bench(opts, started, true, &all);
    Ok(ExitCode::SUCCESS)
}

/// Writes a bench run's figures (`target/zsos/bench-TIME.json`, and `--json FILE`) and its
/// charts (`target/zsos/bench-TIME/*.svg`), and says where. Failures to write are reported,
/// not fatal: the console already showed the tables.
fn save_bench(opts: &Options, started: SystemTime, success: bool, figures: &[bench::Figure]) {
    if figures.is_empty() {
        eprintln!("zsos: the bench reported no figures; nothing written");
        return;
    }
    let unix = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = bench::utc_timestamp(unix);
    let info = bench::RunInfo {
        started: stamp.clone(),
        command: opts.kernel_args.clone(),
        firmware: match opts.machine.firmware {
            Firmware::Uefi => "uefi".into(),
            Firmware::Bios => "bios".into(),
        },
        cpus: opts.machine.smp,
        memory: opts.machine.memory.clone(),
        kernel_success: success,
    };
    let json = bench::to_json(&info, figures);
    // 2026-11-30T02:45:12Z -> 20261130-024512: sortable, and a valid file name everywhere.
    let name: String = stamp
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    let dir = boot::target_dir().join("zsos");
    let mut files = vec![dir.join(format!("bench-{name}.json"))];
    files.extend(opts.bench_json.clone());
    for file in &files {
        if let Some(parent) = file.parent() {
            // A failure here shows as the write's own error just below.
            let _ = std::fs::create_dir_all(parent);
        }
        match std::fs::write(file, &json) {
            Ok(()) => eprintln!(
                "zsos: bench figures ({}) written to {}",
                figures.len(),
                file.display()
            ),
            Err(e) => eprintln!("zsos: error: cannot write {}: {e}", file.display()),
        }
    }
    match bench::draw_charts(figures, &dir.join(format!("bench-{name}"))) {
        Ok(charts) if charts.is_empty() => {
            eprintln!("zsos: no charts (the sections run have none: density, classes, scale do)")
        }
        Ok(charts) => {
            for chart in charts {
                eprintln!("zsos: chart: {}", chart.display());
            }
        }
        Err(e) => eprintln!("zsos: error: cannot draw the charts: {e}"),
    }
}

fn run_tests(opts: &Options) -> std::io::Result<ExitCode> {
    let mut console = Console::default();
    let report = ktest::run_suite(&opts.machine, &opts.kernel_args[1..], &mut |l| {
        // Each boot starts with firmware output again: hold it back once more.
        if l == boot::KERNEL_BANNER {
            console.held.clear();
        }
        console.line(l);
        if l.starts_with("ktest: resume-after") {
            console.kernel_started = false;
        }
    })?;
    console.finish();
    for problem in &report.problems {
        eprintln!("zsos: problem: {problem}");
    }
    let failed: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.outcome == ktest::Outcome::Failed)
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        eprintln!("zsos: failed kernel tests: {}", failed.join(", "));
    }
    eprintln!(
        "zsos: kernel tests: {} in {} boot(s)",
        report.summary(),
        report.boots
    );
    Ok(if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_before_the_mode_configure_the_machine_and_the_rest_goes_to_the_kernel() {
        let o = parse_args(&strings(&[
            "--bios", "--smp", "4", "--memory", "2G", "test", "--exact", "x",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.machine.firmware, Firmware::Bios);
        assert_eq!(o.machine.smp, 4);
        assert_eq!(o.machine.memory, "2048M");
        assert_eq!(o.kernel_args, strings(&["test", "--exact", "x"]));
    }

    #[test]
    fn bad_options_are_errors_naming_the_problem() {
        for (args, needle) in [
            (&["--frob"][..], "unknown option '--frob'"),
            (&["--smp", "0"][..], "--smp"),
            (&["--smp"][..], "needs a value"),
            (&["--memory", "12"][..], "at least 64M"),
            (&["--memory", "1T"][..], "--memory"),
            (&["--memory", "99999999999999999G"][..], "--memory"),
            (&["--memory", "2000000G"][..], "--memory"),
            (&["--timeout", "-3"][..], "--timeout"),
        ] {
            let err = parse_args(&strings(args))
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_demo_s_pictures_option_becomes_the_kernel_s_snapshots() {
        let dir = std::env::temp_dir().join(format!("zsos-demo-opt-{}", std::process::id()));
        let mut o = parse_args(&strings(&["run", "--pictures", dir.to_str().unwrap()]))
            .unwrap()
            .unwrap();
        take_mode_pictures(&mut o).unwrap();
        assert_eq!(o.kernel_args, strings(&["run", "--snapshots"]));
        assert_eq!(o.pictures.as_deref(), Some(dir.as_path()));
        assert!(dir.is_dir(), "the directory is made");
        let _ = std::fs::remove_dir_all(&dir);
        let mut o = parse_args(&strings(&["run", "--pictures"]))
            .unwrap()
            .unwrap();
        let e = take_mode_pictures(&mut o).unwrap_err();
        assert!(e.contains("needs a directory"), "{e}");
        let mut o = parse_args(&strings(&["run"])).unwrap().unwrap();
        take_mode_pictures(&mut o).unwrap();
        assert_eq!((o.kernel_args, o.pictures), (strings(&["run"]), None));
    }

    #[test]
    fn memdesc_is_a_kernel_option_written_before_the_mode() {
        let o = parse_args(&strings(&["--memdesc", "soak", "--memdesc"]))
            .unwrap()
            .unwrap();
        assert!(o.machine.memdesc);
        assert_eq!(
            o.machine.kernel_args(&o.kernel_args),
            strings(&["--memdesc", "soak", "--memdesc"]),
            "the option first, then the mode and its arguments as given"
        );
        let plain = parse_args(&strings(&["soak"])).unwrap().unwrap();
        assert_eq!(
            plain.machine.kernel_args(&plain.kernel_args),
            strings(&["soak"])
        );
    }

    #[test]
    fn both_memmaps_is_the_runner_s_own_bench_flag() {
        let mut o = parse_args(&strings(&["bench", "speed", "--both-memmaps"]))
            .unwrap()
            .unwrap();
        take_bench_options(&mut o).unwrap();
        assert!(o.both_memmaps);
        assert_eq!(
            o.kernel_args,
            strings(&["bench", "speed"]),
            "not sent to the kernel"
        );
        let mut o = parse_args(&strings(&["--memdesc", "bench", "--both-memmaps"]))
            .unwrap()
            .unwrap();
        let err = take_bench_options(&mut o).unwrap_err();
        assert!(err.contains("leave out --memdesc"), "{err}");
        let mut o = parse_args(&strings(&["soak", "--both-memmaps"]))
            .unwrap()
            .unwrap();
        take_bench_options(&mut o).unwrap();
        assert!(!o.both_memmaps, "only bench takes it");
    }

    #[test]
    fn help_is_recognised() {
        assert!(parse_args(&strings(&["--help"])).unwrap().is_none());
    }
}
