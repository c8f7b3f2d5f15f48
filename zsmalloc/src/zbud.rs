//! zbud, the baseline zsmalloc is measured against (Linux's `mm/zbud.c`, removed in 6.15): at
//! most two objects per page, the first buddy at the page's start, the last at its end, sizes
//! rounded up to 64-byte chunks with the first chunk reserved for the page header. Allocation
//! takes a page holding one buddy with enough free chunks (the "unbuddied" lists, indexed by
//! free chunks, smallest fit first), else a new page. Simple and predictable; it can never
//! pack more than two objects per page, which is what the density comparison shows.
//!
//! zbud refuses objects above 4096 - 2 × 64 bytes. To compare the same objects, this baseline
//! gives such an object a page of its own instead (what zsmalloc's huge classes do).

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use spin::Mutex;

use crate::backend::{Backend, Pfn};
use crate::class::PAGE_SIZE;

/// Bytes per chunk.
pub const CHUNK_SIZE: usize = 64;
/// Chunks per page.
const NCHUNKS: usize = PAGE_SIZE / CHUNK_SIZE;
/// Chunks reserved for the page header.
const HEADER_CHUNKS: usize = 1;
/// Largest object zbud itself stores (Linux: `PAGE_SIZE - ZHDR_SIZE_ALIGNED - CHUNK_SIZE`).
pub const MAX_BUDDY_SIZE: usize = PAGE_SIZE - HEADER_CHUNKS * CHUNK_SIZE - CHUNK_SIZE;

/// A zbud object: its page slot and which buddy it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZbudHandle {
    page: u32,
    side: Side,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    First,
    Last,
    Whole,
}

#[derive(Debug, Clone, Copy)]
struct ZbudPage {
    pfn: Pfn,
    /// Chunks of the first buddy (0: free).
    first: usize,
    /// Chunks of the last buddy (0: free).
    last: usize,
    whole: bool,
}

impl ZbudPage {
    fn free_chunks(&self) -> usize {
        NCHUNKS - HEADER_CHUNKS - self.first - self.last
    }
}

struct State {
    pages: Vec<Option<ZbudPage>>,
    free_ids: Vec<u32>,
    /// Pages with exactly one buddy, by free chunks.
    unbuddied: [BTreeSet<u32>; NCHUNKS],
    live_pages: usize,
}

/// A zbud pool over a zsmalloc backend's frames.
pub struct Zbud<B: Backend> {
    backend: B,
    state: Mutex<State>,
}

fn chunks(size: usize) -> usize {
    size.div_ceil(CHUNK_SIZE)
}

impl<B: Backend> Zbud<B> {
    /// An empty pool.
    pub fn new(backend: B) -> Zbud<B> {
        Zbud {
            backend,
            state: Mutex::new(State {
                pages: Vec::new(),
                free_ids: Vec::new(),
                unbuddied: core::array::from_fn(|_| BTreeSet::new()),
                live_pages: 0,
            }),
        }
    }

    /// Pages held.
    pub fn pages(&self) -> usize {
        self.state.lock().live_pages
    }

    /// Allocates `size` bytes (1..=4096); `None` if the backend has no frame.
    pub fn alloc(&self, size: usize) -> Option<ZbudHandle> {
        assert!((1..=PAGE_SIZE).contains(&size), "zbud object size {size}");
        let mut guard = self.state.lock();
        let s = &mut *guard;
        if size > MAX_BUDDY_SIZE {
            let page = self.new_page(s)?;
            let p = s.pages[page as usize].as_mut().expect("just made");
            p.whole = true;
            return Some(ZbudHandle {
                page,
                side: Side::Whole,
            });
        }
        let need = chunks(size);
        let found = (need..NCHUNKS).find_map(|free| s.unbuddied[free].first().copied());
        let page = match found {
            Some(page) => {
                let free = s.pages[page as usize]
                    .expect("listed pages live")
                    .free_chunks();
                s.unbuddied[free].remove(&page);
                page
            }
            None => self.new_page(s)?,
        };
        let p = s.pages[page as usize].as_mut().expect("live");
        let side = if p.first == 0 {
            p.first = need;
            Side::First
        } else {
            p.last = need;
            Side::Last
        };
        if p.first == 0 || p.last == 0 {
            let free = p.free_chunks();
            s.unbuddied[free].insert(page);
        }
        Some(ZbudHandle { page, side })
    }

    fn new_page(&self, s: &mut State) -> Option<u32> {
        let pfn = self.backend.alloc_page()?;
        let page = ZbudPage {
            pfn,
            first: 0,
            last: 0,
            whole: false,
        };
        s.live_pages += 1;
        Some(match s.free_ids.pop() {
            Some(id) => {
                s.pages[id as usize] = Some(page);
                id
            }
            None => {
                s.pages.push(Some(page));
                (s.pages.len() - 1) as u32
            }
        })
    }

    /// Frees an object; its page goes back when both buddies are free.
    pub fn free(&self, h: ZbudHandle) {
        let mut guard = self.state.lock();
        let s = &mut *guard;
        let mut p = s.pages[h.page as usize].expect("a live zbud handle");
        if p.first != 0 && p.last != 0 {
            // Buddied until now: not on a list.
        } else if !p.whole {
            let free = p.free_chunks();
            s.unbuddied[free].remove(&h.page);
        }
        match h.side {
            Side::First => p.first = 0,
            Side::Last => p.last = 0,
            Side::Whole => p.whole = false,
        }
        if p.first == 0 && p.last == 0 {
            s.pages[h.page as usize] = None;
            s.free_ids.push(h.page);
            s.live_pages -= 1;
            // SAFETY: the page held only this pool's objects, all of them now freed.
            unsafe { self.backend.free_page(p.pfn) };
        } else {
            s.pages[h.page as usize] = Some(p);
            let free = p.free_chunks();
            s.unbuddied[free].insert(h.page);
        }
    }

    /// Where an object's bytes start (for writing and checking them).
    pub fn ptr(&self, h: ZbudHandle) -> *mut u8 {
        let s = self.state.lock();
        let p = s.pages[h.page as usize].expect("a live zbud handle");
        let offset = match h.side {
            Side::Whole => 0,
            Side::First => HEADER_CHUNKS * CHUNK_SIZE,
            Side::Last => PAGE_SIZE - p.last * CHUNK_SIZE,
        };
        self.backend.page_ptr(p.pfn).wrapping_add(offset)
    }
}

impl<B: Backend> Drop for Zbud<B> {
    fn drop(&mut self) {
        let s = self.state.get_mut();
        for p in s.pages.iter().flatten() {
            // SAFETY: the pool is going away and nothing can reach its pages any more.
            unsafe { self.backend.free_page(p.pfn) };
        }
    }
}
