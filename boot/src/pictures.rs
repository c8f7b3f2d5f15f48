//! Pictures of the allocator from the running kernel: a pool snapshot (`SNAP` lines,
//! `zsmalloc::snapshot`) drawn as an SVG, every class in use as a row (wrapping when long),
//! each zspage as its pages side by side with its object slots in place: allocated slots
//! filled, free ones pale, a mark where a slot crosses from one page into the next, the
//! zspage's outline coloured by its fullness group, the class's size, chain and object
//! counts in the margin.
//!
//! And a frame census (`MEMMAP` lines, `zsmalloc::frame_map`) drawn as every physical frame
//! a cell, [`FRAMES_PER_ROW`] to a row, coloured by its owner ([`draw_memmap`]).

use std::io;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use zsmalloc::frame_map::{FrameMap, FrameOwner};
use zsmalloc::snapshot::{ClassSnapshot, Snapshot};

/// Pixels one page is wide.
pub const PAGE_PX: f64 = 96.0;
/// Pixels one zspage row is high.
pub const ROW_PX: i32 = 24;
/// Where the zspages of a row start (the margin holds the class's label).
pub const LEFT_PX: i32 = 270;
/// The picture's width; a class's zspages wrap onto another row beyond it.
pub const WIDTH_PX: i32 = 1600;
/// Space between zspages, and between rows.
const GAP_PX: i32 = 8;

/// An allocated object slot.
pub const ALLOCATED: RGBColor = RGBColor(0x2f, 0x6f, 0xc4);
/// A free object slot.
pub const FREE: RGBColor = RGBColor(0xe8, 0xe8, 0xe8);
/// Where a slot crosses from one page into the next.
pub const CROSSING: RGBColor = RGBColor(0xd6, 0x33, 0x2b);
/// Page boundaries inside a zspage.
const PAGE_EDGE: RGBColor = RGBColor(0x60, 0x60, 0x60);

/// The outline of a zspage in fullness group `group` (0 empty .. 11 full): pale to dark.
pub fn group_colour(group: u8) -> RGBColor {
    let g = group.min(11) as u32;
    let shade = |light: u32, dark: u32| (light - (light - dark) * g / 11) as u8;
    RGBColor(shade(0xc8, 0x1b), shade(0xe6, 0x5e), shade(0xc9, 0x20))
}

/// Where one object slot is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedSlot {
    /// Class position.
    pub class_pos: usize,
    /// The zspage's id.
    pub zspage: u32,
    /// Slot number in the zspage.
    pub slot: usize,
    /// Left edge, in pixels.
    pub x: f64,
    /// Width in pixels.
    pub w: f64,
    /// Top of its row.
    pub y: i32,
    /// Allocated or free.
    pub allocated: bool,
    /// Pixel x of each page boundary the slot crosses.
    pub crossings: Vec<f64>,
}

/// Where one zspage is drawn: its outline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacedZspage {
    /// Class position.
    pub class_pos: usize,
    /// The zspage's id.
    pub zspage: u32,
    /// Left edge, top, width in pixels.
    pub x: i32,
    /// Top of its row.
    pub y: i32,
    /// Width: its pages times [`PAGE_PX`].
    pub w: i32,
    /// Fullness group.
    pub group: u8,
}

/// The whole picture's layout: rows of zspages with their slots, and each class's label.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Every zspage's outline.
    pub zspages: Vec<PlacedZspage>,
    /// Every slot.
    pub slots: Vec<PlacedSlot>,
    /// Each class's label and the top of its first row.
    pub labels: Vec<(String, i32)>,
    /// The picture's width (what the rows use, at least 800 pixels) and height.
    pub width: i32,
    /// The picture's height.
    pub height: i32,
}

fn label(c: &ClassSnapshot) -> String {
    let slots: usize = c.zspages.iter().map(|z| z.allocated.len()).sum();
    let used: usize = c
        .zspages
        .iter()
        .map(|z| z.allocated.iter().filter(|&&a| a).count())
        .sum();
    format!(
        "class {}: {} B{}, chain {}, {used}/{slots} objects",
        c.index,
        c.size,
        if c.huge { " (huge)" } else { "" },
        c.chain
    )
}

