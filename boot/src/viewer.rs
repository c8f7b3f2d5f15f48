//! The replay viewer: one self-contained HTML file (no network, nothing to build) that steps
//! through a replay operation by operation, from the kernel's own steps
//! (`zsmalloc::steps::StepView`): the pool drawn as in `pool-*.svg` with each object's trace
//! id in its slot, the class table, the current operation and what it changed (an object
//! allocated or freed, objects a compaction moved, pages given back). Buttons go back, forward
//! and play; a box jumps to a trace line.
//!
//! The page also obeys a fragment of presses, `#press=next*3,back,jump:13`, run at load
//! through the same buttons a user clicks: the browser test (`boot/tests/viewer.rs`) loads it
//! so in a headless browser and reads what the page then shows.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use zsmalloc::steps::StepView;

use crate::bench::json_string;

/// The page's file name in the viewer's directory.
pub const FILE_NAME: &str = "replay.html";

/// The steps as the page's JSON: `{"name", "steps": [{"n", "line", "op", "objects":
/// [[id, pos, zspage, slot], ...], "classes": [{"pos", "index", "size", "chain", "huge", "zspages":
/// [{"id", "pages", "group", "alloc": "0110..."}]}]}]}`.
pub fn to_json(name: &str, steps: &[StepView]) -> String {
    let mut out = String::from("{\"name\": ");
    json_string(&mut out, name);
    out.push_str(", \"steps\": [");
    for (i, s) in steps.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        let _ = write!(out, "{{\"n\": {}, \"line\": {}, \"op\": ", s.n, s.line);
        json_string(&mut out, &s.op);
        out.push_str(", \"objects\": [");
        for (j, o) in s.objects.iter().enumerate() {
            let sep = if j > 0 { "," } else { "" };
            let _ = write!(
                out,
                "{sep}[{},{},{},{}]",
                o.id, o.class_pos, o.zspage, o.slot
            );
        }
        out.push_str("], \"classes\": [");
        for (j, c) in s.pool.classes.iter().enumerate() {
            let sep = if j > 0 { "," } else { "" };
            let _ = write!(
                out,
                "{sep}{{\"pos\": {}, \"index\": {}, \"size\": {}, \"chain\": {}, \"huge\": {}, \"zspages\": [",
                c.pos, c.index, c.size, c.chain, c.huge
            );
            for (k, z) in c.zspages.iter().enumerate() {
                let sep = if k > 0 { "," } else { "" };
                let alloc: String = z
                    .allocated
                    .iter()
                    .map(|&a| if a { '1' } else { '0' })
                    .collect();
                let _ = write!(
                    out,
                    "{sep}{{\"id\": {}, \"pages\": {}, \"group\": {}, \"alloc\": \"{alloc}\"}}",
                    z.id, z.pages, z.group
                );
            }
            out.push_str("]}");
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    // Inside a <script> element: no `<` may start a tag (a trace named `</script>` stays text).
    out.replace('<', "\\u003c")
}

/// The whole page for the replay of trace `name`.
pub fn html(name: &str, steps: &[StepView]) -> String {
    let mut title = String::new();
    for c in name.chars() {
        match c {
            '<' => title.push_str("&lt;"),
            '>' => title.push_str("&gt;"),
            '&' => title.push_str("&amp;"),
            c => title.push(c),
        }
    }
    PAGE.replace("{{TITLE}}", &title)
        .replace("{{DATA}}", &to_json(name, steps))
}

/// Writes the page into `dir` as [`FILE_NAME`]; returns its path.
pub fn write(dir: &Path, name: &str, steps: &[StepView]) -> io::Result<std::path::PathBuf> {
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, html(name, steps))?;
    Ok(path)
}

