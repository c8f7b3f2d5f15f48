//! The pool's invariants, checked from scratch: what the model checker and the tests call
//! after every step.

use alloc::string::String;
use alloc::vec::Vec;

use super::Pool;
use crate::backend::Backend;
use crate::class::{HANDLE_SIZE, PAGE_SIZE};
use crate::handle;
use crate::zsdesc;

impl<B: Backend> Pool<B> {
    /// Checks every invariant of the pool's structures and returns the first broken one: object
    /// counts, fullness placement, freelists, headers, slots, page ownership, page totals.
    pub fn check_invariants(&self) -> Result<(), String> {
        use alloc::format;
        let _migrate = self.read_migrate();
        // Each live object under the class its page says it is in, with whether it is lent
        // that class's slot (its own class, which its handle and slot name, is smaller).
        let mut live: Vec<Vec<(u32, u64, Option<u8>)>> =
            (0..self.classes.len()).map(|_| Vec::new()).collect();
        for (i, slot) in self.slots.iter() {
            let st = slot.state();
            if st.live {
                let size = st.size as usize;
                if size == 0 || st.class as usize != self.table.class_for(size) {
                    return Err(format!(
                        "slot {i}: class {} is not the own class of {size} bytes",
                        st.class
                    ));
                }
                let (pfn, _) = handle::decode_obj(slot.obj());
                let at = self
                    .backend
                    .owner_of_any(pfn)
                    .filter(|o| (o.class as usize) < self.classes.len())
                    .ok_or_else(|| format!("slot {i}: object page {pfn:#x} is no zspage's"))?;
                let layout = &self.table.classes[at.class as usize];
                let needed = size + if layout.huge { 0 } else { HANDLE_SIZE };
                if at.class < st.class || needed > layout.size {
                    return Err(format!(
                        "slot {i}: an object of {size} bytes in class {} (slots of {} bytes), \
                         its own class {}",
                        at.class, layout.size, st.class
                    ));
                }
                let lent = (at.class != st.class).then_some(st.class);
                live[at.class as usize].push((i, slot.obj(), lent));
            }
        }
        let mut total_pages = 0;
        for (pos, live) in live.iter().enumerate() {
            let c = self.lock_class(pos);
            let (mut inuse_sum, mut objs_sum, mut pages_sum, mut short) = (0u64, 0u64, 0u64, 0u64);
            for id in c.live_zspages() {
                let z = c.zspage(id);
                let objs = z.objs;
                if !c.may_chain(z.pages as usize) || objs as usize != c.capacity(z.pages as usize) {
                    return Err(format!(
                        "class {pos} zspage {id}: {} pages holding {objs} objects",
                        z.pages
                    ));
                }
                objs_sum += objs as u64;
                pages_sum += z.pages as u64;
                short += u64::from((z.pages as usize) < c.layout.pages_per_zspage);
                inuse_sum += z.inuse as u64;
                let group = crate::zspage::fullness_group(z.inuse, objs);
                if group != z.group as usize || !c.group_members(group).any(|m| m == id) {
                    return Err(format!(
                        "class {pos} zspage {id}: inuse {} but listed in group {}",
                        z.inuse, z.group
                    ));
                }
                if group == crate::zspage::GROUP_EMPTY {
                    return Err(format!("class {pos} zspage {id}: empty zspage kept"));
                }
                let free = c.freelist(&self.backend, id);
                if free.len() as u32 != objs - z.inuse {
                    return Err(format!(
                        "class {pos} zspage {id}: freelist has {} of {} free objects",
                        free.len(),
                        objs - z.inuse
                    ));
                }
                let mut pfn = Some(z.first);
                for n in 0..z.pages as usize {
                    let p = pfn.ok_or_else(|| {
                        format!("class {pos} zspage {id}: chain ends at page {n}")
                    })?;
                    let d = self.backend.desc(p);
                    if zsdesc::first_page(d) != z.first {
                        return Err(format!(
                            "class {pos} zspage {id}: page {n} ({p:#x}) names another first page"
                        ));
                    }
                    if zsdesc::movable_ops(d) != self.backend.movable_ops()
                        || zsdesc::is_movable(d) != (self.backend.movable_ops() != 0)
                    {
                        return Err(format!(
                            "class {pos} zspage {id}: page {n} ({p:#x}) has the wrong movable mark"
                        ));
                    }
                    if zsdesc::owner(d)
                        != Some(zsdesc::ZsPageRef {
                            class: pos as u8,
                            id,
                        })
                        || zsdesc::is_first(d) != (n == 0)
                    {
                        return Err(format!(
                            "class {pos} zspage {id}: page {n} ({p:#x}) has the wrong zsdesc"
                        ));
                    }
                    // The first object that starts in the page: its start is a multiple of
                    // the size, in this page, and less than one object into it.
                    let first_obj = zsdesc::first_obj_offset(d) as usize;
                    let starts_in_page = first_obj < c.layout.size.min(PAGE_SIZE)
                        && (n * PAGE_SIZE + first_obj).is_multiple_of(c.layout.size);
                    if !starts_in_page {
                        return Err(format!(
                            "class {pos} zspage {id}: page {n} has first_obj_offset {}",
                            zsdesc::first_obj_offset(d)
                        ));
                    }
                    pfn = if c.layout.huge { None } else { zsdesc::next(d) };
                }
                if pfn.is_some() {
                    return Err(format!(
                        "class {pos} zspage {id}: chain longer than {} pages",
                        z.pages
                    ));
                }
                total_pages += z.pages as usize;
            }
            if objs_sum != c.objs_allocated
                || inuse_sum != c.objs_inuse
                || pages_sum != c.pages
                || short != c.short_zspages
            {
                return Err(format!("class {pos}: counters disagree with its zspages"));
            }
            let free = c.objs_allocated - c.objs_inuse;
            let published = self.free_slots[pos].load(core::sync::atomic::Ordering::Relaxed);
            let room_bit = self.room[pos / 64].load(core::sync::atomic::Ordering::Relaxed)
                & (1u64 << (pos % 64))
                != 0;
            if published != free
                || (self.placement != crate::Placement::Linux && room_bit != (free > 0))
            {
                return Err(format!(
                    "class {pos}: {free} free slots, {published} published for placement (room bit {room_bit})"
                ));
            }
            let (mut live_slots, mut lent) = (0, 0);
            for &(i, obj, home) in live {
                live_slots += 1;
                if let Some(home) = home.map(usize::from) {
                    lent += 1;
                    if !c.lends_to(home) {
                        return Err(format!(
                            "class {pos} slot {i}: lent by class {home}, which it does not list"
                        ));
                    }
                }
                let (pfn, idx) = handle::decode_obj(obj);
                let owner = zsdesc::owner(self.backend.desc(pfn));
                if owner.map(|o| o.class as usize) != Some(pos) {
                    return Err(format!(
                        "class {pos} slot {i}: object page {pfn:#x} is not this class's"
                    ));
                }
                if c.header_slot(&self.backend, pfn, idx) != Some(i) {
                    return Err(format!(
                        "class {pos} slot {i}: object header names another slot"
                    ));
                }
            }
            if lent != c.lent {
                return Err(format!(
                    "class {pos}: {lent} objects lent its slots, {} counted",
                    c.lent
                ));
            }
            if live_slots != c.objs_inuse {
                return Err(format!(
                    "class {pos}: {live_slots} live slots for {} objects",
                    c.objs_inuse
                ));
            }
        }
        if total_pages != self.total_pages() {
            return Err(format!(
                "pool: {total_pages} pages in zspages, {} counted",
                self.total_pages()
            ));
        }
        Ok(())
    }
}
