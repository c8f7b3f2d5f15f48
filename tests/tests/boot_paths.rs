//! Whole-machine tests: each boots the kernel once and judges how the boot ends.

use boot::image::Firmware;
use boot::qemu::Ending;
use zsos_tests::{assert_console_has, boot_with_args, boot_with_ramdisk, console};

/// The demo under BIOS, asked for its pool snapshots (what `run --pictures DIR` draws): after
/// the fill, the discards and the compaction, the snapshots show what each step did, and the
/// frame census counts the pool's pages as zsmalloc's.
#[test]
fn bios_boot_runs_the_demo_and_reports_success() {
    let run = boot_with_args(Firmware::Bios, &["run", "--snapshots"]);
    assert_eq!(run.ending, Ending::KernelSuccess, "{}", console(&run));
    assert_console_has(&run, boot::KERNEL_BANNER);
    assert_console_has(&run, "zsos: demo done");
    let snaps = zsmalloc::snapshot::Snapshot::parse(run.lines.iter().map(String::as_str))
        .unwrap_or_else(|e| panic!("{e}\n{}", console(&run)));
    let points: Vec<&str> = snaps.iter().map(|s| s.point.as_str()).collect();
    assert_eq!(points, ["fill", "discard", "compacted"]);
    // (allocated slots, free slots) of each snapshot.
    let slots: Vec<(usize, usize)> = snaps
        .iter()
        .map(|s| {
            let all = s
                .classes
                .iter()
                .flat_map(|c| &c.zspages)
                .flat_map(|z| &z.allocated);
            all.fold((0, 0), |(a, f), &x| if x { (a + 1, f) } else { (a, f + 1) })
        })
        .collect();
    let [fill, discard, compacted] = slots[..] else {
        unreachable!()
    };
    // Discarding frees objects (a zspage left empty goes at once); compaction moves objects
    // and gives zspages back: as many objects, fewer free slots, fewer pages.
    assert!(discard.0 < fill.0, "{slots:?}");
    assert!(discard.0 + discard.1 <= fill.0 + fill.1, "{slots:?}");
    assert_eq!(compacted.0, discard.0, "compaction keeps every object");
    assert!(compacted.1 < discard.1, "{slots:?}");
    assert!(snaps[2].pages() < snaps[1].pages());
    // The frame census at the same points: every frame once, and the demo's pool (its only
    // one) holds the zsmalloc frames.
    let maps = zsmalloc::frame_map::FrameMap::parse(run.lines.iter().map(String::as_str))
        .unwrap_or_else(|e| panic!("{e}\n{}", console(&run)));
    assert_eq!(maps.len(), 3);
    for (map, snap) in maps.iter().zip(&snaps) {
        assert_eq!(map.point, snap.point);
        assert_eq!(
            map.count(zsmalloc::frame_map::FrameOwner::Zsmalloc),
            snap.pages(),
            "{}",
            snap.point
        );
        assert_eq!(map.frames(), maps[0].frames());
    }
}

#[test]
fn unknown_mode_is_refused_by_the_kernel_with_the_list_of_modes() {
    let run = boot_with_args(Firmware::Uefi, &["frobnicate"]);
    assert_eq!(run.ending, Ending::KernelFailure, "{}", console(&run));
    assert_console_has(&run, "unknown mode 'frobnicate'");
    assert_console_has(&run, "test ");
}

#[test]
fn page_fault_outside_a_test_prints_a_diagnostic_and_fails() {
    let run = boot_with_args(Firmware::Uefi, &["crash", "page-fault"]);
    assert_eq!(run.ending, Ending::KernelFailure, "{}", console(&run));
    assert_console_has(&run, "FATAL: page fault accessing 0x18 at RIP 0x");
    assert_console_has(&run, "page not present, read");
}

#[test]
fn a_ramdisk_that_is_not_a_command_line_is_refused() {
    let run = boot_with_ramdisk(Firmware::Uefi, b"this is not zsos\n".to_vec());
    assert_eq!(run.ending, Ending::KernelFailure, "{}", console(&run));
    assert_console_has(&run, "cannot read the command line from the ramdisk");
}
