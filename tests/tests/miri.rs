//! The zsmalloc crate's host tests, once more under Miri (undefined behaviour, aliasing and
//! leak checks), as part of `cargo test`. Miri comes with the pinned toolchain (scripts/setup
//! installs the component); it builds its own sysroot on first use.

use std::path::Path;
use std::process::Command;

#[test]
fn zsmalloc_host_tests_pass_under_miri() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace");
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["miri", "test", "-p", "zsmalloc", "--lib"])
        // Miri's own target directory, apart from the one this cargo test holds.
        .env("CARGO_TARGET_DIR", root.join("target").join("miri-nested"))
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo miri test -p zsmalloc failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("test result: ok."),
        "Miri ran no tests:\n{stdout}"
    );
}
