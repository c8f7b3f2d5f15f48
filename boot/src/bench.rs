//! What the runner does with a bench run's figures. The kernel prints its tables for people
//! and one `BENCH name=<name> value=<value> unit=<unit>` line per figure for programs; the
//! runner keeps the `BENCH` lines off the console, writes them all to a JSON file, and draws
//! the figures people would rather look at as SVG charts (with `plotters`): density per
//! allocator and point, map+unmap cost per size class (window, copy, within one page), and
//! malloc+free cost against live objects.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// One figure the kernel reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Dotted name, e.g. `zs.class.1632.map_unmap.span_window`.
    pub name: String,
    /// The value (a median, a ratio, a count).
    pub value: f64,
    /// `cycles`, `ns`, `ratio`, `frames`, `ops/s`, ...
    pub unit: String,
}

/// The figure on a `BENCH name=.. value=.. unit=..` line, if it is one.
pub fn parse_line(line: &str) -> Option<Figure> {
    let rest = line.strip_prefix("BENCH ")?;
    let (mut name, mut value, mut unit) = (None, None, None);
    for field in rest.split_whitespace() {
        match field.split_once('=')? {
            ("name", v) => name = Some(v),
            ("value", v) => value = v.parse::<f64>().ok().filter(|v| v.is_finite()),
            ("unit", v) => unit = Some(v),
            _ => return None,
        }
    }
    Some(Figure {
        name: name?.to_string(),
        value: value?,
        unit: unit?.to_string(),
    })
}

/// A goal a figure is judged against. The kernel prints figures only; the runner writes each
/// judged figure's target and whether it was met into the bench file (`docs/benchmarks.md`
/// lists them and where each comes from).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The figure is at most this.
    AtMost(f64),
    /// The figure is at least this.
    AtLeast(f64),
}

impl Target {
    /// Whether `value` meets the target.
    pub fn met_by(self, value: f64) -> bool {
        match self {
            Target::AtMost(t) => value <= t,
            Target::AtLeast(t) => value >= t,
        }
    }
}

/// The figures with targets.
pub const TARGETS: &[(&str, Target)] = &[
    ("density.lz4-pages.zsmalloc.fill", Target::AtLeast(0.90)),
    ("ratio.frames.lz4-pages.zsmalloc/zbud", Target::AtMost(0.60)),
    ("ratio.span_window/single.median", Target::AtMost(3.0)),
    ("ratio.span_lazy_window/single.median", Target::AtMost(1.5)),
    ("ratio.span_per_class/single.median", Target::AtMost(1.5)),
    ("ratio.zs.scale.1000000/1000", Target::AtMost(1.2)),
];

/// The target of the figure called `name`, if it has one.
pub fn target_of(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
}

/// What a bench file records besides the figures.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// When the run started, as `YYYY-MM-DDTHH:MM:SSZ`.
    pub started: String,
    /// The kernel's command line (`bench` and its sections).
    pub command: Vec<String>,
    /// `uefi` or `bios`.
    pub firmware: String,
    /// CPUs of the machine.
    pub cpus: u32,
    /// Guest memory, as given to QEMU.
    pub memory: String,
    /// Whether the kernel reported success (a failed run's figures are kept too).
    pub kernel_success: bool,
}

