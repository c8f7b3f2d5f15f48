//! A size class's state: its zspages (metadata in an arena, pages linked through their
//! zsdescs), the fullness groups that order them and the in-place freelists. Everything here
//! is protected by the class's lock; moving objects (compaction, migration) also needs the
//! pool's migrate lock held for writing, since it rewrites handle slots.

use alloc::vec::Vec;

use crate::backend::{Backend, Pfn};
use crate::class::{ClassLayout, PAGE_SIZE};
use crate::handle;
use crate::slots::SlotTable;
use crate::zsdesc::{self, ZsPageRef};

/// Fullness groups, as Linux since 6.4: 0 = empty, 1..=10 = in-use ratio 0-9%, 10-19%, ...,
/// 90-99% (rounded down, 1 object of many lands in group 1), 11 = full.
pub const NR_GROUPS: usize = 12;
/// Group of empty zspages (never kept: an empty zspage is freed at once).
pub const GROUP_EMPTY: usize = 0;
/// Group of full zspages.
pub const GROUP_FULL: usize = NR_GROUPS - 1;
const NIL: u32 = u32::MAX;

/// The fullness group of a zspage with `inuse` of `objs` objects allocated.
pub fn fullness_group(inuse: u32, objs: u32) -> usize {
    if inuse == 0 {
        GROUP_EMPTY
    } else if inuse == objs {
        GROUP_FULL
    } else {
        // LAB 6: BEGIN the fullness group of a zspage that is neither empty nor full, as Linux sorts them
        (100 * inuse / objs) as usize / 10 + 1
        // LAB 6: STUB
        // // Until you sort them, every zspage with room is in the first group.
        // let _ = (inuse, objs);
        // 1
        // LAB 6: END
    }
}

/// A repacking of some of a class's zspages into fewer pages ([`ClassState::mergeable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    /// The zspages to empty.
    pub sources: Vec<u32>,
    /// The zspages that stay and take objects into their free slots (their objects do not
    /// move), fullest first.
    pub keep: Vec<u32>,
    /// The lengths of the new zspages that take the rest, longest first.
    pub lengths: Vec<usize>,
}

/// One zspage's metadata (Linux: `struct zspage`).
#[derive(Debug, Clone)]
pub struct ZsPage {
    /// First page of the chain.
    pub first: Pfn,
    /// Objects allocated.
    pub inuse: u32,
    /// Head of the in-place freelist.
    pub freeobj: Option<u32>,
    /// Current fullness group.
    pub group: u8,
    /// Pages in the chain: the class's length, or a shorter one a growth rule chose.
    pub pages: u32,
    /// Objects the zspage holds (`pages * PAGE_SIZE / size`, one if huge).
    pub objs: u32,
    prev: u32,
    next: u32,
    /// False once freed (its id waits for reuse).
    pub live: bool,
}

/// A size class and everything in it.
pub struct ClassState {
    /// The class's geometry.
    pub layout: ClassLayout,
    /// Position of the class in the pool's table.
    pub pos: u8,
    zspages: Vec<ZsPage>,
    free_ids: Vec<u32>,
    heads: [u32; NR_GROUPS],
    /// zspages per fullness group.
    pub group_counts: [u64; NR_GROUPS],
    /// Object slots in all zspages of the class.
    pub objs_allocated: u64,
    /// Objects allocated by users.
    pub objs_inuse: u64,
    /// Pages in all zspages of the class.
    pub pages: u64,
    /// Live zspages shorter than the class's length.
    pub short_zspages: u64,
    /// Objects here whose own class is a smaller one (a placement rule lent them a slot).
    pub lent: u64,
    /// The own classes of the objects lent a slot here (bit `pos` of word `pos / 64`; a
    /// class whose objects left stays marked until none is lent).
    lent_homes: [u64; 4],
}

/// An object in a slot another class's object was lent (see [`ClassState::lent_objects`]).
#[derive(Debug, Clone, Copy)]
pub struct LentObject {
    /// The object's handle slot.
    pub slot: u32,
    /// Its zspage, the page it starts in, its index there.
    pub at: (u32, Pfn, u32),
    /// Position of its own class.
    pub home: usize,
}

/// Frames taken from the backend for a new zspage, before it is built: taken without the
/// class lock (as Linux allocates a zspage's pages with the class unlocked), installed under
/// it. Given back to the backend if dropped uninstalled.
pub struct ZsPageFrames<'b, B: Backend> {
    backend: &'b B,
    pfns: [Pfn; 16],
    count: usize,
}

impl<'b, B: Backend> ZsPageFrames<'b, B> {
    /// `pages` fresh frames, or `None` (with every frame taken so far given back).
    pub fn alloc(backend: &'b B, pages: usize) -> Option<Self> {
        let mut frames = ZsPageFrames {
            backend,
            pfns: [0; 16],
            count: 0,
        };
        while frames.count < pages {
            frames.pfns[frames.count] = backend.alloc_page()?;
            frames.count += 1;
        }
        Some(frames)
    }

    /// The frames, now the zspage's.
    fn take(mut self) -> [Pfn; 16] {
        self.count = 0;
        self.pfns
    }
}

impl<B: Backend> Drop for ZsPageFrames<'_, B> {
    fn drop(&mut self) {
        for &pfn in &self.pfns[..self.count] {
            // SAFETY: these frames came from alloc_page for a zspage that was never built;
            // nothing uses them.
            unsafe { self.backend.free_page(pfn) };
        }
    }
}

/// Reads the 8-byte word at `off` in page `pfn`.
///
/// # Safety
/// The pool holds `pfn`, `off` is 8-aligned and at most 4088, and nobody writes the word now.
unsafe fn read_word<B: Backend>(b: &B, pfn: Pfn, off: usize) -> u64 {
    debug_assert!(off % 8 == 0 && off + 8 <= PAGE_SIZE);
    // SAFETY: the backend guarantees page_ptr is valid for the page; the caller the rest.
    unsafe { b.page_ptr(pfn).add(off).cast::<u64>().read() }
}

/// Writes the 8-byte word at `off` in page `pfn`.
///
/// # Safety
/// As for [`read_word`], and nobody else accesses the word now.
unsafe fn write_word<B: Backend>(b: &B, pfn: Pfn, off: usize, value: u64) {
    debug_assert!(off % 8 == 0 && off + 8 <= PAGE_SIZE);
    // SAFETY: as for read_word.
    unsafe { b.page_ptr(pfn).add(off).cast::<u64>().write(value) }
}

impl ClassState {
    /// An empty class.
    pub fn new(layout: ClassLayout, pos: u8) -> ClassState {
        ClassState {
            layout,
            pos,
            zspages: Vec::new(),
            free_ids: Vec::new(),
            heads: [NIL; NR_GROUPS],
            group_counts: [0; NR_GROUPS],
            objs_allocated: 0,
            objs_inuse: 0,
            pages: 0,
            short_zspages: 0,
            lent: 0,
            lent_homes: [0; 4],
        }
    }

    /// Counts an object of own class `home` lent a slot here.
    pub fn lend(&mut self, home: usize) {
        self.lent += 1;
        self.lent_homes[home / 64] |= 1 << (home % 64);
    }

    /// Counts a lent object gone from here (freed, or moved home).
    pub fn unlend(&mut self) {
        self.lent -= 1;
        if self.lent == 0 {
            self.lent_homes = [0; 4];
        }
    }

    /// Whether class `home` is listed among the own classes of the objects lent a slot here.
    pub fn lends_to(&self, home: usize) -> bool {
        self.lent_homes[home / 64] & (1 << (home % 64)) != 0
    }

    /// Whether an object lent a slot here may belong to one of the classes in `homes` (a
    /// bitmap as `lent_homes`).
    pub fn may_lend_to(&self, homes: &[u64; 4]) -> bool {
        self.lent_homes.iter().zip(homes).any(|(a, b)| a & b != 0)
    }

    /// The zspage with this id.
    pub fn zspage(&self, id: u32) -> &ZsPage {
        &self.zspages[id as usize]
    }

    /// The zspage with this id, mutably.
    pub fn zspage_mut(&mut self, id: u32) -> &mut ZsPage {
        &mut self.zspages[id as usize]
    }