/// Lays the snapshot out: a header row, then each class's zspages left to right from
/// [`LEFT_PX`], wrapping at [`WIDTH_PX`].
pub fn layout(snap: &Snapshot) -> Layout {
    let mut out = Layout::default();
    let mut y = 40;
    for c in &snap.classes {
        out.labels.push((label(c), y));
        let mut x = LEFT_PX;
        for z in &c.zspages {
            let w = (z.pages as f64 * PAGE_PX) as i32;
            if x + w > WIDTH_PX && x > LEFT_PX {
                x = LEFT_PX;
                y += ROW_PX + GAP_PX;
            }
            out.zspages.push(PlacedZspage {
                class_pos: c.pos,
                zspage: z.id,
                x,
                y,
                w,
                group: z.group,
            });
            let px = |bytes: usize| x as f64 + bytes as f64 * PAGE_PX / 4096.0;
            for (slot, &allocated) in z.allocated.iter().enumerate() {
                let (start, end) = z.object_bytes(c.size, c.huge, slot);
                let crossings = (start / 4096 + 1..)
                    .take_while(|p| p * 4096 < end)
                    .map(|p| px(p * 4096))
                    .collect();
                out.slots.push(PlacedSlot {
                    class_pos: c.pos,
                    zspage: z.id,
                    slot,
                    x: px(start),
                    w: px(end) - px(start),
                    y,
                    allocated,
                    crossings,
                });
            }
            x += w + GAP_PX;
        }
        y += ROW_PX + 2 * GAP_PX;
    }
    out.height = y + GAP_PX;
    out.width = out
        .zspages
        .iter()
        .map(|z| z.x + z.w + GAP_PX)
        .max()
        .unwrap_or(0)
        .max(800);
    out
}

/// Black text, its left edge at `x`, centred on `y`.
fn black_text(s: &str, x: i32, y: i32, size: u32) -> Text<'static, (i32, i32), String> {
    Text::new(
        s.to_string(),
        (x, y),
        ("sans-serif", size)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center)),
    )
}

fn drawing_error<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> io::Error + '_ {
    move |e| io::Error::other(format!("drawing {}: {e}", path.display()))
}

/// Draws the snapshot into an SVG file at `path`.
pub fn draw_pool(snap: &Snapshot, path: &Path) -> io::Result<()> {
    let lay = layout(snap);
    let err = drawing_error(path);
    let area =
        SVGBackend::new(path, (lay.width as u32, lay.height.max(80) as u32)).into_drawing_area();
    area.fill(&WHITE).map_err(drawing_error(path))?;
    let text = |s: &str, x: i32, y: i32, size: u32| area.draw(&black_text(s, x, y, size));
    text(
        &format!(
            "pool at {}: {} classes in use, {} pages",
            snap.point,
            snap.classes.len(),
            snap.pages()
        ),
        8,
        16,
        16,
    )
    .map_err(drawing_error(path))?;
    for (l, y) in &lay.labels {
        text(l, 8, y + ROW_PX / 2, 12).map_err(drawing_error(path))?;
    }
    for s in &lay.slots {
        let (x0, x1) = (s.x.round() as i32, (s.x + s.w).round() as i32);
        let fill = if s.allocated { ALLOCATED } else { FREE };
        area.draw(&Rectangle::new(
            [(x0, s.y + 3), ((x1 - 1).max(x0 + 1), s.y + ROW_PX - 3)],
            fill.filled(),
        ))
        .map_err(drawing_error(path))?;
        for &c in &s.crossings {
            let cx = c.round() as i32;
            area.draw(&Rectangle::new(
                [(cx - 1, s.y + 1), (cx + 1, s.y + 6)],
                CROSSING.filled(),
            ))
            .map_err(drawing_error(path))?;
        }
    }
    for z in &lay.zspages {
        area.draw(&Rectangle::new(
            [(z.x, z.y), (z.x + z.w, z.y + ROW_PX)],
            group_colour(z.group).stroke_width(2),
        ))
        .map_err(drawing_error(path))?;
        for p in 1..(z.w as f64 / PAGE_PX).round() as i32 {
            let px = z.x + (p as f64 * PAGE_PX) as i32;
            area.draw(&PathElement::new(
                vec![(px, z.y), (px, z.y + ROW_PX)],
                PAGE_EDGE.stroke_width(1),
            ))
            .map_err(drawing_error(path))?;
        }
    }
    area.present().map_err(err)
}

/// Frames in one row of the memmap picture (1 MiB).
pub const FRAMES_PER_ROW: u64 = 256;
/// Pixels one frame's cell is wide and high.
pub const CELL_PX: i32 = 4;
/// Where the memmap's rows start (the margin holds each row's physical address).
pub const MEMMAP_LEFT_PX: i32 = 96;
/// Where the memmap's first row starts (the title and the legend are above it).
pub const MEMMAP_TOP_PX: i32 = 96;

