//! Tests of how the pool guards its handles and maps objects (lab 5,
//! `docs/labs/lab5-handles.md`): foreign, forged and stale handles refused, readers sharing an
//! object and writers having it alone, and the copy path copying in and back as the mapping's
//! mode says.

use alloc::vec::Vec;

use zsmalloc::class::HANDLE_SIZE;
use zsmalloc::seeded::pattern;
use zsmalloc::{Error, Handle, MapMode, MapPath, Pool, PoolConfig};

use super::KernelBackend;

fn pool(path: MapPath) -> Pool<KernelBackend> {
    let config = PoolConfig {
        map_path: path,
        ..PoolConfig::default()
    };
    Pool::new("lab5", KernelBackend::new(), config)
}

fn a_handle_of_another_pool_is_refused_as_foreign() {
    let (p, other) = (pool(MapPath::Window), pool(MapPath::Window));
    let mine = p.malloc(100).unwrap();
    let theirs = other.malloc(100).unwrap();
    assert_eq!(p.free(theirs), Err(Error::ForeignHandle(theirs)));
    assert_eq!(
        p.read(theirs, &mut [0u8; 100]),
        Err(Error::ForeignHandle(theirs))
    );
    assert!(p.map(theirs, MapMode::ReadOnly).is_err());
    assert_eq!(p.location(mine).unwrap().size, 100, "ours is untouched");
    other.free(theirs).unwrap();
    p.free(mine).unwrap();
    let zero = Handle::from_raw(mine.to_raw() & ((1 << 52) - 1));
    assert_eq!(
        p.free(zero),
        Err(Error::InvalidHandle(zero)),
        "tag 0 is no pool's"
    );
}

fn a_forged_handle_is_refused_and_changes_nothing() {
    let p = pool(MapPath::Window);
    let h = p.malloc(100).unwrap();
    let other_class = Handle::from_raw(h.to_raw() ^ (1 << 44));
    assert_eq!(p.free(other_class), Err(Error::InvalidHandle(other_class)));
    let no_class = Handle::from_raw(h.to_raw() | (0xff << 44));
    assert_eq!(p.free(no_class), Err(Error::InvalidHandle(no_class)));
    let no_slot = Handle::from_raw(h.to_raw() + 999);
    assert_eq!(p.free(no_slot), Err(Error::InvalidHandle(no_slot)));
    p.check_invariants().unwrap();
    assert_eq!(p.stats().objects(), 1);
    p.free(h).unwrap();
}

fn a_stale_handle_is_refused_after_its_slot_is_reused() {
    let p = pool(MapPath::Window);
    let old = p.malloc(200).unwrap();
    p.free(old).unwrap();
    // A freed slot waits behind others before it is reused: allocate and free until it
    // comes back (well within four quarantines, or slots are never reused).
    let mut tries = 0;
    let new = loop {
        let h = p.malloc(200).unwrap();
        if h.slot_index() == old.slot_index() {
            break h;
        }
        p.free(h).unwrap();
        tries += 1;
        assert!(
            tries <= 4 * zsmalloc::slots::QUARANTINE,
            "the freed slot never came back ({tries} objects later): are freed slots reused?"
        );
    };
    assert_ne!(new, old, "a slot's new life has a new generation");
    let bytes = pattern(5, 200);
    p.write(new, &bytes).unwrap();
    assert_eq!(p.free(old), Err(Error::StaleHandle(old)));
    assert_eq!(p.write(old, b"x"), Err(Error::StaleHandle(old)));
    assert_eq!(p.read(old, &mut [0u8; 200]), Err(Error::StaleHandle(old)));
    let mut back = [0u8; 200];
    assert_eq!(p.read(new, &mut back), Ok(200));
    assert!(back[..] == bytes[..], "the slot's new object is untouched");
    p.free(new).unwrap();
    assert_eq!(p.free(new), Err(Error::DoubleFree(new)));
}

fn readers_share_an_object_and_a_writer_has_it_alone() {
    let p = pool(MapPath::Window);
    let h = p.malloc(64).unwrap();
    {
        let _w = p.map(h, MapMode::ReadWrite).unwrap();
        assert_eq!(p.free(h), Err(Error::ObjectBusy(h)));
        assert_eq!(
            p.map(h, MapMode::ReadOnly).err(),
            Some(Error::ObjectBusy(h))
        );
        assert_eq!(p.write(h, b"x"), Err(Error::ObjectBusy(h)));
        assert_eq!(p.read(h, &mut [0u8; 64]), Err(Error::ObjectBusy(h)));
    }
    let r1 = p.map(h, MapMode::ReadOnly).unwrap();
    let r2 = p.map(h, MapMode::ReadOnly).unwrap();
    assert_eq!(
        p.map(h, MapMode::ReadWrite).err(),
        Some(Error::ObjectBusy(h))
    );
    assert_eq!(p.write(h, b"x"), Err(Error::ObjectBusy(h)));
    drop((r1, r2));
    p.write(h, b"x").unwrap();
    p.free(h).unwrap();
    p.check_invariants().unwrap();
}

