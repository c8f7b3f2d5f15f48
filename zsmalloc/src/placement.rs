//! Placement: which size class a new object goes to.
//!
//! Linux always puts an object in the smallest class whose slots fit it (its *own* class).
//! When that class has no free slot, a whole new zspage (up to 8 pages) is allocated for it,
//! even if a slightly larger class has free slots in zspages it already holds. With many
//! classes and few objects in each, those half-empty zspages are most of the pool's memory.
//!
//! A pool asks its [`Placement`] for every allocation. The rule sees a [`ClassView`]: the
//! class table and each class's free slots *now* (a hint read without the class's lock: the
//! pool checks the chosen class again under its lock and falls back to the own class if the
//! room is gone). Whatever the rule answers, the pool only ever accepts a class whose slots
//! fit the object; anything else is a bug in the rule and panics, naming both.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::class::{ClassTable, HANDLE_SIZE};

/// How a pool chooses the class of a new object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// Linux's rule: always the object's own class (the reference; the default).
    #[default]
    Linux,
    /// zsos's rule ([`fitted`]): a small class without room borrows a free slot of a
    /// close-fitting larger class instead of allocating a zspage that would stay mostly empty.
    Fitted,
}

impl Placement {
    /// The class position for a new object of `size` user bytes.
    pub fn choose(self, size: usize, view: &ClassView) -> usize {
        match self {
            Placement::Linux => view.own_class(size),
            Placement::Fitted => fitted(size, view),
        }
    }

    /// The rule's name, as replay and bench print it.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Linux => "linux",
            Placement::Fitted => "fitted",
        }
    }
}

/// What a placement rule may look at: the pool's classes and their free slots.
pub struct ClassView<'a> {
    table: &'a ClassTable,
    free_slots: &'a [AtomicU64],
    demand: &'a [AtomicU64],
    /// Bit `pos` set while class `pos` has a free slot (a hint kept by the pool), if given.
    room: Option<&'a [AtomicU64]>,
}

impl<'a> ClassView<'a> {
    /// A view of `table` with `free_slots[pos]` free slots in class `pos` and `demand[pos]`
    /// live objects whose own class is `pos`.
    pub fn new(
        table: &'a ClassTable,
        free_slots: &'a [AtomicU64],
        demand: &'a [AtomicU64],
    ) -> ClassView<'a> {
        debug_assert_eq!(table.classes.len(), free_slots.len());
        debug_assert_eq!(table.classes.len(), demand.len());
        ClassView {
            table,
            free_slots,
            demand,
            room: None,
        }
    }

    /// The same view, with a bitmap of the classes that have room (bit `pos` of word
    /// `pos / 64`) for [`ClassView::next_with_room`] to search instead of every class.
    pub(crate) fn with_room_map(self, room: &'a [AtomicU64]) -> ClassView<'a> {
        ClassView {
            room: Some(room),
            ..self
        }
    }

    /// Number of classes; positions are `0..classes()`, smallest slots first.
    pub fn classes(&self) -> usize {
        self.table.classes.len()
    }

    /// Position of the smallest class whose slots fit an object of `size` user bytes
    /// (Linux's choice).
    pub fn own_class(&self, size: usize) -> usize {
        self.table.class_for(size)
    }

    /// Bytes of one slot of class `pos` (header included for a normal class; a huge class's
    /// object has no header and its slot is a whole page).
    pub fn slot_size(&self, pos: usize) -> usize {
        self.table.classes[pos].size
    }

    /// Bytes a slot of class `pos` must have for an object of `size` user bytes: the header
    /// is added, except in a huge class.
    pub fn needed(&self, size: usize, pos: usize) -> usize {
        if self.table.classes[pos].huge {
            size
        } else {
            size + HANDLE_SIZE
        }
    }

    /// True if class `pos`'s slots hold an object of `size` user bytes.
    pub fn fits(&self, size: usize, pos: usize) -> bool {
        pos < self.classes() && self.needed(size, pos) <= self.slot_size(pos)
    }

    /// True if class `pos` is huge (one object per page).
    pub fn is_huge(&self, pos: usize) -> bool {
        self.table.classes[pos].huge
    }

    /// Free slots in the zspages class `pos` holds now (a hint: it may change before the
    /// class is locked).
    pub fn free_slots(&self, pos: usize) -> u64 {
        self.free_slots[pos].load(Ordering::Relaxed)
    }

    /// The first class at or after position `from` with a free slot now (a hint, as
    /// [`ClassView::free_slots`]).
    pub fn next_with_room(&self, from: usize) -> Option<usize> {
        let Some(room) = self.room else {
            return (from..self.classes()).find(|&pos| self.free_slots(pos) > 0);
        };
        let mut word = from / 64;
        // The bits of the first word below `from` are masked off.
        let mut bits = room.get(word)?.load(Ordering::Relaxed) & (!0u64 << (from % 64));
        loop {
            if bits != 0 {
                let pos = word * 64 + bits.trailing_zeros() as usize;
                return (pos < self.classes()).then_some(pos);
            }
            word += 1;
            bits = room.get(word)?.load(Ordering::Relaxed);
        }
    }

    /// Live objects whose own class is `pos`, wherever they were placed (a hint, as
    /// [`ClassView::free_slots`]; counted only under a rule other than Linux's).
    pub fn demand(&self, pos: usize) -> u64 {
        self.demand[pos].load(Ordering::Relaxed)
    }

    /// Objects one zspage of class `pos` holds.
    pub fn objs_per_zspage(&self, pos: usize) -> usize {
        self.table.classes[pos].objs_per_zspage
    }

    /// Pages one zspage of class `pos` chains.
    pub fn pages_per_zspage(&self, pos: usize) -> usize {
        self.table.classes[pos].pages_per_zspage
    }
}