/// The colour of a frame of `owner`: free frames green, darker for larger blocks.
pub fn owner_colour(owner: FrameOwner) -> RGBColor {
    match owner {
        FrameOwner::Reserved => RGBColor(0x5a, 0x5a, 0x5a),
        FrameOwner::Free(order) => {
            let o = order.min(10) as u32;
            let shade = |light: u32, dark: u32| (light - (light - dark) * o / 10) as u8;
            RGBColor(shade(0xd9, 0x1b), shade(0xf0, 0x78), shade(0xd3, 0x37))
        }
        FrameOwner::Isolated => RGBColor(0xf2, 0xc2, 0x30),
        FrameOwner::Zsmalloc => ALLOCATED,
        FrameOwner::Heap => RGBColor(0xe0, 0x8a, 0x2c),
        FrameOwner::PageTable => RGBColor(0x8e, 0x5a, 0xc8),
        FrameOwner::Other => RGBColor(0xc4, 0x9a, 0x6c),
    }
}

/// Frames of one owner, side by side on one row of the memmap picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedFrames {
    /// The first frame.
    pub pfn: u64,
    /// How many.
    pub frames: u64,
    /// Their owner.
    pub owner: FrameOwner,
    /// Left edge and top, in pixels.
    pub x: i32,
    /// Top of the row.
    pub y: i32,
}

/// Lays a census out: frame `pfn` at column `pfn % FRAMES_PER_ROW` of row
/// `pfn / FRAMES_PER_ROW`; a run that reaches the end of a row goes on in the next.
pub fn memmap_layout(map: &FrameMap) -> Vec<PlacedFrames> {
    let mut out = Vec::new();
    let mut pfn = 0;
    for run in &map.runs {
        let end = pfn + run.frames;
        while pfn < end {
            let col = pfn % FRAMES_PER_ROW;
            let frames = (FRAMES_PER_ROW - col).min(end - pfn);
            out.push(PlacedFrames {
                pfn,
                frames,
                owner: run.owner,
                x: MEMMAP_LEFT_PX + col as i32 * CELL_PX,
                y: MEMMAP_TOP_PX + (pfn / FRAMES_PER_ROW) as i32 * CELL_PX,
            });
            pfn += frames;
        }
    }
    out
}