/// Two objects of a two-page class that span its pages (objects 2 and 7 of 1632-byte slots).
fn two_spanning(p: &Pool<KernelBackend>) -> (Vec<Handle>, Handle, Handle) {
    let hs: Vec<Handle> = (0..10)
        .map(|_| p.malloc(1632 - HANDLE_SIZE).unwrap())
        .collect();
    for i in [2, 7] {
        assert!(p.location(hs[i]).unwrap().second_page.is_some());
    }
    let (a, b) = (hs[2], hs[7]);
    (hs, a, b)
}

fn the_copy_path_copies_in_and_back_only_as_the_mode_says() {
    let p = pool(MapPath::Copy);
    let (hs, a, b) = two_spanning(&p);
    let size = 1632 - HANDLE_SIZE;
    let read = |h: Handle| {
        let mut v = alloc::vec![0u8; size];
        p.read(h, &mut v).unwrap();
        v
    };
    p.write(a, &pattern(1, size)).unwrap();
    p.write(b, &pattern(2, size)).unwrap();
    // A read-write mapping shows the object and keeps what is written through it.
    {
        let mut m = p.map(b, MapMode::ReadWrite).unwrap();
        assert!(
            m[..] == pattern(2, size)[..],
            "read-write maps the object in"
        );
        m[..4].copy_from_slice(b"zsos");
    }
    let mut b_now = pattern(2, size);
    b_now[..4].copy_from_slice(b"zsos");
    assert!(read(b) == b_now, "read-write copies back at unmap");
    // A write-only mapping does not copy the object in: the buffer still holds b's bytes.
    let wo = p.map(a, MapMode::WriteOnly).unwrap();
    assert!(
        wo[..] == b_now[..],
        "a write-only mapping copied the object in"
    );
    drop(wo);
    assert!(
        read(a) == b_now,
        "a write-only mapping copies back at unmap"
    );
    // A read-only mapping shows the object and never writes it back.
    p.write(a, &pattern(3, size)).unwrap();
    drop(p.map(a, MapMode::ReadOnly).unwrap());
    p.write(b, &pattern(4, size)).unwrap();
    assert!(read(a) == pattern(3, size), "read-only is not copied back");
    for h in hs {
        p.free(h).unwrap();
    }
}

/// A freed slot waits behind the slots freed after it (first in, first out) before it is
/// used again, with a new generation; until then every new object gets another slot.
fn a_freed_slot_waits_behind_the_quarantine_before_it_lives_again() {
    use zsmalloc::slots::QUARANTINE;
    let p = pool(MapPath::Window);
    let mut seen = Vec::new();
    let again = loop {
        let h = p.malloc(200).unwrap();
        p.free(h).unwrap();
        if seen
            .iter()
            .any(|s: &Handle| s.slot_index() == h.slot_index())
        {
            break h;
        }
        seen.push(h);
        assert!(
            seen.len() <= 4 * QUARANTINE,
            "no slot came back after {} frees",
            seen.len()
        );
    };
    assert_eq!(
        seen.len(),
        QUARANTINE + 1,
        "a freed slot is reused after exactly {QUARANTINE} others were freed behind it"
    );
    assert_eq!(
        again.slot_index(),
        seen[0].slot_index(),
        "the oldest freed slot comes back first"
    );
    assert_ne!(again, seen[0], "with a new generation");
    assert_eq!(p.free(seen[0]), Err(Error::StaleHandle(seen[0])));
    p.check_invariants().unwrap();
}

crate::ktests! {
    // Lab 5: handles and mapping (docs/labs/lab5-handles.md); the copy path over every class
    // is in ktests.rs.
    a_handle_of_another_pool_is_refused_as_foreign { lab: 5, points: 15 },
    a_forged_handle_is_refused_and_changes_nothing { lab: 5, points: 15 },
    a_stale_handle_is_refused_after_its_slot_is_reused { lab: 5, points: 15 },
    readers_share_an_object_and_a_writer_has_it_alone { lab: 5, points: 15 },
    the_copy_path_copies_in_and_back_only_as_the_mode_says { lab: 5, points: 15 },
    a_freed_slot_waits_behind_the_quarantine_before_it_lives_again { lab: 5, points: 15 },
}