/// Appends `s` as a JSON string (quoted, with `"`, `\\` and control characters escaped).
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The bench file: `{"zsos_bench": 1, "started", "command", "machine", "kernel_success",
/// "figures": [{"name", "value", "unit"}, ...]}`, figures in the order the kernel printed them;
/// a figure with a target (see [`TARGETS`]) also has `"target": {"at_most"|"at_least": T}` and
/// `"met": true|false`.
pub fn to_json(info: &RunInfo, figures: &[Figure]) -> String {
    let mut out = String::from("{\n  \"zsos_bench\": 1,\n  \"started\": ");
    json_string(&mut out, &info.started);
    out.push_str(",\n  \"command\": [");
    for (i, arg) in info.command.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_string(&mut out, arg);
    }
    out.push_str("],\n  \"machine\": {\"firmware\": ");
    json_string(&mut out, &info.firmware);
    let _ = write!(out, ", \"cpus\": {}, \"memory\": ", info.cpus);
    json_string(&mut out, &info.memory);
    let _ = write!(
        out,
        "}},\n  \"kernel_success\": {},\n  \"figures\": [",
        info.kernel_success
    );
    for (i, f) in figures.iter().enumerate() {
        out.push_str(if i == 0 {
            "\n    {\"name\": "
        } else {
            ",\n    {\"name\": "
        });
        json_string(&mut out, &f.name);
        let _ = write!(out, ", \"value\": {}, \"unit\": ", f.value);
        json_string(&mut out, &f.unit);
        if let Some(t) = target_of(&f.name) {
            let (bound, at) = match t {
                Target::AtMost(t) => ("at_most", t),
                Target::AtLeast(t) => ("at_least", t),
            };
            let _ = write!(
                out,
                ", \"target\": {{\"{bound}\": {at}}}, \"met\": {}",
                t.met_by(f.value)
            );
        }
        out.push('}');
    }
    out.push_str(if figures.is_empty() {
        "]\n}\n"
    } else {
        "\n  ]\n}\n"
    });
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (UTC, proleptic Gregorian).
pub fn utc_timestamp(unix_secs: u64) -> String {
    let (days, secs) = ((unix_secs / 86_400) as i64, unix_secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

const ALLOCATORS: [(&str, RGBColor); 3] = [
    ("zsmalloc", RGBColor(31, 119, 180)),
    ("zbud", RGBColor(255, 127, 14)),
    ("heap", RGBColor(44, 160, 44)),
];
const POINTS: [(&str, &str); 3] = [
    ("fill", "after fill"),
    ("half", "half freed"),
    ("compacted", "compacted"),
];

fn chart_error<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> io::Error + '_ {
    move |e| io::Error::other(format!("drawing {what}: {e}"))
}

/// Draws one chart into a file; false if the figures have no data for it.
type Chart = fn(&[Figure], &Path) -> io::Result<bool>;

/// Draws every chart the figures have data for into `dir` (created if needed); returns the
/// files written. Figures that no chart uses are only in the JSON file.
pub fn draw_charts(figures: &[Figure], dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let charts: [(&str, Chart); 3] = [
        ("density.svg", density_chart),
        ("map-per-class.svg", map_per_class_chart),
        ("scale.svg", scale_chart),
    ];
    for (file, draw) in charts {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(file);
        if draw(figures, &path)? {
            written.push(path);
        }
    }
    Ok(written)
}

fn value(figures: &[Figure], name: &str) -> Option<f64> {
    figures.iter().find(|f| f.name == name).map(|f| f.value)
}

/// Grouped bars: for each workload and point (after fill, half freed, compacted), the density
/// of each allocator (`density.<workload>.<allocator>.<point>`).
fn density_chart(figures: &[Figure], path: &Path) -> io::Result<bool> {
    let mut workloads: Vec<&str> = Vec::new();
    for f in figures {
        if let Some(rest) = f.name.strip_prefix("density.")
            && let Some((workload, _)) = rest.split_once('.')
            && !workloads.contains(&workload)
        {
            workloads.push(workload);
        }
    }
    if workloads.is_empty() {
        return Ok(false);
    }
    let groups: Vec<(String, &str, &str)> = workloads
        .iter()
        .flat_map(|w| {
            POINTS
                .iter()
                .map(move |(p, label)| (format!("{w}\n{label}"), *w, *p))
        })
        .collect();
    let err = chart_error("the density chart");
    let root = SVGBackend::new(path, (160 * groups.len() as u32 + 120, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "density: live bytes / (frames x 4096), higher is better",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..groups.len() as f64, 0f64..1.05f64)
        .map_err(chart_error("the density chart"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < groups.len() {
                groups[i].0.replace('\n', " ")
            } else {
                String::new()
            }
        })
        .y_desc("density")
        .draw()
        .map_err(chart_error("the density chart"))?;
    let width = 0.8 / ALLOCATORS.len() as f64;
    for (a, (allocator, color)) in ALLOCATORS.iter().enumerate() {
        let bars: Vec<Rectangle<(f64, f64)>> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, (_, w, p))| {
                let v = value(figures, &format!("density.{w}.{allocator}.{p}"))?;
                let x0 = i as f64 + 0.1 + a as f64 * width;
                Some(Rectangle::new([(x0, 0.0), (x0 + width, v)], color.filled()))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(chart_error("the density chart"))?
            .label(*allocator)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(chart_error("the density chart"))?;
    root.present().map_err(chart_error("the density chart"))?;
    Ok(true)
}

/// Points `(x, value)` of the figures named `<prefix><x><suffix>`, sorted by x.
fn points(figures: &[Figure], prefix: &str, suffix: &str) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = figures
        .iter()
        .filter_map(|f| {
            let x = f.name.strip_prefix(prefix)?.strip_suffix(suffix)?;
            Some((x.parse().ok()?, f.value))
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// One line of a line chart: its legend, colour and points.
type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

/// A chart of lines over `x`, cycles up the y axis; `markers` also dots each point.
fn line_chart<R>(
    path: &Path,
    size: (u32, u32),
    title: &str,
    (x_desc, x): (&str, R),
    lines: Vec<Line>,
    markers: bool,
) -> io::Result<()>
where
    R: AsRangedCoord<Value = f64>,
    R::CoordDescType: ValueFormatter<f64>,
{
    let top = lines
        .iter()
        .flat_map(|l| &l.2)
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let err = || chart_error(title);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, 0f64..top * 1.1)
        .map_err(err())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("cycles")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err())?;
    for (label, color, pts) in lines {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.clone(), style))
            .map_err(err())?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        if markers {
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(err())?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err())?;
    root.present().map_err(err())
}

/// Lines over the class size: map+unmap of an object within one page, and of a spanning
/// object through the PTE window and through the copy path (`zs.class.<size>.map_unmap.*`).
fn map_per_class_chart(figures: &[Figure], path: &Path) -> io::Result<bool> {
    let line = |kind: &str| points(figures, "zs.class.", &format!(".map_unmap.{kind}"));
    let lines: Vec<Line> = vec![
        ("within one page", RGBColor(44, 160, 44), line("single")),
        (
            "spanning, PTE window",
            RGBColor(31, 119, 180),
            line("span_window"),
        ),
        (
            "spanning, copy path",
            RGBColor(214, 39, 40),
            line("span_copy"),
        ),
        (
            "spanning, lazy window (zsos)",
            RGBColor(148, 103, 189),
            line("span_lazy_window"),
        ),
    ];
    if lines.iter().all(|l| l.2.is_empty()) {
        return Ok(false);
    }
    let title = "map+unmap per size class (median cycles, lower is better)";
    let x = ("class size (bytes)", 0f64..4160f64);
    line_chart(path, (900, 480), title, x, lines, false)?;
    Ok(true)
}

/// Cycles per malloc+free pair against the number of live objects (log scale), with the
/// control: one read of a random pool page (`zs.scale.<n>.*`).
fn scale_chart(figures: &[Figure], path: &Path) -> io::Result<bool> {
    let lines: Vec<Line> = vec![
        (
            "malloc+free pair",
            RGBColor(31, 119, 180),
            points(figures, "zs.scale.", ".malloc_free"),
        ),
        (
            "control: one read of a random pool page",
            RGBColor(127, 127, 127),
            points(figures, "zs.scale.", ".random_page_read"),
        ),
    ];
    let xs = || lines.iter().flat_map(|l| &l.2).map(|p| p.0);
    let (Some(lo), Some(hi)) = (xs().reduce(f64::min), xs().reduce(f64::max)) else {
        return Ok(false);
    };
    let title = "cost against live objects (median cycles)";
    let x = ("live objects", (lo * 0.8..hi * 1.25).log_scale());
    line_chart(path, (800, 480), title, x, lines, true)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(name: &str, value: f64, unit: &str) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit: unit.into(),
        }
    }

    #[test]
    fn bench_lines_parse_and_anything_else_does_not() {
        assert_eq!(
            parse_line("BENCH name=zs.malloc.mixed value=1188 unit=cycles"),
            Some(fig("zs.malloc.mixed", 1188.0, "cycles"))
        );
        assert_eq!(
            parse_line("BENCH name=ratio.a/b value=0.640 unit=ratio"),
            Some(fig("ratio.a/b", 0.64, "ratio"))
        );
        for bad in [
            "  zs.malloc.mixed 1188 457",
            "BENCH name=x value=abc unit=cycles",
            "BENCH name=x unit=cycles",
            "BENCH name=x value=1 unit=cycles extra",
            "BENCH name=x value=NaN unit=ratio",
        ] {
            assert_eq!(parse_line(bad), None, "{bad}");
        }
    }

    /// A run of `command` at the epoch on a 2-CPU, 512M UEFI machine that succeeded.
    fn run_info(command: &[&str]) -> RunInfo {
        RunInfo {
            started: utc_timestamp(0),
            command: command.iter().map(|a| a.to_string()).collect(),
            firmware: "uefi".into(),
            cpus: 2,
            memory: "512M".into(),
            kernel_success: true,
        }
    }

    #[test]
    fn the_json_file_lists_every_figure_with_the_run() {
        let info = run_info(&["bench", "sp\"eed"]);
        let json = to_json(
            &info,
            &[fig("a.b", 12.0, "cycles"), fig("ratio.c/d", 0.5, "ratio")],
        );
        assert_eq!(
            json,
            "{\n  \"zsos_bench\": 1,\n  \"started\": \"1970-01-01T00:00:00Z\",\n  \
             \"command\": [\"bench\", \"sp\\\"eed\"],\n  \"machine\": {\"firmware\": \"uefi\", \
             \"cpus\": 2, \"memory\": \"512M\"},\n  \"kernel_success\": true,\n  \"figures\": [\n    \
             {\"name\": \"a.b\", \"value\": 12, \"unit\": \"cycles\"},\n    \
             {\"name\": \"ratio.c/d\", \"value\": 0.5, \"unit\": \"ratio\"}\n  ]\n}\n"
        );
        assert!(to_json(&info, &[]).ends_with("\"figures\": []\n}\n"));
    }

    #[test]
    fn figures_with_targets_say_their_target_and_whether_it_was_met() {
        let info = run_info(&["bench"]);
        let json = to_json(
            &info,
            &[
                fig("ratio.zs.scale.1000000/1000", 3.17, "ratio"),
                fig("density.lz4-pages.zsmalloc.fill", 0.964, "ratio"),
                fig("ratio.span_window/single.median", 3.0, "ratio"),
            ],
        );
        assert!(json.contains(
            "\"value\": 3.17, \"unit\": \"ratio\", \"target\": {\"at_most\": 1.2}, \"met\": false}"
        ));
        assert!(json.contains("\"target\": {\"at_least\": 0.9}, \"met\": true}"));
        assert!(
            json.contains("\"target\": {\"at_most\": 3}, \"met\": true}"),
            "{json}"
        );
    }

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_796_000_000), "2026-11-30T00:53:20Z");
    }

    #[test]
    fn charts_are_drawn_for_the_sections_present_and_only_those() {
        let dir = std::env::temp_dir().join(format!("zsos-charts-{}", std::process::id()));
        let mut figures = vec![fig("memmap.512MiB.build", 2450.0, "us")];
        assert!(draw_charts(&figures, &dir).unwrap().is_empty());
        for (w, a, p, v) in [
            ("uniform", "zsmalloc", "fill", 0.92),
            ("uniform", "zbud", "fill", 0.95),
            ("uniform", "zsmalloc", "compacted", 0.86),
        ] {
            figures.push(fig(&format!("density.{w}.{a}.{p}"), v, "ratio"));
        }
        for (size, single, win, copy, lazy) in [
            (48.0, 900.0, 2100.0, 1450.0, 1300.0),
            (1632.0, 916.0, 2100.0, 3657.0, 1350.0),
        ] {
            figures.push(fig(
                &format!("zs.class.{size}.map_unmap.span_lazy_window"),
                lazy,
                "cycles",
            ));
            figures.push(fig(
                &format!("zs.class.{size}.map_unmap.single"),
                single,
                "cycles",
            ));
            figures.push(fig(
                &format!("zs.class.{size}.map_unmap.span_window"),
                win,
                "cycles",
            ));
            figures.push(fig(
                &format!("zs.class.{size}.map_unmap.span_copy"),
                copy,
                "cycles",
            ));
        }
        let written = draw_charts(&figures, &dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["density.svg", "map-per-class.svg"]);
        let density = std::fs::read_to_string(dir.join("density.svg")).unwrap();
        assert!(density.starts_with("<svg"), "{density}");
        for needle in [
            "zsmalloc",
            "zbud",
            "uniform after fill",
            "uniform compacted",
        ] {
            assert!(density.contains(needle), "density chart lacks {needle}");
        }
        let per_class = std::fs::read_to_string(dir.join("map-per-class.svg")).unwrap();
        assert!(per_class.contains("spanning, copy path"));
        assert!(per_class.contains("spanning, lazy window (zsos)"));
        figures.push(fig("zs.scale.1000.malloc_free", 1664.0, "cycles"));
        figures.push(fig("zs.scale.1000000.malloc_free", 5281.0, "cycles"));
        figures.push(fig("zs.scale.1000.random_page_read", 10.0, "cycles"));
        assert_eq!(draw_charts(&figures, &dir).unwrap().len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