/// Draws the census into an SVG file at `path`: a title, a legend of the owners present
/// with their frame counts, then the frames in rows with each row's physical address.
pub fn draw_memmap(map: &FrameMap, path: &Path) -> io::Result<()> {
    let rows = map.frames().div_ceil(FRAMES_PER_ROW) as i32;
    let width = (MEMMAP_LEFT_PX + FRAMES_PER_ROW as i32 * CELL_PX + 16) as u32;
    let height = (MEMMAP_TOP_PX + rows * CELL_PX + 16) as u32;
    let area = SVGBackend::new(path, (width, height)).into_drawing_area();
    area.fill(&WHITE).map_err(drawing_error(path))?;
    let text = |s: &str, x: i32, y: i32, size: u32| area.draw(&black_text(s, x, y, size));
    text(
        &format!(
            "memmap at {} ({} layout): {} frames, {} to a row of {} KiB",
            map.point,
            map.layout,
            map.frames(),
            FRAMES_PER_ROW,
            FRAMES_PER_ROW * 4
        ),
        8,
        16,
        16,
    )
    .map_err(drawing_error(path))?;
    let mut owners: Vec<FrameOwner> = map.runs.iter().map(|r| r.owner).collect();
    owners.sort();
    owners.dedup();
    let (mut x, mut y) = (8, 40);
    for owner in owners {
        if x > width as i32 - 200 {
            (x, y) = (8, y + 18);
        }
        area.draw(&Rectangle::new(
            [(x, y - 5), (x + 10, y + 5)],
            owner_colour(owner).filled(),
        ))
        .map_err(drawing_error(path))?;
        let l = format!("{} {}", owner.name(), map.count(owner));
        text(&l, x + 14, y, 12).map_err(drawing_error(path))?;
        x += 14 + 7 * l.len() as i32 + 16;
    }
    for row in (0..rows).step_by(16) {
        let addr = row as u64 * FRAMES_PER_ROW * 4096;
        text(
            &format!("{:#x}", addr),
            8,
            MEMMAP_TOP_PX + row * CELL_PX + CELL_PX / 2,
            10,
        )
        .map_err(drawing_error(path))?;
    }
    for p in memmap_layout(map) {
        let w = p.frames as i32 * CELL_PX;
        area.draw(&Rectangle::new(
            [(p.x, p.y), (p.x + w, p.y + CELL_PX)],
            owner_colour(p.owner).filled(),
        ))
        .map_err(drawing_error(path))?;
    }
    area.present().map_err(drawing_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zsmalloc::snapshot::ZspageSnapshot;

    /// A snapshot written by hand: the 2048-byte class (one page, two slots) with two
    /// zspages, and a 1632-byte class (two pages, five slots, slots 2 crossing).
    fn known() -> Snapshot {
        Snapshot {
            point: "line3-s".into(),
            classes: vec![
                ClassSnapshot {
                    pos: 3,
                    index: 30,
                    size: 1632,
                    chain: 2,
                    huge: false,
                    zspages: vec![ZspageSnapshot {
                        id: 0,
                        pages: 2,
                        group: 6,
                        allocated: vec![true, false, true, true, false],
                    }],
                },
                ClassSnapshot {
                    pos: 7,
                    index: 70,
                    size: 2048,
                    chain: 1,
                    huge: false,
                    zspages: vec![
                        ZspageSnapshot {
                            id: 0,
                            pages: 1,
                            group: 11,
                            allocated: vec![true, true],
                        },
                        ZspageSnapshot {
                            id: 1,
                            pages: 1,
                            group: 5,
                            allocated: vec![true, false],
                        },
                    ],
                },
            ],
        }
    }

    /// The SVG's rectangles: (x, y, width, height, fill or stroke colour).
    fn rects(svg: &str) -> Vec<(f64, f64, f64, f64, String)> {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        doc.descendants()
            .filter(|n| n.has_tag_name("rect"))
            .map(|n| {
                let num = |a: &str| n.attribute(a).unwrap_or("0").parse::<f64>().unwrap();
                let colour = n
                    .attribute("fill")
                    .filter(|f| *f != "none")
                    .or(n.attribute("stroke"))
                    .unwrap_or("")
                    .to_ascii_lowercase();
                (num("x"), num("y"), num("width"), num("height"), colour)
            })
            .collect()
    }

    fn hex(c: RGBColor) -> String {
        format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
    }

    #[test]
    fn object_boxes_page_edges_and_colours_are_where_the_snapshot_says() {
        let dir = std::env::temp_dir().join(format!("zsos-pictures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pool.svg");
        draw_pool(&known(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let rects = rects(&svg);
        let with = |c: RGBColor| rects.iter().filter(|r| r.4 == hex(c)).collect::<Vec<_>>();
        // Six allocated slots and three free ones, each a box.
        assert_eq!(with(ALLOCATED).len(), 6, "{svg}");
        assert_eq!(with(FREE).len(), 3);
        // The 1632-byte class's slots sit at i x 1632 bytes of a 96-pixel page, from the left
        // edge; slot 2 (bytes 3264..4896) crosses into page 2 at pixel LEFT_PX + 96.
        let lay = layout(&known());
        for (slot, allocated) in [(0, true), (1, false), (2, true), (3, true), (4, false)] {
            let x = LEFT_PX as f64 + (slot * 1632) as f64 * PAGE_PX / 4096.0;
            let colour = hex(if allocated { ALLOCATED } else { FREE });
            assert!(
                rects
                    .iter()
                    .any(|r| (r.0 - x.round()).abs() <= 1.0 && r.4 == colour && r.1 < 80.0),
                "slot {slot} of the 1632-byte class at x {x}: {rects:?}"
            );
        }
        let crossing: Vec<_> = with(CROSSING);
        assert_eq!(crossing.len(), 1, "one slot crosses a page");
        assert!((crossing[0].0 + 1.0 - (LEFT_PX as f64 + PAGE_PX)).abs() <= 1.0);
        // Zspage outlines in their group's colour: the full one darkest.
        assert_eq!(with(group_colour(11)).len(), 1);
        assert_eq!(with(group_colour(5)).len(), 1);
        assert_eq!(with(group_colour(6)).len(), 1);
        // The 2048-byte class is on the next row; its second zspage follows the first.
        let z = &lay.zspages;
        assert_eq!(z.len(), 3);
        assert!(z[1].y > z[0].y);
        assert_eq!(z[2].x, z[1].x + PAGE_PX as i32 + GAP_PX);
        // The margin names each class.
        assert!(
            svg.contains("class 30: 1632 B, chain 2, 3/5 objects"),
            "{svg}"
        );
        assert!(svg.contains("class 70: 2048 B, chain 1, 3/4 objects"));
    }

    #[test]
    fn long_classes_wrap_onto_more_rows() {
        let mut snap = known();
        let z = snap.classes[1].zspages[0].clone();
        snap.classes[1].zspages = (0..40)
            .map(|id| ZspageSnapshot { id, ..z.clone() })
            .collect();
        let lay = layout(&snap);
        let rows: std::collections::BTreeSet<i32> = lay
            .zspages
            .iter()
            .filter(|z| z.class_pos == 7)
            .map(|z| z.y)
            .collect();
        // 40 one-page zspages of 96 + 8 pixels in (1600 - 270) pixels a row: 13 a row.
        assert_eq!(rows.len(), 4);
        assert!(lay.zspages.iter().all(|z| z.x + z.w <= WIDTH_PX));
    }

    #[test]
    fn each_frame_s_cell_is_in_its_row_and_column_in_its_owner_s_colour() {
        let mut map = FrameMap::new("line4-s", "wide");
        map.push(FrameOwner::Reserved, 300);
        map.push(FrameOwner::PageTable, 3);
        map.push(FrameOwner::Zsmalloc, 5);
        map.push(FrameOwner::Free(9), 512);
        map.push(FrameOwner::Heap, 100);
        map.push(FrameOwner::Free(0), 1);
        let dir = std::env::temp_dir().join(format!("zsos-memmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("memmap.svg");
        draw_memmap(&map, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let rects = rects(&svg);
        let cell = |pfn: u64| {
            let (cx, cy) = (
                (MEMMAP_LEFT_PX + (pfn % FRAMES_PER_ROW) as i32 * CELL_PX) as f64 + 2.0,
                (MEMMAP_TOP_PX + (pfn / FRAMES_PER_ROW) as i32 * CELL_PX) as f64 + 2.0,
            );
            let under: Vec<&String> = rects
                .iter()
                .filter(|r| r.1 >= MEMMAP_TOP_PX as f64 - 0.5)
                .filter(|r| r.0 <= cx && cx < r.0 + r.2 && r.1 <= cy && cy < r.1 + r.3)
                .map(|r| &r.4)
                .collect();
            assert_eq!(under.len(), 1, "one cell under frame {pfn}: {under:?}");
            under[0].clone()
        };
        for (pfn, owner) in [
            (0, FrameOwner::Reserved),
            (255, FrameOwner::Reserved),
            (256, FrameOwner::Reserved),
            (299, FrameOwner::Reserved),
            (300, FrameOwner::PageTable),
            (303, FrameOwner::Zsmalloc),
            (308, FrameOwner::Free(9)),
            (511, FrameOwner::Free(9)),
            (512, FrameOwner::Free(9)),
            (819, FrameOwner::Free(9)),
            (820, FrameOwner::Heap),
            (920, FrameOwner::Free(0)),
        ] {
            assert_eq!(cell(pfn), hex(owner_colour(owner)), "frame {pfn}");
        }
        // Runs cut at row ends: reserved takes rows 0 and 1, order 9 rows 1, 2 and 3.
        let lay = memmap_layout(&map);
        let pieces = |o| lay.iter().filter(|p| p.owner == o).count();
        assert_eq!(pieces(FrameOwner::Reserved), 2);
        assert_eq!(pieces(FrameOwner::Free(9)), 3);
        assert_eq!(lay.iter().map(|p| p.frames).sum::<u64>(), map.frames());
        // No cell past the last frame; a legend names each owner with its count.
        assert!(
            rects
                .iter()
                .all(|r| r.1 < (MEMMAP_TOP_PX + 4 * CELL_PX) as f64)
        );
        for l in [
            "reserved 300",
            "free, order 9 512",
            "zsmalloc 5",
            "heap 100",
        ] {
            assert!(svg.contains(l), "legend {l}");
        }
        // Free blocks: the larger, the darker.
        let lum = |c: RGBColor| c.0 as u32 + c.1 as u32 + c.2 as u32;
        assert!(
            (0..10).all(|o| lum(owner_colour(FrameOwner::Free(o)))
                > lum(owner_colour(FrameOwner::Free(o + 1))))
        );
    }
}
