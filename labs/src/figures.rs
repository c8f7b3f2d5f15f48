//! The handouts' figures, drawn from the code's own figures (the real class table, the
//! handle's bit widths), so that they cannot go stale: a handout holds each between
//! `<!-- figure: NAME -->` and `<!-- end of figure -->`, and a host test redraws every one
//! and compares (`cargo lab figures` writes them back after a change).

use std::fmt::Write as _;

use zsmalloc::class::{ClassTable, HANDLE_SIZE, PAGE_SIZE, chain_length};
use zsmalloc::handle::{GEN_MASK, MAX_SLOT, MAX_TAG};

/// The figures a handout may hold, by name.
pub const NAMES: &[&str] = &[
    "buddy-split",
    "window",
    "chain-choice",
    "zspage-layout",
    "handle-bits",
    "compaction-move",
];

/// The figure named `name`, drawn now; `None` for an unknown name.
pub fn draw(name: &str) -> Option<String> {
    Some(match name {
        "buddy-split" => buddy_split(),
        "window" => window(),
        "chain-choice" => chain_choice(1568),
        "zspage-layout" => zspage_layout(1632),
        "handle-bits" => handle_bits(),
        "compaction-move" => compaction_move(1632, &[4, 3, 1]),
        _ => return None,
    })
}

/// An order-3 block at pfn 8 split for an order-0 request: what goes back on which list,
/// and how freeing the frame merges it back.
fn buddy_split() -> String {
    let mut out =
        String::from("alloc(order 0): the smallest non-empty list is order 3, block [8..16)\n\n");
    let (lo, mut order) = (8u32, 3u32);
    while order > 0 {
        order -= 1;
        let half = 1u32 << order;
        let _ = writeln!(
            out,
            "  split [{lo}..{}): keep [{lo}..{}), [{}..{}) goes on list {order}",
            lo + 2 * half,
            lo + half,
            lo + half,
            lo + 2 * half
        );
    }
    let _ = writeln!(out, "  hand out frame {lo}");
    out.push_str("\nfree(frame 8): its buddy is 8 ^ 1 = 9, free at order 0: merge to [8..10)\n");
    let (mut block, mut order) = (8u32, 1u32);
    while order < 3 {
        let buddy = block ^ (1 << order);
        let _ = writeln!(
            out,
            "  buddy of [{block}..{}) is [{buddy}..{}), free at order {order}: merge to [{}..{})",
            block + (1 << order),
            buddy + (1 << order),
            block.min(buddy),
            block.min(buddy) + (2 << order)
        );
        block = block.min(buddy);
        order += 1;
    }
    let _ = writeln!(
        out,
        "  [8..16) is whole again, on list 3 (its buddy decides what comes next)"
    );
    out
}

/// The per-CPU window: its four pages and what the two PTEs point at.
fn window() -> String {
    "virtual (this CPU's slot)       its leaf PTEs                        physical\n\
     +---------+\n\
     | guard   |  never mapped\n\
     +---------+\n\
     | page 0  |  PTE 0 = frame A | PRESENT | NX [| WRITABLE]  ---->  frame A (any pfn)\n\
     +---------+\n\
     | page 1  |  PTE 1 = frame B | PRESENT | NX [| WRITABLE]  ---->  frame B (any pfn)\n\
     +---------+\n\
     | guard   |  never mapped\n\
     +---------+\n\
     \n\
     map:   write PTE 0 and PTE 1\n\
     unmap: clear both, then invlpg page 0 and page 1 (on this CPU)\n"
        .to_string()
}

/// The waste at the end of a zspage of `size`-byte slots for every chain length up to 8, and
/// the length the class table picked at chains 4 and 8.
fn chain_choice(size: usize) -> String {
    let mut out = format!(
        "class of {size}-byte slots: bytes left at the end of a zspage of p pages\n\n\
         pages  bytes  objects  waste\n"
    );
    for pages in 1..=8 {
        let bytes = pages * PAGE_SIZE;
        let _ = writeln!(
            out,
            "{pages:>5}  {bytes:>5}  {:>7}  {:>5}",
            bytes / size,
            bytes % size
        );
    }
    for chain in [4, 8] {
        let t = ClassTable::new(chain);
        let logical = (size - 32) / 16;
        let served = &t.classes[t.alias[logical] as usize];
        let _ = writeln!(
            out,
            "\nchain {chain}: {size}-byte objects get {} page(s) of their own length; the table \
             serves them in the class of {}-byte slots ({} pages, {} objects)",
            chain_length(size, chain),
            served.size,
            served.pages_per_zspage,
            served.objs_per_zspage
        );
    }
    out
}

/// The zspage of the class of `size`-byte slots at chain 8: pages, objects, the spanning
/// object and each page's first object.
fn zspage_layout(size: usize) -> String {
    let t = ClassTable::new(8);
    let c = &t.classes[t.alias[(size - 32) / 16] as usize];
    let mut out = format!(
        "class of {}-byte slots, chain 8: {} pages, {} objects, {} bytes wasted at the end\n\n",
        c.size,
        c.pages_per_zspage,
        c.objs_per_zspage,
        c.waste_per_zspage()
    );
    for k in 0..c.objs_per_zspage {
        let start = k * c.size;
        let end = start + c.size;
        let (p0, p1) = (start / PAGE_SIZE, (end - 1) / PAGE_SIZE);
        let place = if p0 == p1 {
            format!(
                "page {p0}, bytes {}..{}",
                start % PAGE_SIZE,
                end - p0 * PAGE_SIZE
            )
        } else {
            format!(
                "page {p0} from byte {} to page {p1} byte {}: spans two pages",
                start % PAGE_SIZE,
                end - p1 * PAGE_SIZE
            )
        };
        let _ = writeln!(
            out,
            "object {k}: [header {HANDLE_SIZE} B | {} user bytes]  {place}",
            c.size - HANDLE_SIZE
        );
    }
    out.push('\n');
    for page in 0..c.pages_per_zspage {
        let first = (0..c.objs_per_zspage)
            .map(|k| k * c.size)
            .find(|&s| s >= page * PAGE_SIZE)
            .map(|s| s - page * PAGE_SIZE);
        let _ = writeln!(
            out,
            "page {page}: first_obj_offset = {}",
            first.map_or("(none)".into(), |f| f.to_string())
        );
    }
    out.push_str(
        "\nfree objects hold a link (next free index, bit 0 clear) in their first word;\n\
         allocated ones a header (their slot, bit 0 set).\n",
    );
    out
}