    /// Ids of the live zspages.
    pub fn live_zspages(&self) -> impl Iterator<Item = u32> + '_ {
        self.zspages
            .iter()
            .enumerate()
            .filter(|(_, z)| z.live)
            .map(|(i, _)| i as u32)
    }

    /// Ids of the zspages in one fullness group, in list order.
    pub fn group_members(&self, group: usize) -> impl Iterator<Item = u32> + '_ {
        let mut cur = self.heads[group];
        core::iter::from_fn(move || {
            (cur != NIL).then(|| {
                let id = cur;
                cur = self.zspages[id as usize].next;
                id
            })
        })
    }

    fn insert(&mut self, id: u32, group: usize) {
        let head = self.heads[group];
        let z = &mut self.zspages[id as usize];
        z.group = group as u8;
        z.prev = NIL;
        z.next = head;
        if head != NIL {
            self.zspages[head as usize].prev = id;
        }
        self.heads[group] = id;
        self.group_counts[group] += 1;
    }

    fn remove(&mut self, id: u32) {
        let (prev, next, group) = {
            let z = &self.zspages[id as usize];
            (z.prev, z.next, z.group as usize)
        };
        if prev == NIL {
            self.heads[group] = next;
        } else {
            self.zspages[prev as usize].next = next;
        }
        if next != NIL {
            self.zspages[next as usize].prev = prev;
        }
        self.group_counts[group] -= 1;
    }

    /// Moves a zspage to the group its in-use count now calls for; returns the group.
    pub fn fix_group(&mut self, id: u32) -> usize {
        let z = &self.zspages[id as usize];
        let group = fullness_group(z.inuse, z.objs);
        if group != z.group as usize {
            self.remove(id);
            self.insert(id, group);
        }
        group
    }

    /// The fullest zspage that still has room (Linux's `find_get_zspage`).
    pub fn find_zspage(&self) -> Option<u32> {
        (GROUP_EMPTY..GROUP_FULL)
            .rev()
            .find_map(|g| (self.heads[g] != NIL).then_some(self.heads[g]))
    }

    /// The `n`-th page of a zspage's chain.
    pub fn nth_page<B: Backend>(&self, b: &B, first: Pfn, n: usize) -> Pfn {
        // LAB 4: BEGIN follow the zspage's chain of pages, through their zsdescs, to its n-th page
        let mut pfn = first;
        for _ in 0..n {
            pfn = zsdesc::next(b.desc(pfn)).expect("the chain is as long as the class says");
        }
        pfn
        // LAB 4: STUB
        // // Until you follow the chain, every page is the first.
        // let _ = (b, n);
        // first
        // LAB 4: END
    }

    /// Where object `idx` of a zspage starts: (page, offset in page).
    pub fn locate<B: Backend>(&self, b: &B, first: Pfn, idx: u32) -> (Pfn, usize) {
        // LAB 4: BEGIN where object `idx` of the zspage starts: its page and the offset in it
        let offset = idx as usize * self.layout.size;
        (
            self.nth_page(b, first, offset / PAGE_SIZE),
            offset % PAGE_SIZE,
        )
        // LAB 4: STUB
        // let _ = (b, first, idx, PAGE_SIZE, Self::nth_page::<B>);
        // todo!("lab 4: locate an object in its zspage (zsmalloc/src/zspage.rs, ClassState::locate)")
        // LAB 4: END
    }

    /// Objects a zspage of `pages` pages of this class holds.
    pub fn capacity(&self, pages: usize) -> usize {
        if self.layout.huge {
            1
        } else {
            pages * PAGE_SIZE / self.layout.size
        }
    }

    /// True if a zspage of this class may chain `pages` pages: the class's own length, or
    /// (for a normal class) a shorter one that still holds an object.
    pub fn may_chain(&self, pages: usize) -> bool {
        pages == self.layout.pages_per_zspage
            || (!self.layout.huge
                && pages < self.layout.pages_per_zspage
                && self.capacity(pages) > 0)
    }

    /// Makes a new zspage of frames taken for this class: the chain through their zsdescs,
    /// each page's first object offset, and the freelist through every object. The frames
    /// are the class's length of pages, or fewer (see [`ClassState::may_chain`]).
    pub fn install_zspage<B: Backend>(&mut self, b: &B, frames: ZsPageFrames<'_, B>) -> u32 {
        assert!(
            self.may_chain(frames.count),
            "{} frames cannot make a zspage of class {} ({} pages)",
            frames.count,
            self.pos,
            self.layout.pages_per_zspage
        );
        let movable_ops = b.movable_ops();
        let pages = frames.count;
        let pfns = frames.take();
        let id = self.free_ids.pop().unwrap_or_else(|| {
            self.zspages.push(ZsPage {
                first: 0,
                inuse: 0,
                freeobj: None,
                group: 0,
                pages: 0,
                objs: 0,
                prev: NIL,
                next: NIL,
                live: false,
            });
            (self.zspages.len() - 1) as u32
        });
        let owner = ZsPageRef {
            class: self.pos,
            id,
        };
        let size = self.layout.size;
        for (i, &pfn) in pfns[..pages].iter().enumerate() {
            // LAB 4: BEGIN make page i part of the zspage: its zsdesc (zsdesc::init_page) with the offset of the first object that starts in it, and the chain to the next page
            let page_start = i * PAGE_SIZE;
            let first_obj = page_start.div_ceil(size) * size - page_start;
            let d = b.desc(pfn);
            zsdesc::init_page(d, owner, pfns[0], i == 0, first_obj as u32, movable_ops);
            if i + 1 < pages {
                zsdesc::set_next(d, pfns[i + 1]);
            }
            // LAB 4: STUB
            // // Until you build the chain: every page on its own, its first object at 0.
            // let _ = (size, zsdesc::set_next);
            // zsdesc::init_page(b.desc(pfn), owner, pfns[0], i == 0, 0, movable_ops);
            // LAB 4: END
        }
        let objs = self.capacity(pages) as u32;
        if self.layout.huge {
            zsdesc::set_huge_slot(b.desc(pfns[0]), None);
        } else {
            // LAB 4: BEGIN link every object of the new zspage into its freelist, in index order
            for idx in 0..objs {
                let offset = idx as usize * size;
                let next = (idx + 1 < objs).then_some(idx + 1);
                // SAFETY: the pages are fresh and ours; the link word of an object is 8-aligned
                // (class sizes are multiples of 16) and never crosses a page.
                unsafe {
                    write_word(
                        b,
                        pfns[offset / PAGE_SIZE],
                        offset % PAGE_SIZE,
                        handle::link_word(next),
                    )
                };
            }
            // LAB 4: STUB
            // let _ = (objs, size, write_word::<B>, handle::link_word);
            // todo!("lab 4: link every object of the new zspage into its freelist (zsmalloc/src/zspage.rs, ClassState::install_zspage)")
            // LAB 4: END
        }
        let z = &mut self.zspages[id as usize];
        *z = ZsPage {
            first: pfns[0],
            inuse: 0,
            freeobj: Some(0),
            group: 0,
            pages: pages as u32,
            objs,
            prev: NIL,
            next: NIL,
            live: true,
        };
        self.insert(id, GROUP_EMPTY);
        self.objs_allocated += objs as u64;
        self.pages += pages as u64;
        if pages < self.layout.pages_per_zspage {
            self.short_zspages += 1;
        }
        id
    }

    /// Frees an empty zspage: resets its zsdescs and gives its pages back. Returns how many.
    pub fn free_zspage<B: Backend>(&mut self, b: &B, id: u32) -> usize {
        // LAB 4: BEGIN free an empty zspage: every page of its chain back to the backend, its zsdesc reset first; the class's counters; return the pages freed
        let (first, inuse) = {
            let z = &self.zspages[id as usize];
            (z.first, z.inuse)
        };
        assert!(
            inuse == 0 && zsdesc::zspage_readers(b.desc(first)) == 0,
            "freeing a zspage that is in use"
        );
        self.remove(id);
        let mut pfn = Some(first);
        let mut freed = 0;
        while let Some(p) = pfn {
            let d = b.desc(p);
            pfn = if self.layout.huge {
                None
            } else {
                zsdesc::next(d)
            };
            zsdesc::reset(d);
            // SAFETY: the page belonged to this empty zspage, which nothing references now.
            unsafe { b.free_page(p) };
            freed += 1;
        }
        let z = &mut self.zspages[id as usize];
        z.live = false;
        self.objs_allocated -= z.objs as u64;
        self.pages -= z.pages as u64;
        if (z.pages as usize) < self.layout.pages_per_zspage {
            self.short_zspages -= 1;
        }
        self.free_ids.push(id);
        freed
        // LAB 4: STUB
        // let _ = (b, id, zsdesc::reset);
        // todo!("lab 4: free an empty zspage (zsmalloc/src/zspage.rs, ClassState::free_zspage)")
        // LAB 4: END
    }

    /// Takes a free object from a zspage for `slot`; returns its encoded location.
    pub fn obj_malloc<B: Backend>(&mut self, b: &B, id: u32, slot: u32) -> u64 {
        // LAB 4: BEGIN take the zspage's first free object for `slot`: off the freelist, its header written (a huge object's slot goes in its page's zsdesc instead); the zspage's and the class's counts; return its encoded location
        let (first, idx) = {
            let z = &self.zspages[id as usize];
            (z.first, z.freeobj.expect("the zspage has a free object"))
        };
        let (pfn, off) = self.locate(b, first, idx);
        let next = if self.layout.huge {
            zsdesc::set_huge_slot(b.desc(pfn), Some(slot));
            None
        } else {
            // SAFETY: the object is free and ours; its first word is its freelist link, which
            // the header replaces.
            unsafe {
                let next = handle::link_target(read_word(b, pfn, off));
                write_word(b, pfn, off, handle::header_for_slot(slot));
                next
            }
        };
        let z = &mut self.zspages[id as usize];
        z.freeobj = next;
        z.inuse += 1;
        self.objs_inuse += 1;
        handle::encode_obj(pfn, idx)
        // LAB 4: STUB
        // let _ = (b, id, slot, read_word::<B>, handle::link_target, handle::header_for_slot);
        // todo!("lab 4: take an object off the freelist (zsmalloc/src/zspage.rs, ClassState::obj_malloc)")
        // LAB 4: END
    }

    /// Returns object `idx` (starting in page `pfn`) of a zspage to its freelist.
    pub fn obj_free<B: Backend>(&mut self, b: &B, id: u32, pfn: Pfn, idx: u32) {
        // LAB 4: BEGIN put object `idx` (it starts in page `pfn`) back on its zspage's freelist, as the next one handed out (a huge object: its page's zsdesc forgets the slot); the counts
        let off = idx as usize * self.layout.size % PAGE_SIZE;
        let head = self.zspages[id as usize].freeobj;
        if self.layout.huge {
            zsdesc::set_huge_slot(b.desc(pfn), None);
        } else {
            // SAFETY: the object is allocated and being freed by its owner; its header word
            // becomes the freelist link.
            unsafe { write_word(b, pfn, off, handle::link_word(head)) };
        }
        let z = &mut self.zspages[id as usize];
        z.freeobj = Some(idx);
        z.inuse -= 1;
        self.objs_inuse -= 1;
        // LAB 4: STUB
        // let _ = (b, id, pfn, idx, write_word::<B>);
        // todo!("lab 4: put an object back on the freelist (zsmalloc/src/zspage.rs, ClassState::obj_free)")
        // LAB 4: END
    }

    /// zspages a perfect repacking of the live objects would free (Linux: `zs_can_compact`,
    /// in zspages). While the class has zspages shorter than its length, counted in the
    /// smallest zspage there may be (an upper bound: compaction stops when no zspage empties).
    pub fn freeable_zspages(&self) -> u64 {
        let free = self.objs_allocated - self.objs_inuse;
        if self.short_zspages == 0 && free < self.layout.objs_per_zspage as u64 {
            // The common case on a free, without a division.
            return 0;
        }
        free / self.smallest_capacity() as u64
    }

    /// Objects the smallest live zspage of the class may hold: the class's own count unless
    /// it has shorter zspages, then a lower bound (the fewest a zspage of it can hold).
    fn smallest_capacity(&self) -> usize {
        if self.short_zspages == 0 {
            self.layout.objs_per_zspage
        } else {
            (1..self.layout.pages_per_zspage)
                .map(|p| self.capacity(p))
                .find(|&n| n > 0)
                .unwrap_or(self.layout.objs_per_zspage)
        }
    }

    /// Pages a perfect repacking of the live objects would free (an upper bound while the
    /// class has short zspages; see [`ClassState::freeable_zspages`]).
    pub fn freeable_pages(&self) -> u64 {
        if self.short_zspages == 0 {
            self.freeable_zspages() * self.layout.pages_per_zspage as u64
        } else {
            let free = (self.objs_allocated - self.objs_inuse) * self.layout.size as u64;
            (free / PAGE_SIZE as u64).min(self.pages)
        }
    }

    /// The zspages that are neither empty nor full, emptiest first (or fullest first).
    pub fn partly_used(&self, emptiest_first: bool) -> impl Iterator<Item = u32> + '_ {
        // LAB 6: BEGIN the zspages with room and objects, in the order of their fullness groups
        let partial_groups = GROUP_FULL - GROUP_EMPTY - 1;
        (0..partial_groups)
            .map(move |k| {
                if emptiest_first {
                    GROUP_EMPTY + 1 + k
                } else {
                    GROUP_FULL - 1 - k
                }
            })
            .flat_map(|g| self.group_members(g))
        // LAB 6: STUB
        // // Until you order them, no zspage is found.
        // let _ = (emptiest_first, GROUP_FULL);
        // core::iter::empty()
        // LAB 6: END
    }

    /// Compacts the class (Linux's `__zs_compact`): moves live objects out of the emptiest
    /// zspages into the fullest ones, and frees each zspage it empties, until no zspage can
    /// be freed. A zspage with a mapped object (its lock held for reading) is never a source:
    /// its objects do not move. The caller holds the migrate lock for writing. Empties at most
    /// `max_sources` source zspages, so that the caller can let others in between. Returns
    /// (pages freed, objects moved, whether more could be done).
    pub fn compact<B: Backend>(
        &mut self,
        b: &B,
        slots: &SlotTable,
        max_sources: usize,
    ) -> (usize, u64, bool) {
        // LAB 6: BEGIN compact the class while a zspage could be freed (and at most max_sources sources): choose where objects go and which zspage they leave, so that compaction frees pages and never moves a mapped object; drain one into the other
        let (mut pages_freed, mut moved) = (0, 0);
        let mut sources = 0;
        while self.freeable_zspages() > 0 {
            if sources == max_sources {
                return (pages_freed, moved, true);
            }
            sources += 1;
            let dst = self.partly_used(false).next();
            let src = dst.and_then(|dst| {
                self.partly_used(true).find(|&id| {
                    id != dst
                        && zsdesc::zspage_try_write_lock(b.desc(self.zspages[id as usize].first))
                })
            });
            let (Some(dst), Some(src)) = (dst, src) else {
                break;
            };
            let (freed, n) = self.drain_into(b, slots, src, dst);
            pages_freed += freed;
            moved += n;
        }
        (pages_freed, moved, false)
        // LAB 6: STUB
        // // Until you compact, nothing moves.
        // let _ = (b, slots, max_sources, Self::drain_into::<B>, zsdesc::zspage_try_write_lock);
        // (0, 0, false)
        // LAB 6: END
    }

    /// Moves objects of zspage `src` (its lock held for writing, which this releases) into
    /// zspage `dst` until `src` is empty or `dst` full; frees `src` if it emptied. Returns
    /// (pages freed, objects moved).
    fn drain_into<B: Backend>(
        &mut self,
        b: &B,
        slots: &SlotTable,
        src: u32,
        dst: u32,
    ) -> (usize, u64) {
        // LAB 6: BEGIN move src's objects into dst, one by one, until src is empty or dst full; then both zspages' groups, src's lock released, and src freed if empty; return (pages freed, objects moved)
        let src_first = self.zspages[src as usize].first;
        let (src_objs, dst_objs) = (
            self.zspages[src as usize].objs,
            self.zspages[dst as usize].objs,
        );
        let mut moved = 0;
        // The source's pages are walked once, in step with its objects (not a walk of the
        // chain from its start for each object).
        let (mut pfn, mut page_end) = (src_first, PAGE_SIZE);
        for idx in 0..src_objs {
            if self.zspages[dst as usize].inuse == dst_objs || self.zspages[src as usize].inuse == 0
            {
                break;
            }
            while idx as usize * self.layout.size >= page_end {
                pfn = zsdesc::next(b.desc(pfn)).expect("the chain holds every object");
                page_end += PAGE_SIZE;
            }
            let Some(slot) = self.header_slot(b, pfn, idx) else {
                continue;
            };
            self.move_object(b, slots, slot, (src, pfn, idx), dst);
            moved += 1;
        }
        self.fix_group(dst);
        zsdesc::zspage_write_unlock(b.desc(src_first));
        let freed = if self.fix_group(src) == GROUP_EMPTY {
            self.free_zspage(b, src)
        } else {
            0
        };
        (freed, moved)
        // LAB 6: STUB
        // // Until you drain, nothing moves; the source's lock is released.
        // let _ = (slots, dst, Self::move_object::<B>);
        // zsdesc::zspage_write_unlock(b.desc(self.zspages[src as usize].first));
        // (0, 0)
        // LAB 6: END
    }

    /// The lengths of the zspages, fewest pages in all, that hold `objs` objects of this
    /// (normal) class: an unbounded knapsack over the lengths the class may chain.
    pub fn fewest_lengths(&self, objs: usize) -> Vec<usize> {
        let lengths: Vec<(usize, usize)> = (1..=self.layout.pages_per_zspage)
            .map(|p| (p, self.capacity(p)))
            .filter(|&(_, n)| n > 0)
            .collect();
        // fewest[k]: the fewest pages holding at least k objects, and the last length used.
        let mut fewest = Vec::with_capacity(objs + 1);
        fewest.push((0usize, 0usize));
        for k in 1..=objs {
            let best = lengths
                .iter()
                .map(|&(pages, n)| (pages + fewest[k.saturating_sub(n)].0, pages))
                .min()
                .expect("a normal class has a length that holds an object");
            fewest.push(best);
        }
        let (mut out, mut k) = (Vec::new(), objs);
        while k > 0 {
            let pages = fewest[k].1;
            out.push(pages);
            k = k.saturating_sub(self.capacity(pages));
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// A repacking that would hold the class's objects in fewer pages (zsos's growth rule
    /// leaves zspages of several lengths): the zspages that are shorter than the class's
    /// length or partly used (a full zspage of the class's length is already its densest) are
    /// the candidates, and their objects are to be held by zspages of the lengths
    /// [`ClassState::fewest_lengths`] gives. For each of those lengths the fullest candidate of
    /// that length stays (its objects do not move); the other candidates are emptied into the
    /// kept zspages and new ones of the lengths left. `None` unless at least two candidates
    /// and a page to save.
    pub fn mergeable(&self) -> Option<MergePlan> {
        if self.layout.huge {
            return None;
        }
        let full = self.layout.pages_per_zspage as u32;
        let is_candidate =
            |z: &ZsPage| z.live && z.inuse > 0 && (z.pages < full || z.inuse < z.objs);
        let (mut count, mut objs, mut pages) = (0usize, 0usize, 0usize);
        for z in self.zspages.iter().filter(|z| is_candidate(z)) {
            count += 1;
            objs += z.inuse as usize;
            pages += z.pages as usize;
        }
        // No page to save if even zspages of the class's own length, as many as the objects
        // fill, need as many pages: no shorter length holds more objects per page (the table
        // chose it for the least waste at a zspage's end, the first least winning, and a
        // shorter zspage wastes more on fewer pages), so no repacking does better. The
        // knapsack below costs objects x lengths; this check answers most calls (one after
        // each compaction of each class) without it.
        let (own_pages, own_objs) = (self.layout.pages_per_zspage, self.layout.objs_per_zspage);
        if count < 2 || (objs * own_pages).div_ceil(own_objs) >= pages {
            return None;
        }
        let mut candidates: Vec<u32> = (0..self.zspages.len() as u32)
            .filter(|&id| is_candidate(&self.zspages[id as usize]))
            .collect();
        let lengths = self.fewest_lengths(objs);
        if lengths.iter().sum::<usize>() >= pages {
            return None;
        }
        // Fullest first (ties: lowest id), so each length keeps the candidate that holds most.
        candidates.sort_by_key(|&id| (core::cmp::Reverse(self.zspages[id as usize].inuse), id));
        let mut kept = alloc::vec![false; candidates.len()];
        let (mut keep, mut new_lengths) = (Vec::new(), Vec::new());
        for &length in &lengths {
            let same_length = candidates.iter().enumerate().position(|(k, &id)| {
                !kept[k] && self.zspages[id as usize].pages as usize == length
            });
            match same_length {
                Some(k) => {
                    kept[k] = true;
                    keep.push(candidates[k]);
                }
                None => new_lengths.push(length),
            }
        }
        let sources = candidates
            .iter()
            .zip(&kept)
            .filter(|&(_, &k)| !k)
            .map(|(&id, _)| id)
            .collect();
        Some(MergePlan {
            sources,
            keep,
            lengths: new_lengths,
        })
    }

    /// Carries out `plan` (from [`ClassState::mergeable`], checked again here) with `frames`
    /// for its new zspages, one per length in order; the caller holds the migrate lock for
    /// writing. Nothing happens (the frames go back) if the plan no longer holds or a source
    /// has a mapped object. Returns (pages freed, pages added, objects moved).
    pub fn merge<B: Backend>(
        &mut self,
        b: &B,
        slots: &SlotTable,
        plan: &MergePlan,
        frames: Vec<ZsPageFrames<'_, B>>,
    ) -> (usize, usize, u64) {
        let fits = frames.len() == plan.lengths.len()
            && frames.iter().zip(&plan.lengths).all(|(f, &l)| f.count == l);
        if !fits || self.mergeable().as_ref() != Some(plan) {
            return (0, 0, 0);
        }
        // No map can begin (the migrate lock is held for writing): a source that can be
        // locked now stays unmapped until it is drained.
        for &id in &plan.sources {
            let first = b.desc(self.zspages[id as usize].first);
            if !zsdesc::zspage_try_write_lock(first) {
                return (0, 0, 0);
            }
            zsdesc::zspage_write_unlock(first);
        }
        let added: usize = plan.lengths.iter().sum();
        let new_zspages: Vec<u32> = frames
            .into_iter()
            .map(|f| self.install_zspage(b, f))
            .collect();
        let dsts: Vec<u32> = plan
            .keep
            .iter()
            .copied()
            .chain(new_zspages.iter().copied())
            .collect();
        let (mut freed, mut moved, mut d) = (0, 0, 0);
        'sources: for &src in &plan.sources {
            loop {
                let first = self.zspages[src as usize].first;
                let locked = zsdesc::zspage_try_write_lock(b.desc(first));
                debug_assert!(locked, "no map begins under the migrate lock");
                let (f, m) = self.drain_into(b, slots, src, dsts[d]);
                (freed, moved) = (freed + f, moved + m);
                if f > 0 {
                    break;
                }
                let dst = &self.zspages[dsts[d] as usize];
                if dst.inuse < dst.objs {
                    // The source kept objects though the destination has room: nothing more
                    // moves (a drain that moves nothing).
                    break 'sources;
                }
                d += 1;
                if d == dsts.len() {
                    break 'sources;
                }
            }
        }
        for &dst in &new_zspages {
            if self.zspages[dst as usize].inuse == 0 {
                freed += self.free_zspage(b, dst);
            }
        }
        (freed, added, moved)
    }

    /// A zspage whose live objects would fit a shorter zspage of the class: (its id, the
    /// fewest pages that hold them), for [`ClassState::shrink`]. The least-used such zspage
    /// is found first.
    pub fn shrinkable(&self) -> Option<(u32, usize)> {
        self.partly_used(true).find_map(|id| {
            let z = &self.zspages[id as usize];
            (1..z.pages as usize)
                .find(|&p| self.capacity(p) >= z.inuse as usize)
                .map(|p| (id, p))
        })
    }

    /// Cuts zspage `id` down to its first `pages` pages, which must hold its live objects (the
    /// caller holds the migrate lock for writing): the objects in slots past the shorter
    /// zspage's end move into its free slots, lowest first, the freelist is rebuilt over the
    /// free slots that stay and the pages past the cut go back. Only the objects past the cut
    /// move (a slot's place in its page does not depend on the zspage's length). Returns
    /// (pages freed, objects moved), or (0, 0) with nothing changed if the zspage has a mapped
    /// object or no longer fits `pages` pages.
    pub fn shrink<B: Backend>(
        &mut self,
        b: &B,
        slots: &SlotTable,
        id: u32,
        pages: usize,
    ) -> (usize, u64) {
        let Some(z) = self.zspages.get(id as usize).filter(|z| z.live) else {
            return (0, 0);
        };
        let (first, inuse, old_pages, old_objs) = (z.first, z.inuse, z.pages as usize, z.objs);
        let keep = self.capacity(pages);
        if self.layout.huge
            || pages >= old_pages
            || !self.may_chain(pages)
            || keep < inuse as usize
            || inuse == 0
            || !zsdesc::zspage_try_write_lock(b.desc(first))
        {
            return (0, 0);
        }
        let keep = keep as u32;
        let chain: Vec<Pfn> = core::iter::successors(Some(first), |&p| zsdesc::next(b.desc(p)))
            .take(old_pages)
            .collect();
        if chain.len() != old_pages {
            // A chain shorter than the zspage says (a lab tree's bug): nothing is cut.
            zsdesc::zspage_write_unlock(b.desc(first));
            return (0, 0);
        }
        let size = self.layout.size;
        let page_of = |idx: u32| chain[idx as usize * size / PAGE_SIZE];
        let free_kept: Vec<u32> = (0..keep)
            .filter(|&idx| self.header_slot(b, page_of(idx), idx).is_none())
            .collect();
        // The live objects past the cut: (their index, their handle slot).
        let past_cut: Vec<(u32, u32)> = (keep..old_objs)
            .filter_map(|idx| Some((idx, self.header_slot(b, page_of(idx), idx)?)))
            .collect();
        let mut free = free_kept.iter();
        for &(idx, slot) in &past_cut {
            let &to = free
                .next()
                .expect("the slots that stay hold every live object");
            let to_pfn = page_of(to);
            // The whole slot moves, header included (the slot it names is unchanged).
            self.copy_slot_bytes(b, (page_of(idx), idx), (to_pfn, to));
            slots
                .get(slot)
                .expect("a live object's handle slot exists")
                .set_obj(handle::encode_obj(to_pfn, to));
        }
        let moved = past_cut.len() as u64;
        let rest = free.as_slice();
        for (k, &idx) in rest.iter().enumerate() {
            let link = handle::link_word(rest.get(k + 1).copied());
            // SAFETY: a free slot of a zspage we hold locked for writing under the class
            // lock; its link word is 8-aligned and inside its page.
            unsafe { write_word(b, page_of(idx), idx as usize * size % PAGE_SIZE, link) };
        }
        zsdesc::clear_next(b.desc(chain[pages - 1]));
        for &pfn in &chain[pages..] {
            zsdesc::reset(b.desc(pfn));
            // SAFETY: the page is past the cut: no slot of the zspage lies in it any more and
            // the chain no longer reaches it.
            unsafe { b.free_page(pfn) };
        }
        let full_length = self.layout.pages_per_zspage;
        let z = &mut self.zspages[id as usize];
        z.freeobj = rest.first().copied();
        z.pages = pages as u32;
        z.objs = keep;
        self.objs_allocated -= u64::from(old_objs - keep);
        self.pages -= (old_pages - pages) as u64;
        if old_pages == full_length {
            self.short_zspages += 1;
        }
        zsdesc::zspage_write_unlock(b.desc(first));
        self.fix_group(id);
        (old_pages - pages, moved)
    }

    /// Copies a whole object slot (header and bytes) from one location to another; either may
    /// span two pages.
    /// Moves object `idx` of zspage `src` (it starts in page `pfn`; its slot is `slot`) into a
    /// free object of zspage `dst`, which must have room; the slot then names the new place.
    fn move_object<B: Backend>(
        &mut self,
        b: &B,
        slots: &SlotTable,
        slot: u32,
        (src, pfn, idx): (u32, Pfn, u32),
        dst: u32,
    ) {
        // LAB 6: BEGIN move the object into zspage `dst`, its handle still valid
        let cell = slots
            .get(slot)
            .expect("an object's header names a real slot");
        let new_obj = self.obj_malloc(b, dst, slot);
        self.copy_slot_bytes(
            b,
            handle::decode_obj(cell.obj()),
            handle::decode_obj(new_obj),
        );
        cell.set_obj(new_obj);
        self.obj_free(b, src, pfn, idx);
        // LAB 6: STUB
        // let _ = (b, slots, slot, src, pfn, idx, dst, Self::copy_slot_bytes::<B>);
        // todo!("lab 6: move an object into another zspage (zsmalloc/src/zspage.rs, ClassState::move_object)")
        // LAB 6: END
    }

    /// After page `page_no` of a zspage of `objs` objects moved to frame `new`: repoints the
    /// slot of every allocated object that starts in it (from offset `first_obj`, every `size`
    /// bytes). An object that starts in the previous page keeps its location.
    fn repoint_objects_in<B: Backend>(
        &self,
        b: &B,
        slots: &SlotTable,
        new: Pfn,
        (page_no, objs): (usize, u32),
        first_obj: usize,
    ) {
        // LAB 6: BEGIN after the page moved to frame `new`, make every handle of an object that starts in it name its new place
        let size = self.layout.size;
        let mut off = first_obj;
        while off < PAGE_SIZE {
            let idx = ((page_no * PAGE_SIZE + off) / size) as u32;
            if idx >= objs {
                break;
            }
            if let Some(slot) = self.header_slot(b, new, idx) {
                slots
                    .get(slot)
                    .expect("an object's header names a real slot")
                    .set_obj(handle::encode_obj(new, idx));
            }
            off += size;
        }
        // LAB 6: STUB
        // let _ = (b, slots, new, page_no, objs, first_obj);
        // todo!("lab 6: repoint the handles of the objects that start in a migrated page (zsmalloc/src/zspage.rs, ClassState::repoint_objects_in)")
        // LAB 6: END
    }

    fn copy_slot_bytes<B: Backend>(&self, b: &B, from: (Pfn, u32), to: (Pfn, u32)) {
        let size = self.layout.size;
        let at = |(pfn, idx): (Pfn, u32)| (pfn, idx as usize * size % PAGE_SIZE);
        // SAFETY: both are slots of live zspages of this class, held under the class lock,
        // and distinct slots do not overlap; neither is pinned for writing (sources are
        // unpinned, the destination slot was just allocated).
        unsafe { copy_between_slots(b, at(from), at(to), size) };
    }

    /// Objects lent a slot of this class, in zspages with no mapped object (their bytes may
    /// move), at most `room[home]` of each own class `home` (the count is taken down): read
    /// from each allocated object's header and its slot's own class, until every lent object
    /// was seen or the room is used up. The caller holds the migrate lock for writing (no
    /// mapping begins meanwhile) and the class lock.
    pub fn lent_objects<B: Backend>(
        &self,
        b: &B,
        slots: &SlotTable,
        room: &mut [u64],
    ) -> Vec<LentObject> {
        let mut out = Vec::new();
        let mut wanted: u64 = room.iter().sum();
        if self.lent == 0 || self.layout.huge || wanted == 0 {
            return out;
        }
        let mut seen = 0;
        for id in self.live_zspages() {
            let z = &self.zspages[id as usize];
            if zsdesc::zspage_readers(b.desc(z.first)) != 0 {
                continue;
            }
            // Page by page (no allocation: this walks every object of the class): the objects
            // that start in page `n` are those below ⌈(n + 1) pages / size⌉.
            let pages = core::iter::successors(Some(z.first), |&page| zsdesc::next(b.desc(page)));
            let mut from = 0;
            for (n, pfn) in pages.take(z.pages as usize).enumerate() {
                let to = (((n + 1) * PAGE_SIZE).div_ceil(self.layout.size) as u32).min(z.objs);
                for idx in from..to {
                    let own_class = self
                        .header_slot(b, pfn, idx)
                        .map(|slot| (slot, slots.get(slot).map(|s| s.state().class)));
                    let Some((slot, Some(home))) = own_class else {
                        continue;
                    };
                    let home = home as usize;
                    if home == self.pos as usize {
                        continue;
                    }
                    seen += 1;
                    if let Some(left) = room.get_mut(home).filter(|left| **left > 0) {
                        *left -= 1;
                        wanted -= 1;
                        out.push(LentObject {
                            slot,
                            at: (id, pfn, idx),
                            home,
                        });
                    }
                }
                from = to;
            }
            if seen == self.lent || wanted == 0 {
                break;
            }
        }
        out
    }

    /// Moves a lent object out of this class into `new_obj`, a slot its own class has taken
    /// for it (`home_size` bytes, which hold the object and its header): copies the slot's
    /// first `home_size` bytes, repoints the handle's slot and frees the old place (the
    /// caller fixes the zspage's group afterwards). The caller holds the migrate lock for
    /// writing and this class's lock; nothing else reaches the new slot.
    pub fn move_home<B: Backend>(
        &mut self,
        b: &B,
        slots: &SlotTable,
        lent: LentObject,
        new_obj: u64,
        home_size: usize,
    ) {
        let (id, pfn, idx) = lent.at;
        let (to_pfn, to_idx) = handle::decode_obj(new_obj);
        let from = (pfn, idx as usize * self.layout.size % PAGE_SIZE);
        let to = (to_pfn, to_idx as usize * home_size % PAGE_SIZE);
        // SAFETY: the source is an allocated slot of a live zspage of this class with no
        // mapping (no new one begins under the migrate lock), at least `home_size` bytes; the
        // destination a slot of `home_size` bytes just taken for it in another class's zspage,
        // which nothing else reaches; they are in different zspages, so do not overlap.
        unsafe { copy_between_slots(b, from, to, home_size) };
        slots
            .get(lent.slot)
            .expect("a lent object's slot exists")
            .set_obj(new_obj);
        self.obj_free(b, id, pfn, idx);
        self.unlend();
    }

    /// Moves page `pfn` of zspage `id` to the frame `new`; see `Pool::migrate_page_into`. The
    /// caller holds the migrate lock for writing. On error nothing changed and `new` is unused.
    pub fn migrate_page<B: Backend>(
        &mut self,
        b: &B,
        slots: &SlotTable,
        id: u32,
        pfn: Pfn,
        new: Pfn,
    ) -> Result<(), crate::Error> {
        use crate::Error;
        let z = self
            .zspages
            .get(id as usize)
            .filter(|z| z.live)
            .ok_or(Error::NotOurPage(pfn))?;
        // Where the page sits in the chain (and which page links to it).
        let (prev, page_no) = self
            .chain_position(b, z.first, pfn)
            .ok_or(Error::NotOurPage(pfn))?;
        let first = z.first;
        if !zsdesc::zspage_try_write_lock(b.desc(first)) {
            return Err(Error::ZspageBusy(pfn));
        }
        // SAFETY: both frames are the pool's (the old one is a page of a live, unpinned zspage
        // under the class lock; the new one was just allocated) and distinct.
        unsafe { core::ptr::copy_nonoverlapping(b.page_ptr(pfn), b.page_ptr(new), PAGE_SIZE) };
        let moving_first = pfn == first;
        // The descriptor: either the backend moves its pointer to the new frame (one
        // descriptor, still isolated: the isolation ends with this migration), or each frame
        // has its own and the old one's fields are copied into the new one's.
        let moved_desc = b.move_desc(pfn, new);
        let new_d = b.desc(new);
        if moved_desc {
            zsdesc::clear_isolated(new_d);
            if moving_first {
                zsdesc::set_first_page(new_d, new);
            }
        } else {
            let old_d = b.desc(pfn);
            zsdesc::init_page(
                new_d,
                ZsPageRef {
                    class: self.pos,
                    id,
                },
                if moving_first { new } else { first },
                moving_first,
                zsdesc::first_obj_offset(old_d),
                zsdesc::movable_ops(old_d),
            );
            if self.layout.huge {
                zsdesc::set_huge_slot(new_d, zsdesc::huge_slot(old_d));
            } else if let Some(next) = zsdesc::next(old_d) {
                zsdesc::set_next(new_d, next);
            }
            if moving_first {
                // The zspage lock lives in the first page: it moves (still held for writing).
                zsdesc::move_zspage_lock(old_d, new_d);
            }
        }
        let first_obj = zsdesc::first_obj_offset(new_d);
        // LAB 6: BEGIN put the new frame in the old one's place in the chain; when it is the first page, every page of the zspage learns its new first page
        match prev {
            None => self.zspages[id as usize].first = new,
            Some(p) => zsdesc::set_next(b.desc(p), new),
        }
        if moving_first {
            // Every page learns its new first page.
            let mut cur = zsdesc::next(new_d).filter(|_| !self.layout.huge);
            while let Some(p) = cur {
                zsdesc::set_first_page(b.desc(p), new);
                cur = zsdesc::next(b.desc(p));
            }
        }
        // LAB 6: STUB
        // // Until you relink the chain, it still names the old frame.
        // let _ = (prev, zsdesc::set_first_page);
        // LAB 6: END
        let objs = self.zspages[id as usize].objs;
        self.repoint_objects_in(b, slots, new, (page_no, objs), first_obj as usize);
        zsdesc::zspage_write_unlock(b.desc(self.zspages[id as usize].first));
        if !moved_desc {
            zsdesc::reset(b.desc(pfn));
        }
        // SAFETY: nothing refers to the old frame any more: the chain, the zspage and every
        // slot now name the new one.
        unsafe { b.free_page(pfn) };
        Ok(())
    }

    /// True if `pfn` is a page of live zspage `id`.
    pub fn holds_page<B: Backend>(&self, b: &B, id: u32, pfn: Pfn) -> bool {
        self.zspages
            .get(id as usize)
            .filter(|z| z.live)
            .is_some_and(|z| self.chain_position(b, z.first, pfn).is_some())
    }

    /// Where `pfn` sits in the chain of pages that starts at `first`: the page that links to
    /// it (`None` for the first) and its number in the chain; `None` if the chain does not
    /// hold it.
    fn chain_position<B: Backend>(
        &self,
        b: &B,
        first: Pfn,
        pfn: Pfn,
    ) -> Option<(Option<Pfn>, usize)> {
        // LAB 6: BEGIN walk the chain from first to find pfn: the page that links to it (None for the first) and its number; None if the chain does not hold it
        let (mut prev, mut cur, mut page_no) = (None, Some(first), 0);
        while let Some(p) = cur {
            if p == pfn {
                return Some((prev, page_no));
            }
            prev = Some(p);
            cur = if self.layout.huge {
                None
            } else {
                zsdesc::next(b.desc(p))
            };
            page_no += 1;
        }
        None
        // LAB 6: STUB
        // // Until you walk the chain, no zspage holds any page.
        // let _ = (b, first, pfn);
        // None
        // LAB 6: END
    }

    /// Walks a zspage's freelist (for checks): the free object indices.
    pub fn freelist<B: Backend>(&self, b: &B, id: u32) -> Vec<u32> {
        let z = &self.zspages[id as usize];
        let mut out = Vec::new();
        let mut cur = z.freeobj;
        while let Some(idx) = cur {
            out.push(idx);
            if out.len() > z.objs as usize {
                break; // a cycle: the checker reports the length
            }
            cur = if self.layout.huge {
                None
            } else {
                let (pfn, off) = self.locate(b, z.first, idx);
                // SAFETY: reading the link word of a free object of a live zspage we hold
                // the class lock for.
                handle::link_target(unsafe { read_word(b, pfn, off) })
            };
        }
        out
    }

    /// Which object slots of zspage `id` are allocated, in address order (its chain read
    /// once; headers read under the class lock, which the caller holds).
    pub fn allocated_slots<B: Backend>(&self, b: &B, id: u32) -> Vec<bool> {
        let z = &self.zspages[id as usize];
        let huge = self.layout.huge;
        let chain = self.chain(b, id);
        (0..z.objs)
            .map(|idx| {
                let page_no = if huge {
                    0
                } else {
                    idx as usize * self.layout.size / PAGE_SIZE
                };
                // A page missing from a broken chain: its objects are drawn free.
                chain
                    .get(page_no)
                    .is_some_and(|&pfn| self.header_slot(b, pfn, idx).is_some())
            })
            .collect()
    }

    /// The pages of zspage `id`, first to last. At most the zspage's own length: a chain
    /// broken into a loop (a lab tree's bug, which a failing test's picture is there to show)
    /// must not hang a walk; a chain cut short gives fewer.
    fn chain<B: Backend>(&self, b: &B, id: u32) -> Vec<Pfn> {
        let z = &self.zspages[id as usize];
        let huge = self.layout.huge;
        core::iter::successors(Some(z.first), |&page| {
            if huge {
                None
            } else {
                zsdesc::next(b.desc(page))
            }
        })
        .take(z.pages as usize)
        .collect()
    }

    /// The slot recorded in an allocated object's header (or, for huge, its descriptor).
    pub fn header_slot<B: Backend>(&self, b: &B, pfn: Pfn, idx: u32) -> Option<u32> {
        // LAB 4: BEGIN whose object `idx` (starting in page `pfn`) is: the slot its header names, or None for a free object (a huge object's slot is in its page's zsdesc)
        if self.layout.huge {
            zsdesc::huge_slot(b.desc(pfn))
        } else {
            let off = idx as usize * self.layout.size % PAGE_SIZE;
            // SAFETY: reading the first word of an object of a live zspage under the lock.
            handle::slot_from_header(unsafe { read_word(b, pfn, off) })
        }
        // LAB 4: STUB
        // // Until you read headers, every object looks free.
        // let _ = (b, pfn, idx, handle::slot_from_header);
        // None
        // LAB 4: END
    }
}

