//! Tests of moving objects (lab 6, `docs/labs/lab6-compaction.md`): fullness groups,
//! compaction from the sparsest zspage into the fullest, and handles that stay valid when
//! compaction or page migration moves their objects.

use alloc::vec::Vec;

use zsmalloc::class::HANDLE_SIZE;
use zsmalloc::seeded::pattern;
use zsmalloc::{Error, Handle, MapMode, Pool, PoolConfig};

use super::KernelBackend;

fn pool() -> Pool<KernelBackend> {
    Pool::new("lab6", KernelBackend::new(), PoolConfig::default())
}

/// Each object gets distinct bytes; returns the handles with their bytes.
fn fill(p: &Pool<KernelBackend>, n: usize, size: usize) -> Vec<(Handle, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let h = p.malloc(size).unwrap();
            let bytes = pattern(0x6000 + i as u64, size);
            p.write(h, &bytes).unwrap();
            (h, bytes)
        })
        .collect()
}

fn check_all(p: &Pool<KernelBackend>, live: &[(Handle, Vec<u8>)], when: &str) {
    for (h, bytes) in live {
        let mut back = alloc::vec![0u8; bytes.len()];
        assert_eq!(p.read(*h, &mut back), Ok(bytes.len()), "{when}");
        assert!(back == *bytes, "{when}: an object's bytes changed");
    }
    p.check_invariants().unwrap();
}

fn fullness_groups_follow_the_in_use_ratio() {
    let p = pool();
    // 48-byte slots: one zspage of 3 pages holds 256 objects at chain 8.
    let size = 48 - HANDLE_SIZE;
    let pos = p.classes().class_for(size);
    let objs = p.classes().classes[pos].objs_per_zspage as u64;
    assert_eq!(objs, 256);
    let mut hs = Vec::new();
    for (inuse, group) in [
        (1, 1),
        (25, 1),
        (26, 2),
        (128, 6),
        (230, 9),
        (255, 10),
        (256, 11),
    ] {
        while (hs.len() as u64) < inuse {
            hs.push(p.malloc(size).unwrap());
        }
        let groups = p.class_stats(pos).groups;
        assert_eq!(
            groups[group],
            1,
            "{inuse} of {objs} objects in use: expected group {group} (in-use ratio {}%), groups {groups:?}",
            100 * inuse / objs
        );
    }
    for h in hs {
        p.free(h).unwrap();
    }
}

fn compaction_moves_the_sparsest_zspage_into_the_fullest() {
    let p = pool();
    // 1632-byte slots: five objects per two-page zspage. Three zspages (objects 0-4, 5-9,
    // 10-14); freeing 4, 8, 9 and 11-14 leaves four objects in the first, three in the second
    // and one, object 10, in the third.
    let size = 1632 - HANDLE_SIZE;
    let mut live = fill(&p, 15, size);
    for i in [14, 13, 12, 11, 9, 8, 4] {
        p.free(live.remove(i).0).unwrap();
    }
    assert_eq!(p.total_pages(), 6);
    let sparse_one = live[7].0;
    let before = p.location(sparse_one).unwrap();
    // Kept to be drawn, with the pool after, if compaction does not do what it should.
    let pool_before = zsmalloc::snapshot::Snapshot::of(&p, "before-compaction");
    let freed = p.compact();
    if freed != 2 || p.total_pages() != 4 {
        crate::pictures::print_snapshot(&pool_before);
        crate::pictures::show_if_failing(true, &p, "after-compaction");
    }
    assert_eq!(
        freed, 2,
        "8 objects fit in two zspages: one zspage (2 pages) is freed"
    );
    assert_eq!(p.total_pages(), 4);
    let after = p.location(sparse_one).unwrap();
    assert_ne!(before.pfn, after.pfn, "the sparsest zspage's object moved");
    check_all(&p, &live, "after compaction");
    for (h, _) in live {
        p.free(h).unwrap();
    }
}

fn a_mapped_object_keeps_its_zspage_from_moving() {
    let p = pool();
    let size = 1632 - HANDLE_SIZE;
    let mut live = fill(&p, 15, size);
    for i in [14, 13, 12, 11, 9, 8, 7, 6, 5, 4] {
        p.free(live.remove(i).0).unwrap();
    }
    // Freeing 4-9 and 11-14 leaves objects 0-3 in the first zspage and object 10 alone in
    // the third.
    let pinned = live[4].0;
    let at = p.location(pinned).unwrap();
    let mapping = p.map(pinned, MapMode::ReadOnly).unwrap();
    assert_eq!(
        p.migrate_page(at.pfn),
        Err(Error::ZspageBusy(at.pfn)),
        "migration refuses a zspage with a mapped object"
    );
    assert_eq!(
        p.compact(),
        0,
        "the only zspage compaction could empty is pinned"
    );
    drop(mapping);
    assert_eq!(p.location(pinned).unwrap().pfn, at.pfn);
    assert_eq!(p.compact(), 2, "unpinned, it moves");
    check_all(&p, &live, "after compaction");
    for (h, _) in live {
        p.free(h).unwrap();
    }
}

fn handles_stay_valid_when_their_pages_migrate() {
    let p = pool();
    let size = 1632 - HANDLE_SIZE;
    let live = fill(&p, 10, size);
    for pfn in p.pages() {
        let new = p.migrate_page(pfn).unwrap();
        assert_ne!(new, pfn);
        assert!(
            !p.pages().contains(&pfn),
            "the old frame is no longer the pool's"
        );
    }
    check_all(&p, &live, "after migrating every page");
    for (h, _) in live {
        p.free(h).unwrap();
    }
    assert_eq!(p.total_pages(), 0);
}

/// Migrating the first page of a zspage moves what the first page holds (the zspage lock,
/// where every other page finds the zspage's start): the zspage keeps working, its objects
/// keep their bytes, and its other page migrates after it.
fn migrating_a_zspage_s_first_page_moves_its_start_for_every_page() {
    let p = pool();
    let size = 1632 - HANDLE_SIZE;
    let live = fill(&p, 5, size);
    let first = p.location(live[0].0).unwrap().pfn;
    let second = p.location(live[3].0).unwrap().pfn;
    let new_first = p.migrate_page(first).unwrap();
    for (k, (h, _)) in live.iter().enumerate() {
        let at = p.location(*h).unwrap();
        let want = if k < 3 { new_first } else { second };
        assert_eq!(at.pfn, want, "object {k} after the first page moved");
    }
    check_all(&p, &live, "after moving the first page");
    let new_second = p.migrate_page(second).unwrap();
    assert_eq!(p.location(live[2].0).unwrap().second_page, Some(new_second));
    check_all(&p, &live, "after moving the other page too");
    // The moved zspage still takes new objects and gives them back.
    let more = fill(&p, 3, size);
    check_all(&p, &more, "new objects");
    for (h, _) in live.into_iter().chain(more) {
        p.free(h).unwrap();
    }
    assert_eq!(p.total_pages(), 0);
}

crate::ktests! {
    // Lab 6: compaction and migration (docs/labs/lab6-compaction.md); the full-scale tests
    // are in ktests.rs.
    fullness_groups_follow_the_in_use_ratio { lab: 6, points: 15 },
    compaction_moves_the_sparsest_zspage_into_the_fullest { lab: 6, points: 15 },
    a_mapped_object_keeps_its_zspage_from_moving { lab: 6, points: 15 },
    handles_stay_valid_when_their_pages_migrate { lab: 6, points: 15 },
    migrating_a_zspage_s_first_page_moves_its_start_for_every_page { lab: 6, points: 10 },
}