/// The handle's 64 bits, widths from the code's own constants.
fn handle_bits() -> String {
    let widths = [
        ("pool tag", MAX_TAG.count_ones()),
        ("class", 8),
        ("generation", GEN_MASK.count_ones()),
        ("slot", MAX_SLOT.count_ones()),
    ];
    let mut top = 64;
    let mut out = String::from("handle (64 bits):\n\n");
    let mut line = String::from("|");
    let mut ranges = String::new();
    for (name, bits) in widths {
        let _ = write!(line, " {name} ({bits}) |");
        let _ = writeln!(ranges, "  bits {:>2}..{:>2}  {name}", top - bits, top - 1);
        top -= bits;
    }
    let _ = writeln!(out, "{line}\n\n{ranges}");
    out.push_str(
        "The slot holds the object's location (page and index) and its state (live,\n\
         generation, class, size, mappings); compaction rewrites the slot, never the handle.\n",
    );
    out
}

/// Compaction of one class, drawn: zspages of `size`-byte slots holding `inuse` objects
/// each; the emptiest drains into the fullest with room until no zspage could be freed.
fn compaction_move(size: usize, inuse: &[usize]) -> String {
    let t = ClassTable::new(8);
    let c = &t.classes[t.alias[(size - 32) / 16] as usize];
    let objs = c.objs_per_zspage;
    let row = |name: char, n: usize| {
        let cells: String = (0..objs).map(|k| if k < n { '#' } else { '.' }).collect();
        format!("  zspage {name} [{cells}] {n}/{objs}")
    };
    let names: Vec<char> = ('A'..='Z').take(inuse.len()).collect();
    let mut counts: Vec<usize> = inuse.to_vec();
    let mut out = format!(
        "class of {}-byte slots: {objs} objects in {} pages ('#' in use, '.' free)\n\nbefore:\n",
        c.size, c.pages_per_zspage
    );
    for (i, &n) in counts.iter().enumerate() {
        let _ = writeln!(out, "{}", row(names[i], n));
    }
    out.push('\n');
    let mut freed = 0;
    loop {
        let free_slots: usize = counts.iter().filter(|&&n| n > 0).map(|&n| objs - n).sum();
        if free_slots < objs {
            break; // no zspage could be freed
        }
        let partly = |n: usize| n > 0 && n < objs;
        let Some(dst) = (0..counts.len())
            .filter(|&i| partly(counts[i]))
            .max_by_key(|&i| (counts[i], usize::MAX - i))
        else {
            break;
        };
        let Some(src) = (0..counts.len())
            .filter(|&i| i != dst && partly(counts[i]))
            .min_by_key(|&i| (counts[i], i))
        else {
            break;
        };
        let moved = counts[src].min(objs - counts[dst]);
        counts[src] -= moved;
        counts[dst] += moved;
        let _ = write!(
            out,
            "move {moved} object(s): {} (the emptiest) -> {} (the fullest with room)",
            names[src], names[dst]
        );
        if counts[src] == 0 {
            freed += c.pages_per_zspage;
            let _ = write!(out, "; {} is empty: its pages are freed", names[src]);
        }
        out.push('\n');
    }
    out.push_str("\nafter:\n");
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 {
            let _ = writeln!(out, "{}", row(names[i], n));
        } else {
            let _ = writeln!(out, "  zspage {} freed", names[i]);
        }
    }
    let _ = writeln!(
        out,
        "\n{freed} pages freed; every moved object's slot names its new place, so every handle\nstill finds its object."
    );
    out
}

/// Every figure block of a handout's text: (name, first line of its body, its body).
pub fn blocks(text: &str) -> Vec<(String, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(name) = lines[i]
            .trim()
            .strip_prefix("<!-- figure: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            let start = i + 1;
            let mut j = start;
            while j < lines.len() && lines[j].trim() != "<!-- end of figure -->" {
                j += 1;
            }
            out.push((name.to_string(), start, lines[start..j].join("\n")));
            i = j;
        }
        i += 1;
    }
    out
}

/// A figure as a handout holds it: in a text code block.
pub fn fenced(figure: &str) -> String {
    format!("```text\n{}```", figure)
}

/// `text` with every figure block redrawn (unchanged if a block has no end marker).
pub fn redraw(text: &str) -> String {
    let starts = text
        .lines()
        .filter(|l| l.trim().starts_with("<!-- figure: "))
        .count();
    let ends = text
        .lines()
        .filter(|l| l.trim() == "<!-- end of figure -->")
        .count();
    if starts != ends {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim();
        if skipping {
            if t == "<!-- end of figure -->" {
                skipping = false;
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if let Some(name) = t
            .strip_prefix("<!-- figure: ")
            .and_then(|r| r.strip_suffix(" -->"))
            && let Some(figure) = draw(name)
        {
            out.push_str(&fenced(&figure));
            out.push('\n');
            skipping = true;
        }
    }
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}
