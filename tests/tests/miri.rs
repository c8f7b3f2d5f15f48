//! The zsmalloc crate's host tests once more under Miri (undefined behaviour, aliasing and
//! leak checks), as part of `cargo test`, each reported as its own test case `miri::NAME`.
//!
//! Miri interprets one test binary on one core, so each zsmalloc test runs in its own
//! `cargo miri test --exact NAME` process and libtest-mimic runs two of them at a time (its
//! `--test-threads`, by default one per core). Tests that the crate marks as ignored under
//! Miri (pure arithmetic, no unsafe code: they run natively only) are reported as ignored.
//! `cargo test --test miri compaction` runs the matching ones. Miri comes with the pinned
//! toolchain (`scripts/setup` installs the component); it builds its own sysroot on first use.
//!
//! Under Miri the crate's tests take about ten minutes on two cores (603 s in CI on
//! 2026-12-02, a cold machine's sysroot build included; the tests over 30 s are named on
//! stderr): more than `cargo test`'s five-minute budget leaves.
//! So Miri runs when asked: `ZSOS_MIRI=all cargo test --test miri` (what CI runs, after
//! `cargo test`), or `ZSOS_MIRI=core` for [`CORE`], ten tests that reach every unsafe path
//! (both map paths, zsos's policy, pool threads, migration, compaction under a mapping, forged
//! handles) in about 40 s. Without `ZSOS_MIRI`, `cargo test` reports one ignored case,
//! `miri::all`, and builds nothing for Miri.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// `cargo miri test -p zsmalloc --lib [ARGS...]`, in Miri's own target directory (apart from
/// the one this cargo test holds, whose lock it would wait for).
fn cargo_miri(args: &[&str]) -> std::io::Result<Output> {
    let root = root();
    Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["miri", "test", "-p", "zsmalloc", "--lib"])
        .args(args)
        .env("CARGO_TARGET_DIR", root.join("target").join("miri-nested"))
        .output()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Names from `--list` output (`NAME: test` lines).
fn listed(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// Builds the crate for Miri once and lists its tests (all, and those ignored under Miri).
fn plan() -> Result<(Vec<String>, Vec<String>), String> {
    let build = cargo_miri(&["--no-run"]).map_err(|e| format!("cannot run cargo miri: {e}"))?;
    if !build.status.success() {
        return Err(format!(
            "building zsmalloc's tests for Miri failed ({}):\n{}",
            build.status,
            text(&build)
        ));
    }
    let (all, ignored) = std::thread::scope(|s| {
        let ignored = s.spawn(|| cargo_miri(&["--", "--list", "--ignored"]));
        let all = cargo_miri(&["--", "--list"]);
        (all, ignored.join().expect("the listing thread ran"))
    });
    let (all, ignored) = (
        all.map_err(|e| e.to_string())?,
        ignored.map_err(|e| e.to_string())?,
    );
    if !all.status.success() || !ignored.status.success() {
        return Err(format!(
            "listing the tests under Miri failed:\n{}",
            text(&all)
        ));
    }
    let (all, ignored) = (listed(&all), listed(&ignored));
    if all.is_empty() {
        return Err(format!("Miri listed no tests:\n{}", text(&build)));
    }
    Ok((all, ignored))
}

/// Runs one test under Miri (even one the crate ignores there, if asked for with cargo test's
/// `--ignored`); passes only if Miri ran it and it passed.
fn run_one(name: &str) -> Result<(), Failed> {
    let started = std::time::Instant::now();
    let out = cargo_miri(&["--", "--exact", "--include-ignored", name])
        .map_err(|e| Failed::from(e.to_string()))?;
    // The slow ones are named, so that the stage's time can be kept in check.
    let seconds = started.elapsed().as_secs();
    if seconds >= SLOW_SECONDS {
        eprintln!("miri: {name} took {seconds} s");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `test NAME ... ok`, or `test NAME - should panic ... ok`.
    let ran_ok = stdout.lines().any(|l| {
        l.strip_prefix("test ")
            .and_then(|l| l.strip_prefix(name))
            .is_some_and(|rest| rest.ends_with(" ... ok"))
    });
    let passed = ran_ok && stdout.contains("test result: ok. 1 passed;");
    if out.status.success() && passed {
        Ok(())
    } else {
        Err(Failed::from(format!(
            "under Miri ({}):\n{}",
            out.status,
            text(&out)
        )))
    }
}

/// A test that takes this long under Miri is named with its time on stderr.
const SLOW_SECONDS: u64 = 30;

/// The tests `cargo test` runs under Miri (see the module doc).
const CORE: [&str; 10] = [
    "tests::model_random_operations_window_path",
    "tests::model_random_operations_copy_path",
    "tests::model_random_operations_under_every_policy",
    "tests::the_pool_on_several_threads_keeps_every_object_under_zsos_policy",
    "tests::every_class_at_every_offset_round_trips",
    "tests::migrating_every_page_of_every_class_keeps_handles_and_bytes",
    "tests::compaction_never_moves_a_mapped_object",
    "tests::bad_handles_are_reported_and_change_nothing",
    "tests::per_class_mapping_copies_small_spanning_objects_and_windows_large_ones",
    "tests::the_zspage_lock_moves_with_the_first_page",
];

/// Whether this run (`ZSOS_MIRI`: `core`, `rest` for all but the core, `all`) takes test
/// `name`.
fn in_this_run(name: &str) -> bool {
    let core = CORE.contains(&name);
    match std::env::var("ZSOS_MIRI").as_deref() {
        Ok("all") => true,
        Ok("rest") => !core,
        _ => core,
    }
}

fn main() {
    let args = Arguments::from_args();
    match std::env::var("ZSOS_MIRI").as_deref() {
        Ok("core" | "rest" | "all") => {}
        Ok(other) => {
            let e = format!("ZSOS_MIRI={other}: expected core, rest or all");
            let trials = vec![Trial::test("miri::all", move || Err(Failed::from(e)))];
            libtest_mimic::run(&args, trials).exit();
        }
        Err(_) => {
            let trials = vec![
                Trial::test("miri::all", || Ok(()))
                    .with_ignored_flag(true)
                    .with_kind("needs ZSOS_MIRI=all"),
            ];
            libtest_mimic::run(&args, trials).exit();
        }
    }
    let trials = match plan() {
        Ok((all, ignored)) => {
            let ignored: Arc<Vec<String>> = Arc::new(ignored);
            all.into_iter()
                .map(|name| {
                    let skip = ignored.contains(&name) || !in_this_run(&name);
                    let test = name.clone();
                    Trial::test(format!("miri::{name}"), move || run_one(&test))
                        .with_ignored_flag(skip)
                })
                .collect()
        }
        Err(e) => vec![Trial::test("miri::build", move || Err(Failed::from(e)))],
    };
    libtest_mimic::run(&args, trials).exit();
}