/// Copies `len` bytes from the slot that starts at `from` (page, offset) to the slot that
/// starts at `to`; either may continue into the next page of its zspage.
///
/// # Safety
/// Both are `len` bytes of slots of live zspages that nobody else reads or writes now, and
/// they do not overlap.
unsafe fn copy_between_slots<B: Backend>(b: &B, from: (Pfn, usize), to: (Pfn, usize), len: usize) {
    let size = len;
    // Each slot as one or two pieces (pointer, length): the second in the next page.
    let pieces = |(pfn, off): (Pfn, usize)| {
        let head = (PAGE_SIZE - off).min(size);
        let next = if head < size {
            zsdesc::next(b.desc(pfn)).map_or(core::ptr::null_mut(), |n| b.page_ptr(n))
        } else {
            core::ptr::null_mut()
        };
        [
            (b.page_ptr(pfn).wrapping_add(off), head),
            (next, size - head),
        ]
    };
    let (src, dst) = (pieces(from), pieces(to));
    // Copies straight from piece to piece (no bounce buffer: this runs once per object
    // compaction moves, automatic compaction included).
    let (mut si, mut s_done, mut di, mut d_done) = (0, 0, 0, 0);
    let mut copied = 0;
    while copied < size {
        while src[si].1 == s_done {
            (si, s_done) = (si + 1, 0);
        }
        while dst[di].1 == d_done {
            (di, d_done) = (di + 1, 0);
        }
        let n = (src[si].1 - s_done).min(dst[di].1 - d_done);
        // SAFETY: the caller's promise for both slots; each piece lies inside its page (a
        // second piece exists only when the slot spans, and then its pointer is the next
        // page's).
        unsafe { core::ptr::copy_nonoverlapping(src[si].0.add(s_done), dst[di].0.add(d_done), n) };
        s_done += n;
        d_done += n;
        copied += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::{ClassTable, DEFAULT_MAX_CHAIN};
    use crate::host::HostBackend;

    /// A class of 1,280-byte slots (5 pages and 16 objects a zspage at its own length) with
    /// zspages of the given lengths, each filled with `fill[i]` objects.
    /// A class lists the own classes of the objects lent its slots, in whichever word of
    /// the bitmap they fall, until none is lent; a search for classes with room asks it.
    #[test]
    fn a_class_lists_the_classes_it_lends_to_until_none_is_lent() {
        let table = ClassTable::new(DEFAULT_MAX_CHAIN);
        let pos = table.classes.len() - 1;
        let mut class = ClassState::new(table.classes[pos], pos as u8);
        let only = |home: usize| {
            let mut bits = [0u64; 4];
            bits[home / 64] |= 1 << (home % 64);
            bits
        };
        let nobody = [0u64; 4];
        assert!(!class.may_lend_to(&[u64::MAX; 4]), "nothing lent yet");
        class.lend(3);
        class.lend(70);
        class.lend(70);
        assert_eq!(class.lent, 3);
        for home in [3, 70] {
            assert!(class.may_lend_to(&only(home)), "class {home}");
        }
        for home in [2, 4, 6, 64, 69, 71, 131] {
            assert!(!class.may_lend_to(&only(home)), "class {home}");
        }
        assert!(!class.may_lend_to(&nobody));
        // Room in several classes, one of them a borrower's.
        let mut some = only(5);
        some[1] |= only(70)[1];
        assert!(class.may_lend_to(&some));
        class.unlend();
        class.unlend();
        assert!(class.may_lend_to(&only(3)), "listed until none is lent");
        class.unlend();
        assert_eq!(class.lent, 0);
        assert!(!class.may_lend_to(&[u64::MAX; 4]), "none lent: none listed");
    }

    fn class_with(b: &HostBackend, lengths: &[usize], fill: &[u32]) -> ClassState {
        let table = ClassTable::new(DEFAULT_MAX_CHAIN);
        let pos = table.class_for(1280 - crate::class::HANDLE_SIZE);
        let mut class = ClassState::new(table.classes[pos], pos as u8);
        assert_eq!(class.layout.pages_per_zspage, 5);
        let mut slot = 0;
        for (&pages, &n) in lengths.iter().zip(fill) {
            let id = class.install_zspage(b, ZsPageFrames::alloc(b, pages).unwrap());
            for _ in 0..n {
                class.obj_malloc(b, id, slot);
                slot += 1;
            }
            class.fix_group(id);
        }
        class
    }

    /// Repacking takes only the zspages that can gain: shorter than the class's length, or
    /// partly used; a full zspage of the class's own length (its densest) stays out of the
    /// plan, so its objects never move.
    #[test]
    fn a_repacking_plan_leaves_full_zspages_of_the_class_s_length_alone() {
        let b = HostBackend::new(64, 1);
        // Zspages of 1 to 5 pages hold 3, 6, 9, 12 and 16 objects. Four full 1-page zspages
        // and a 2-page one holding 1 object: 13 objects in 6 pages, which 5 pages hold.
        let class = class_with(&b, &[5, 1, 1, 1, 1, 2], &[16, 3, 3, 3, 3, 1]);
        let plan = class.mergeable().expect("a page to save");
        assert!(
            !plan.sources.contains(&0) && !plan.keep.contains(&0),
            "the full 5-page zspage 0 stays out: {plan:?}"
        );
        // Five 1-page zspages hold the 13: the four full ones stay, the 2-page one's object
        // moves to a new 1-page zspage.
        assert_eq!(
            (plan.sources, plan.keep, plan.lengths),
            (alloc::vec![5], alloc::vec![1, 2, 3, 4], alloc::vec![1])
        );
        // Nothing to gain: no plan.
        let b2 = HostBackend::new(64, 2);
        let tight = class_with(&b2, &[5, 5], &[16, 16]);
        assert_eq!(tight.mergeable(), None);
        let one = class_with(&b2, &[5, 2], &[16, 1]);
        assert_eq!(one.mergeable(), None, "one source alone is a shrink's job");
        let even = class_with(&b2, &[1, 1], &[3, 3]);
        assert_eq!(
            even.mergeable(),
            None,
            "6 objects in 2 pages: no page to save"
        );
    }

    /// `merge` checks its plan and frames again: frames of other lengths, or a plan the class
    /// no longer matches, change nothing (the frames go back).
    #[test]
    fn a_repacking_with_wrong_frames_or_a_stale_plan_changes_nothing() {
        let b = HostBackend::new(64, 3);
        let slots = SlotTable::new(1);
        let mut class = class_with(&b, &[5, 1, 1, 1, 1, 2], &[16, 3, 3, 3, 3, 1]);
        let plan = class.mergeable().unwrap();
        let held = b.frames_in_use();
        let (pages, objs) = (class.pages, class.objs_allocated);
        let frames_of = |lengths: &[usize]| -> Vec<ZsPageFrames<'_, HostBackend>> {
            lengths
                .iter()
                .map(|&p| ZsPageFrames::alloc(&b, p).unwrap())
                .collect()
        };
        // One frame short, one too many, a length off.
        let short: Vec<usize> = plan.lengths[..plan.lengths.len() - 1].to_vec();
        let mut more = plan.lengths.clone();
        more.push(1);
        let mut off = plan.lengths.clone();
        off[0] += 1;
        for lengths in [short, more, off] {
            let r = class.merge(&b, &slots, &plan, frames_of(&lengths));
            assert_eq!(r, (0, 0, 0), "frames of lengths {lengths:?}");
            assert_eq!((class.pages, class.objs_allocated), (pages, objs));
            assert_eq!(b.frames_in_use(), held, "the frames went back");
        }
        // A stale plan: a source left out.
        let stale = MergePlan {
            sources: plan.sources[1..].to_vec(),
            ..plan.clone()
        };
        let r = class.merge(&b, &slots, &stale, frames_of(&plan.lengths));
        assert_eq!(r, (0, 0, 0));
        assert_eq!((class.pages, class.objs_allocated), (pages, objs));
        assert_eq!(b.frames_in_use(), held);
    }

    /// A class like [`class_with`]'s whose objects have real handle slots (the slot names
    /// their place) and bytes: every byte after an object's header is its slot's number.
    fn class_with_objects(
        b: &HostBackend,
        slots: &SlotTable,
        lengths: &[usize],
        fill: &[u32],
    ) -> ClassState {
        let mut class = class_with(b, lengths, &alloc::vec![0; lengths.len()]);
        let mut slot = 0;
        for (id, &n) in fill.iter().enumerate() {
            for _ in 0..n {
                let (index, _) = slots.reserve(0, class.pos, 1000).unwrap();
                assert_eq!(index, slot);
                let obj = class.obj_malloc(b, id as u32, slot);
                slots.get(slot).unwrap().set_obj(obj);
                for_each_byte(&class, b, obj, |byte| *byte = slot as u8);
                slot += 1;
            }
            class.fix_group(id as u32);
        }
        class
    }

    /// The lent objects of a class are found in every page of every zspage (each where its
    /// handle's slot says), as many of each own class as it has room for, none in a zspage
    /// with a mapped object.
    #[test]
    fn the_lent_objects_are_found_where_their_slots_say_up_to_the_room_there_is() {
        let b = HostBackend::new(64, 9);
        let slots = SlotTable::new(1);
        let mut class = class_with(&b, &[5, 5], &[0, 0]);
        let home = 2usize;
        assert!(home < class.pos as usize);
        let mut lent = Vec::new();
        for id in 0..2u32 {
            for k in 0..16u32 {
                // Every third object is lent: its slot names a smaller own class.
                let own = if k % 3 == 0 { home as u8 } else { class.pos };
                let (slot, _) = slots.reserve(0, own, 1000).unwrap();
                let obj = class.obj_malloc(&b, id, slot);
                slots.get(slot).unwrap().set_obj(obj);
                if own != class.pos {
                    class.lend(home);
                    lent.push((slot, id, obj));
                }
            }
            class.fix_group(id);
        }
        assert_eq!(lent.len(), 12);
        let list = |class: &ClassState, room_at_home: u64| {
            let mut room = alloc::vec![0u64; class.pos as usize];
            room[home] = room_at_home;
            let found = class.lent_objects(&b, &slots, &mut room);
            assert_eq!(room[home], room_at_home - found.len() as u64);
            found
        };
        let found = list(&class, 100);
        assert_eq!(
            found.len(),
            12,
            "every lent object, in all five pages of both zspages"
        );
        for (o, &(slot, id, obj)) in found.iter().zip(&lent) {
            let (pfn, idx) = handle::decode_obj(obj);
            assert_eq!((o.slot, o.at, o.home), (slot, (id, pfn, idx), home));
        }
        assert_eq!(list(&class, 5).len(), 5, "no more than the room");
        assert!(list(&class, 0).is_empty());
        // A mapped object keeps its zspage's objects where they are.
        let second = class.zspage(1).first;
        zsdesc::zspage_read_lock(b.desc(second));
        let found = list(&class, 100);
        zsdesc::zspage_read_unlock(b.desc(second));
        assert_eq!(found.len(), 6);
        assert!(found.iter().all(|o| o.at.0 == 0));
    }

    /// Calls `f` on every byte of the object at `obj` after its header (which may span two
    /// pages).
    fn for_each_byte(class: &ClassState, b: &HostBackend, obj: u64, mut f: impl FnMut(&mut u8)) {
        let (pfn, idx) = handle::decode_obj(obj);
        let start = idx as usize * class.layout.size % PAGE_SIZE;
        for k in crate::class::HANDLE_SIZE..class.layout.size {
            let (page, off) = if start + k < PAGE_SIZE {
                (pfn, start + k)
            } else {
                (zsdesc::next(b.desc(pfn)).unwrap(), start + k - PAGE_SIZE)
            };
            // SAFETY: a byte of an allocated object of a live zspage of the test's own class.
            f(unsafe { &mut *b.page_ptr(page).add(off) });
        }
    }

    /// Every slot of `live` names an allocated object whose header names it back and whose
    /// bytes are its own; returns where each is.
    fn check_objects(
        class: &ClassState,
        b: &HostBackend,
        slots: &SlotTable,
        live: &[u32],
    ) -> Vec<u64> {
        live.iter()
            .map(|&slot| {
                let obj = slots.get(slot).unwrap().obj();
                let (pfn, idx) = handle::decode_obj(obj);
                assert_eq!(class.header_slot(b, pfn, idx), Some(slot));
                for_each_byte(class, b, obj, |byte| assert_eq!(*byte, slot as u8));
                obj
            })
            .collect()
    }

    /// A shrink cuts the zspage in place: only the objects past the cut move (into free
    /// slots before it), the pages past it go back, and the freelist covers exactly the free
    /// slots that stay.
    #[test]
    fn a_shrink_moves_only_the_objects_past_the_cut() {
        let b = HostBackend::new(64, 4);
        let slots = SlotTable::new(1);
        let mut class = class_with_objects(&b, &slots, &[5], &[16]);
        let held = b.frames_in_use();
        // Objects 0, 3, 7, 10, 14 and 15 stay: six, which a 2-page zspage (6 slots) holds.
        let first = class.zspage(0).first;
        for idx in [1, 2, 4, 5, 6, 8, 9, 11, 12, 13] {
            let (pfn, _) = class.locate(&b, first, idx);
            class.obj_free(&b, 0, pfn, idx);
        }
        class.fix_group(0);
        assert_eq!(class.shrinkable(), Some((0, 2)));
        let live = [0, 3, 7, 10, 14, 15];
        let before = check_objects(&class, &b, &slots, &live);
        let (freed, moved) = class.shrink(&b, &slots, 0, 2);
        assert_eq!((freed, moved), (3, 4), "objects 7, 10, 14 and 15 moved");
        let z = class.zspage(0);
        assert_eq!((z.pages, z.objs, z.inuse), (2, 6, 6));
        assert_eq!(class.freelist(&b, 0), Vec::<u32>::new());
        assert_eq!(
            (class.pages, class.objs_allocated, class.short_zspages),
            (2, 6, 1)
        );
        assert_eq!(b.frames_in_use(), held - 3, "three pages went back");
        assert_eq!(zsdesc::next(b.desc(class.nth_page(&b, first, 1))), None);
        let after = check_objects(&class, &b, &slots, &live);
        assert_eq!(after[..2], before[..2], "slots 0 and 3's objects stayed");
        for (k, &obj) in after.iter().enumerate().skip(2) {
            assert!(
                handle::decode_obj(obj).1 < 6,
                "slot {}'s object moved in",
                live[k]
            );
        }
        // Six objects in two pages: nothing left to cut; a cut to as many pages or more, or
        // to fewer than hold the objects, changes nothing.
        assert_eq!(class.shrinkable(), None);
        for pages in [1, 2, 3] {
            assert_eq!(
                class.shrink(&b, &slots, 0, pages),
                (0, 0),
                "to {pages} pages"
            );
        }
        assert_eq!((class.zspage(0).pages, class.pages), (2, 2));
        assert_eq!(check_objects(&class, &b, &slots, &live), after);
    }

    /// A repacking keeps, for each length it needs, the fullest zspage of that length: only
    /// the other zspages' objects move.
    #[test]
    fn a_repacking_keeps_the_fullest_zspage_of_each_length_it_needs() {
        let b = HostBackend::new(64, 5);
        let slots = SlotTable::new(1);
        // 12 + 3 + 3 + 1 = 19 objects in 9 pages; a 5-page and a 1-page zspage hold them.
        let mut class = class_with_objects(&b, &slots, &[5, 1, 1, 2], &[12, 3, 3, 1]);
        let plan = class.mergeable().expect("three pages to save");
        assert_eq!(
            plan.keep,
            [0, 1],
            "the 5-page zspage and the first full 1-page one stay"
        );
        assert_eq!(plan.sources, [2, 3]);
        assert_eq!(plan.lengths, Vec::<usize>::new(), "no new zspage");
        let live: Vec<u32> = (0..19).collect();
        let before = check_objects(&class, &b, &slots, &live);
        let held = b.frames_in_use();
        assert_eq!(class.merge(&b, &slots, &plan, Vec::new()), (3, 0, 4));
        assert_eq!((class.pages, class.objs_inuse), (6, 19));
        assert_eq!(b.frames_in_use(), held - 3);
        let after = check_objects(&class, &b, &slots, &live);
        assert_eq!(
            after[..15],
            before[..15],
            "the kept zspages' objects stayed"
        );
        assert_eq!(class.mergeable(), None);
    }
}