// LAB 7: BEGIN your rule's constants and helpers
/// The largest share of a borrowed slot an object may leave unused, as a fraction of the
/// slot: a quarter. Borrowing fills room already paid for, but the bytes an object leaves
/// unused in its slot are lost until it is freed, so only a close enough fit is worth it.
pub const FITTED_WASTE_DIVISOR: usize = 4;
// LAB 7: STUB
// LAB 7: END

/// zsos's placement rule ([`Placement::Fitted`]; lab 7's challenge,
/// `docs/labs/lab7-placement.md`), judged against Linux's rule on the trace families of
/// [`crate::families`].
// LAB 7: BEGIN how the reference rule chooses
///
/// A class that has a free slot, or whose sizes have at least a zspage's worth of live
/// objects (a new zspage of it will fill), keeps its objects. A small class without room
/// borrows a free slot of the closest larger normal class whose slot the object fills to
/// within [`FITTED_WASTE_DIVISOR`], rather than allocate a zspage that would stay mostly
/// empty.
// LAB 7: END
pub fn fitted(size: usize, view: &ClassView) -> usize {
    // LAB 7: BEGIN choose the class a new object of `size` bytes goes to, so that the pool needs fewer pages than with Linux's rule
    let own = view.own_class(size);
    if view.free_slots(own) > 0 || view.demand(own) >= view.objs_per_zspage(own) as u64 {
        return own;
    }
    // Slots grow with the position: the first larger class with room fits closest, and if
    // it is too loose (or huge) so is every later one.
    match view.next_with_room(own + 1) {
        Some(pos)
            if !view.is_huge(pos)
                && (view.slot_size(pos) - view.needed(size, pos)) * FITTED_WASTE_DIVISOR
                    <= view.slot_size(pos) =>
        {
            pos
        }
        _ => own,
    }
    // LAB 7: STUB
    // let _ = (size, view);
    // todo!("lab 7: choose a class for a new object (zsmalloc/src/placement.rs, fitted)")
    // LAB 7: END
}