const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>zsos replay: {{TITLE}}</title>
<style>
body { font-family: sans-serif; margin: 1em; color: #222; }
#controls button, #controls input { font-size: 1em; margin-right: 0.3em; }
#controls input { width: 5em; }
#status { margin: 0.6em 0; }
#op { font-weight: bold; }
#change { color: #444; min-height: 1.3em; }
#main { display: flex; gap: 1.5em; align-items: flex-start; }
#classes { border-collapse: collapse; font-size: 0.85em; }
#classes td, #classes th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
#legend span { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 1em; vertical-align: middle; }
.slot-text { font-size: 9px; fill: #fff; pointer-events: none; }
</style>
</head>
<body>
<h2>zsos replay viewer: {{TITLE}}</h2>
<div id="controls">
<button id="first">|&#9664; start</button>
<button id="back">&#9664; back</button>
<button id="play">&#9654; play</button>
<button id="next">next &#9654;</button>
<label>line <input id="line" type="number" min="1"></label><button id="jump">jump to line</button>
</div>
<div id="status">
<div id="op"></div>
<div id="summary"></div>
<div id="change"></div>
</div>
<div id="legend"><span style="background:#2f6fc4"></span>allocated <span style="background:#f2a900"></span>this step's object <span style="background:#2a9d4b"></span>moved by compaction <span style="background:#d6332b"></span>freed this step <span style="background:#e8e8e8"></span>free slot</div>
<div id="main">
<svg id="pool" xmlns="http://www.w3.org/2000/svg" width="900" height="60"></svg>
<table id="classes"><thead><tr><th>class</th><th>size</th><th>chain</th><th>zspages</th><th>pages</th><th>objects</th></tr></thead><tbody></tbody></table>
</div>
<script id="data" type="application/json">{{DATA}}</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
// Step 0 is the empty pool before the first operation.
const STEPS = [{n: 0, line: 0, op: "", objects: [], classes: []}].concat(DATA.steps);
const PAGE_PX = 96, ROW_PX = 24, LEFT_PX = 240, WIDTH_PX = 900, GAP_PX = 8;
const COLOUR = {allocated: "#2f6fc4", current: "#f2a900", moved: "#2a9d4b", freed: "#d6332b", free: "#e8e8e8"};
const SVG = "http://www.w3.org/2000/svg";
let at = 0, timer = null;

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function where(step) {
  const m = new Map();
  for (const [id, pos, zspage, slot] of step.objects) m.set(id, pos + "." + zspage + "." + slot);
  return m;
}
function pages(step) {
  let p = 0;
  for (const c of step.classes) for (const z of c.zspages) p += z.pages;
  return p;
}
function opId(step) {
  const w = step.op.split(" ");
  return w.length > 1 ? Number(w[1]) : null;
}
function show(i) {
  at = Math.max(0, Math.min(STEPS.length - 1, i));
  const step = STEPS[at], prev = STEPS[Math.max(0, at - 1)];
  const now = where(step), before = where(prev);
  const id = opId(step), verb = step.op.split(" ")[0];
  const ids = new Map();
  for (const [oid, key] of now) ids.set(key, oid);
  // What this step changed: its own object, and objects compaction moved (at `c`, at a
  // pause, or on a free under a policy that compacts automatically).
  const moved = new Set();
  for (const [oid, key] of now) if (oid !== id && before.has(oid) && before.get(oid) !== key) moved.add(oid);
  const freedKey = verb === "f" ? before.get(id) : null;
  document.getElementById("op").textContent = at === 0
    ? "step 0 of " + (STEPS.length - 1) + ": the empty pool, before line 1"
    : "step " + at + " of " + (STEPS.length - 1) + ": line " + step.line + ": " + step.op;
  document.getElementById("summary").textContent =
    "objects " + step.objects.length + " · pages " + pages(step) + " · classes " + step.classes.length;
  const indexOf = new Map();
  for (const c of step.classes.concat(prev.classes)) indexOf.set(String(c.pos), c.index);
  const place = key => { const [p, z, s] = key.split("."); return "class " + indexOf.get(p) + ", zspage " + z + ", slot " + s; };
  const parts = [];
  if (verb === "a") parts.push("object " + id + " allocated in " + place(now.get(id)));
  if (verb === "f") parts.push("object " + id + " freed from " + place(freedKey));
  if (verb === "w") parts.push("object " + id + " written and read back in " + place(now.get(id)));
  if (moved.size) parts.push("compaction moved " + moved.size + " object" + (moved.size === 1 ? "" : "s"));
  if (at > 0 && pages(step) !== pages(prev)) parts.push("pages " + pages(prev) + " → " + pages(step));
  if (!parts.length && verb === "c") parts.push("compaction: nothing to move");
  if (!parts.length && verb === "s") parts.push("statistics: nothing changed");
  const change = parts.join("; ");
  const ch = document.getElementById("change");
  ch.textContent = change;
  ch.dataset.moved = moved.size;
  document.getElementById("line").value = step.line || "";
  // The pool.
  const svg = document.getElementById("pool");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  let y = 8, rows = document.querySelector("#classes tbody");
  rows.textContent = "";
  for (const c of step.classes) {
    let used = 0, slots = 0, pg = 0;
    for (const z of c.zspages) { slots += z.alloc.length; pg += z.pages; for (const b of z.alloc) used += b === "1"; }
    svg.appendChild(el("text", {x: 4, y: y + 16, "font-size": 12}, "class " + c.index + ": " + c.size + " B" + (c.huge ? " (huge)" : "") + ", " + used + "/" + slots));
    const tr = document.createElement("tr");
    tr.dataset.pos = c.pos;
    for (const v of [c.index, c.size, c.chain, c.zspages.length, pg, used + "/" + slots]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    rows.appendChild(tr);
    let x = LEFT_PX;
    for (const z of c.zspages) {
      const w = z.pages * PAGE_PX;
      if (x + w > WIDTH_PX && x > LEFT_PX) { x = LEFT_PX; y += ROW_PX + GAP_PX; }
      for (let s = 0; s < z.alloc.length; s++) {
        const start = c.huge ? 0 : s * c.size, end = c.huge ? Math.min(c.size, 4096) : (s + 1) * c.size;
        const x0 = x + start * PAGE_PX / 4096, x1 = x + end * PAGE_PX / 4096;
        const key = c.pos + "." + z.id + "." + s;
        let state = z.alloc[s] === "1" ? "allocated" : "free";
        const oid = ids.get(key);
        if (state === "allocated" && oid === id && verb !== "f") state = "current";
        else if (state === "allocated" && moved.has(oid)) state = "moved";
        else if (state === "free" && key === freedKey) state = "freed";
        const r = el("rect", {x: x0.toFixed(1), y: y + 3, width: Math.max(1, x1 - x0 - 1).toFixed(1), height: ROW_PX - 6, fill: COLOUR[state]});
        r.setAttribute("class", "slot");
        r.dataset.state = state;
        r.dataset.place = key;
        if (oid !== undefined) r.dataset.id = oid;
        svg.appendChild(r);
        if (oid !== undefined && x1 - x0 > 14) svg.appendChild(el("text", {x: (x0 + 2).toFixed(1), y: y + 15, class: "slot-text"}, String(oid)));
      }
      const out = el("rect", {x: x, y: y, width: w, height: ROW_PX, fill: "none", stroke: "#555", "stroke-width": 1.5});
      out.setAttribute("class", "zspage");
      out.dataset.pages = z.pages;
      svg.appendChild(out);
      for (let p = 1; p < z.pages; p++) svg.appendChild(el("line", {x1: x + p * PAGE_PX, y1: y, x2: x + p * PAGE_PX, y2: y + ROW_PX, stroke: "#999"}));
      x += w + GAP_PX;
    }
    y += ROW_PX + 2 * GAP_PX;
  }
  svg.setAttribute("height", Math.max(60, y + GAP_PX));
}
function jump() {
  const want = Number(document.getElementById("line").value);
  const i = STEPS.findIndex(s => s.n > 0 && s.line >= want);
  if (!Number.isInteger(want) || want < 1) { document.getElementById("change").textContent = "no such line: " + document.getElementById("line").value; return; }
  show(i < 0 ? STEPS.length - 1 : i);
}
function play() {
  const b = document.getElementById("play");
  if (timer) { clearInterval(timer); timer = null; b.textContent = "▶ play"; return; }
  if (at === STEPS.length - 1) show(0);
  b.textContent = "❚❚ pause";
  timer = setInterval(() => { if (at >= STEPS.length - 1) play(); else show(at + 1); }, 700);
}
document.getElementById("first").addEventListener("click", () => show(0));
document.getElementById("back").addEventListener("click", () => show(at - 1));
document.getElementById("next").addEventListener("click", () => show(at + 1));
document.getElementById("play").addEventListener("click", play);
document.getElementById("jump").addEventListener("click", jump);
document.getElementById("line").addEventListener("keydown", e => { if (e.key === "Enter") jump(); });
document.addEventListener("keydown", e => {
  if (e.target.tagName === "INPUT") return;
  if (e.key === "ArrowRight") show(at + 1);
  if (e.key === "ArrowLeft") show(at - 1);
});
show(0);
// Presses from the address's fragment, through the buttons: #press=next*3,back,jump:13
const press = /press=([^&]*)/.exec(location.hash);
if (press) for (const cmd of decodeURIComponent(press[1]).split(",")) {
  const [name, times] = cmd.split("*");
  if (name.startsWith("jump:")) {
    document.getElementById("line").value = name.slice(5);
    document.getElementById("jump").click();
    continue;
  }
  for (let k = 0; k < Number(times || 1); k++) document.getElementById(name).click();
}
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use zsmalloc::snapshot::Snapshot;
    use zsmalloc::steps::ObjectAt;

    #[test]
    fn the_page_carries_every_step_and_no_tag_from_a_name() {
        let step = StepView {
            n: 1,
            line: 3,
            op: "a 7 100".into(),
            objects: vec![ObjectAt {
                id: 7,
                class_pos: 5,
                zspage: 0,
                slot: 0,
            }],
            pool: Snapshot::default(),
        };
        let page = html("</script><b>x.trace", &[step]);
        assert_eq!(page.matches("</script>").count(), 2, "only the page's own");
        assert!(page.contains("&lt;/script&gt;&lt;b&gt;x.trace"));
        assert!(page.contains(r#""op": "a 7 100", "objects": [[7,5,0,0]]"#));
        assert!(!page.contains("{{"), "every placeholder filled");
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "nothing loaded"
        );
    }
}
