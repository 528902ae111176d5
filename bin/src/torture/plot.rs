//! `balsa torture --plot FILE.svg`: the run as one picture, after Jepsen's latency plots, so
//! that an operator sees at a glance which faults cost latency, errors or unknown outcomes.
//!
//! What it draws, on two rows that share both axes (writes — `put`, `cas`, `del` — above, reads
//! below, since the two take different paths through the cluster):
//!
//! - one point per operation, at its invocation time (x, seconds since the run started) and its
//!   latency (y, return − call, on a log scale from 0.1 ms, or the decade below the fastest
//!   operation if one was faster, up to past the slowest);
//! - its outcome twice over, by colour and by shape, so that it reads without colour vision and
//!   in black and white: `ok` a blue dot, `fail` a vermillion triangle, `info` a dark grey cross
//!   (Okabe and Ito's colour-blind-safe blue and vermillion, and a neutral for the unknown);
//!   `fail` and `info` are drawn over the `ok` dots, so a few of them stay visible in a crowd;
//! - the nemesis: each fault that lasted a while as a translucent vertical band across both
//!   rows, one colour per kind (Paul Tol's pale scheme, readable under the points), and each
//!   instantaneous one (start = end) as a thin vertical line of its colour; and above the rows,
//!   on the same time axis, one labelled lane per kind that occurred with every fault marked
//!   in it opaque, since bands can hide under a crowd of points and overlapping faults of
//!   different kinds blend;
//! - the title given (seed, nodes, network mode), a line of totals, axis labels and ticks, and
//!   a legend of the outcomes and the fault kinds with their counts.
//!
//! Bounded output: an SVG element per point makes a large history a large file, so the `ok`
//! points are bounded (every `fail` and `info` point is always drawn: they are rare, and they
//! are what the picture is for). First, `ok` points of a row that land on the same pixel as an
//! earlier one are drawn once (the picture does not change). Then, if more than
//! [`OK_POINT_LIMIT`] remain, they are thinned to exactly that many: the slowest 1% (at most a
//! tenth of the limit) are all kept, since the latency spikes are what the eye looks for, and
//! the rest are thinned evenly in time (every k-th, by a Bresenham stride). The legend says how
//! many `ok` operations were drawn when that is fewer than there were. A dot is about a hundred
//! bytes of SVG, so the `ok` dots of any run, however long, take at most about 5 MB.
//!
//! Drawn with `plotters`' SVG backend, without fonts: the SVG carries its text as `<text>`
//! elements in the viewer's `sans-serif`, and plotters (built without its `ttf` feature) lays
//! text out with an estimate of its width instead of reading a font file, so nothing is needed
//! from the machine, at build time or at run time.

use std::collections::HashSet;
use std::io::{self, Write};

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::history::{Outcome, Record};
use super::timeline::{FaultKind, NemesisEvent};

/// The most `ok` points drawn (see the module doc); `fail` and `info` points are not counted.
pub const OK_POINT_LIMIT: usize = 50_000;

/// The picture's size, in SVG user units (pixels).
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 900;
/// The height of the title and totals above the rows, and the width of the legend beside them.
const HEAD_HEIGHT: u32 = 64;
const LEGEND_WIDTH: u32 = 210;
/// The fault lanes above the rows: a lane's height, and the room around them.
const LANE_HEIGHT: u32 = 14;
const LANES_PADDING: u32 = 12;
/// The rows' margins and y label area, shared by the lanes so that their x axes line up.
const MARGIN_LEFT: u32 = 10;
const MARGIN_RIGHT: u32 = 20;
const Y_LABEL_AREA: u32 = 78;

/// The lowest latency shown unless an operation was faster, in milliseconds.
const FLOOR_MS: f64 = 0.1;
/// The lowest the axis goes however fast an operation was (1 µs), in milliseconds.
const LOWEST_FLOOR_MS: f64 = 0.001;

const FONT: &str = "sans-serif";

/// Outcome colours (Okabe–Ito blue and vermillion; a dark grey for the unknown).
const OK_COLOUR: RGBColor = RGBColor(0x00, 0x72, 0xB2);
const FAIL_COLOUR: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const INFO_COLOUR: RGBColor = RGBColor(0x3A, 0x3A, 0x3A);
/// The `ok` dots are a little translucent, so that where they crowd the bands still show.
const OK_OPACITY: f64 = 0.65;
/// The opacity of an interval fault's band.
const BAND_OPACITY: f64 = 0.35;

/// Marker sizes, in pixels: the dot's radius, the triangle's and the cross's half-size.
const OK_RADIUS: u32 = 2;
const FAIL_SIZE: u32 = 4;
const INFO_SIZE: u32 = 3;

/// A band narrower than this many pixels is widened to it, so that a short fault still shows;
/// in the lanes, where an instantaneous fault is a mark of this width too.
const MIN_BAND_PX: f64 = 2.0;
const MIN_LANE_MARK_PX: f64 = 3.0;

/// One colour per fault kind (Paul Tol's "light" scheme, meant for areas under data).
fn fault_colour(kind: FaultKind) -> RGBColor {
    match kind {
        FaultKind::Kill => RGBColor(0xEE, 0x88, 0x66),
        FaultKind::Pause => RGBColor(0xEE, 0xDD, 0x88),
        FaultKind::Partition => RGBColor(0xFF, 0xAA, 0xBB),
        FaultKind::Membership => RGBColor(0xBB, 0xCC, 0x33),
        FaultKind::Transfer => RGBColor(0x44, 0xBB, 0x99),
        FaultKind::Snapshot => RGBColor(0x77, 0xAA, 0xDD),
        FaultKind::Wipe => RGBColor(0x99, 0xDD, 0xFF),
    }
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, LogCoord<f64>>>;

/// Draws `history` and the faults of `events` as an SVG picture titled `title` into `out`.
///
/// `history` is in invocation order (as the workload records it); `events` in any order.
pub fn write_svg(
    history: &[Record],
    events: &[NemesisEvent],
    title: &str,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut svg = String::new();
    draw(history, events, title, &mut svg).map_err(|err| io::Error::other(err.to_string()))?;
    out.write_all(svg.as_bytes())?;
    out.flush()
}

/// The axes' extents.
struct Scales {
    /// The last return or fault's end, in seconds.
    last_s: f64,
    /// The x axis ends here, in seconds: a little past `last_s`.
    end_s: f64,
    /// The y axis, in milliseconds.
    floor_ms: f64,
    top_ms: f64,
}

impl Scales {
    fn of(history: &[Record], events: &[NemesisEvent]) -> Scales {
        let last_ns = history
            .iter()
            .map(|record| record.return_ns.max(record.call_ns))
            .chain(events.iter().map(|event| event.end_ns.max(event.start_ns)))
            .max()
            .unwrap_or(0);
        let last_s = seconds(last_ns);
        let end_s = (last_s * 1.01).max(1.0);
        let fastest = history.iter().map(latency_ms).fold(f64::INFINITY, f64::min);
        let slowest = history.iter().map(latency_ms).fold(0.0, f64::max);
        let floor_ms = if fastest < FLOOR_MS {
            10f64.powf(fastest.max(LOWEST_FLOOR_MS).log10().floor())
        } else {
            FLOOR_MS
        };
        // Headroom above the slowest, and at least a decade and a half to look at.
        let top_ms = (slowest * 1.5).max(floor_ms * 30.0);
        Scales {
            last_s,
            end_s,
            floor_ms,
            top_ms,
        }
    }

    /// The y axis starts a little below the floor, so that the floor's decade is labelled and
    /// the points held to it show whole.
    fn axis_floor_ms(&self) -> f64 {
        self.floor_ms * 0.85
    }

    /// Where a record's point goes, in chart coordinates (latency held to the axis' floor).
    fn point(&self, record: &Record) -> (f64, f64) {
        (
            seconds(record.call_ns),
            latency_ms(record).max(self.floor_ms),
        )
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn latency_ms(record: &Record) -> f64 {
    record.return_ns.saturating_sub(record.call_ns) as f64 / 1e6
}

/// What is drawn of the history: indexes into it.
struct Selection {
    ok: Vec<usize>,
    fail: Vec<usize>,
    info: Vec<usize>,
    /// How many `ok` operations there were (drawn or not).
    ok_total: usize,
    /// How many of them were on distinct pixels (the number drawn unless thinned).
    ok_distinct: usize,
}

/// Every `fail` and `info` record, and the `ok` ones that survive merging by pixel and
/// thinning to `limit` (see the module doc). `pixel` says where a record's point lands,
/// including its row.
fn select(
    history: &[Record],
    pixel: impl Fn(&Record) -> (bool, i32, i32),
    limit: usize,
) -> Selection {
    let mut selection = Selection {
        ok: Vec::new(),
        fail: Vec::new(),
        info: Vec::new(),
        ok_total: 0,
        ok_distinct: 0,
    };
    let mut taken = HashSet::new();
    for (index, record) in history.iter().enumerate() {
        match record.outcome {
            Outcome::Ok => {
                selection.ok_total += 1;
                if taken.insert(pixel(record)) {
                    selection.ok.push(index);
                }
            }
            Outcome::Fail => selection.fail.push(index),
            Outcome::Info => selection.info.push(index),
        }
    }
    selection.ok_distinct = selection.ok.len();
    selection.ok = thin(
        std::mem::take(&mut selection.ok),
        |index| latency_ms(&history[index]),
        limit,
    );
    selection
}

/// At most `limit` of `indexes` (kept in order): all of them if they fit; otherwise the
/// slowest 1% (at most a tenth of `limit`), and the rest thinned evenly to fill `limit`.
fn thin(indexes: Vec<usize>, latency: impl Fn(usize) -> f64, limit: usize) -> Vec<usize> {
    let count = indexes.len();
    if count <= limit {
        return indexes;
    }
    let slow_count = (count / 100).min(limit / 10);
    let mut by_latency: Vec<usize> = (0..count).collect();
    by_latency.sort_by(|&a, &b| latency(indexes[b]).total_cmp(&latency(indexes[a])));
    let mut slow = vec![false; count];
    for &position in &by_latency[..slow_count] {
        slow[position] = true;
    }
    // Bresenham: of `rest` items keep `room`, the n-th when ⌊(n+1)·room/rest⌋ steps up; as
    // room < rest each step is 0 or 1, and they add up to exactly `room`.
    let rest = (count - slow_count) as u128;
    let room = (limit - slow_count) as u128;
    let mut kept = Vec::with_capacity(limit);
    let mut n: u128 = 0;
    for (position, &index) in indexes.iter().enumerate() {
        if slow[position] {
            kept.push(index);
        } else {
            if (n + 1) * room / rest > n * room / rest {
                kept.push(index);
            }
            n += 1;
        }
    }
    kept
}

/// The SVG into `svg`.
fn draw(
    history: &[Record],
    events: &[NemesisEvent],
    title: &str,
    svg: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let scales = Scales::of(history, events);
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(HEAD_HEIGHT);
    let (left, legend) = body.split_horizontally(WIDTH - LEGEND_WIDTH);
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|&kind| events.iter().any(|event| event.kind == kind))
        .collect();
    // At most `FaultKind::ALL.len()` lanes: the conversion cannot fail, nor the product overflow.
    let lane_count = u32::try_from(kinds.len()).unwrap_or(0);
    let lanes_height = if lane_count == 0 {
        0
    } else {
        LANE_HEIGHT * lane_count + LANES_PADDING
    };
    let (lanes, rows) = left.split_vertically(lanes_height);
    let (top_row, bottom_row) = rows.split_vertically((HEIGHT - HEAD_HEIGHT - lanes_height) / 2);
    if !kinds.is_empty() {
        draw_lanes(&lanes, &kinds, events, &scales)?;
    }

    let writes = history
        .iter()
        .filter(|record| record.call.is_write())
        .count();
    let reads = history.len() - writes;
    let mut write_chart = row_chart(
        &top_row,
        &format!("writes (put, cas, del): {} operations", thousands(writes)),
        &scales,
        false,
    )?;
    let mut read_chart = row_chart(
        &bottom_row,
        &format!("reads (get): {} operations", thousands(reads)),
        &scales,
        true,
    )?;

    let selection = select(
        history,
        |record| {
            let write = record.call.is_write();
            let chart = if write { &write_chart } else { &read_chart };
            let (x, y) = chart.backend_coord(&scales.point(record));
            (write, x, y)
        },
        OK_POINT_LIMIT,
    );
    for (chart, writes_row) in [(&mut write_chart, true), (&mut read_chart, false)] {
        draw_faults(chart, events, &scales)?;
        let in_row = |indexes: &[usize]| -> Vec<(f64, f64)> {
            indexes
                .iter()
                .map(|&index| &history[index])
                .filter(|record| record.call.is_write() == writes_row)
                .map(|record| scales.point(record))
                .collect()
        };
        let ok_style = OK_COLOUR.mix(OK_OPACITY).filled();
        chart.draw_series(
            in_row(&selection.ok)
                .into_iter()
                .map(|point| Circle::new(point, OK_RADIUS, ok_style)),
        )?;
        chart.draw_series(
            in_row(&selection.fail)
                .into_iter()
                .map(|point| TriangleMarker::new(point, FAIL_SIZE, FAIL_COLOUR.filled())),
        )?;
        chart.draw_series(
            in_row(&selection.info)
                .into_iter()
                .map(|point| Cross::new(point, INFO_SIZE, INFO_COLOUR.stroke_width(2))),
        )?;
    }

    draw_head(&head, title, history, events, &scales)?;
    draw_legend(&legend, history, events, &selection)?;
    root.present()?;
    Ok(())
}

/// One row's axes, with its caption; the x axis is described under the bottom row only.
fn row_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    scales: &Scales,
    bottom: bool,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18))
        .margin_left(MARGIN_LEFT)
        .margin_right(MARGIN_RIGHT)
        .margin_top(6)
        .margin_bottom(6)
        .x_label_area_size(if bottom { 44 } else { 26 })
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(
            0.0..scales.end_s,
            (scales.axis_floor_ms()..scales.top_ms).log_scale(),
        )?;
    let decades = (scales.top_ms / scales.floor_ms).log10().ceil();
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(12)
        // Asking for ten ticks a decade gives the 2…9 minor ticks too; only the decades are
        // labelled (see `latency_label`).
        .y_labels(usize_of(decades * 10.0))
        .y_label_formatter(&latency_label)
        .x_label_formatter(&seconds_label)
        .y_desc("latency (log scale)")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .bold_line_style(RGBColor(0xEE, 0xEE, 0xEE))
        .light_line_style(TRANSPARENT);
    if bottom {
        mesh.x_desc("time since the run started (s)");
    }
    mesh.draw()?;
    // The decades' grid lines a shade darker than the minor ones.
    let decade_style = RGBColor(0xD2, 0xD2, 0xD2).stroke_width(1);
    let first = scales.axis_floor_ms().log10().ceil();
    let decade_lines = (0..usize_of(decades + 1.0))
        .map(|step| 10f64.powf(first + step as f64))
        .filter(|&ms| ms <= scales.top_ms)
        .map(|ms| PathElement::new(vec![(0.0, ms), (scales.end_s, ms)], decade_style));
    chart.draw_series(decade_lines)?;
    Ok(chart)
}

/// A count for a tick hint (small and non-negative by construction; saturates otherwise).
fn usize_of(value: f64) -> usize {
    if value.is_finite() && value >= 1.0 {
        // The float-to-int `as` saturates; the hint is at most a hundred or so.
        #[allow(clippy::cast_possible_truncation)]
        let count = value as usize;
        count
    } else {
        1
    }
}

/// A time tick's label: `10`, `2.5`, `0.25` (no float noise, no trailing zeros).
fn seconds_label(s: &f64) -> String {
    let text = format!("{s:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A latency tick's label: the decades only (1 µs … 100 s), in the unit that reads best.
fn latency_label(ms: &f64) -> String {
    let exponent = ms.log10();
    if (exponent - exponent.round()).abs() > 1e-6 {
        return String::new();
    }
    let ms = 10f64.powf(exponent.round());
    if ms < 1.0 {
        format!("{} µs", (ms * 1000.0).round())
    } else if ms < 1000.0 {
        format!("{} ms", ms.round())
    } else {
        format!("{} s", (ms / 1000.0).round())
    }
}

/// The faults, behind the points: a translucent band for each that lasted, a line for each
/// instantaneous one.
fn draw_faults(
    chart: &mut Chart<'_, '_>,
    events: &[NemesisEvent],
    scales: &Scales,
) -> Result<(), Box<dyn std::error::Error>> {
    let (width_px, _) = chart.plotting_area().dim_in_pixel();
    let min_width_s = MIN_BAND_PX * scales.end_s / f64::from(width_px.max(1));
    let (low, high) = (scales.axis_floor_ms(), scales.top_ms);
    chart.draw_series(
        events
            .iter()
            .filter(|event| event.end_ns > event.start_ns)
            .map(|event| {
                let start = seconds(event.start_ns);
                let end = seconds(event.end_ns).max(start + min_width_s);
                let style = fault_colour(event.kind).mix(BAND_OPACITY).filled();
                Rectangle::new([(start, low), (end, high)], style)
            }),
    )?;
    chart.draw_series(
        events
            .iter()
            .filter(|event| event.end_ns <= event.start_ns)
            .map(|event| {
                let at = seconds(event.start_ns);
                PathElement::new(
                    vec![(at, low), (at, high)],
                    fault_colour(event.kind).stroke_width(2),
                )
            }),
    )?;
    Ok(())
}

/// The fault lanes, one per kind that occurred, over the same time axis as the rows: the
/// bands in the rows hide under a crowd of points, the lanes never do, and they keep apart
/// faults of different kinds that overlap.
fn draw_lanes(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    kinds: &[FaultKind],
    events: &[NemesisEvent],
    scales: &Scales,
) -> Result<(), Box<dyn std::error::Error>> {
    let lane_count = kinds.len() as f64;
    let chart = ChartBuilder::on(area)
        .margin_left(MARGIN_LEFT)
        .margin_right(MARGIN_RIGHT)
        .margin_top(LANES_PADDING / 2)
        .margin_bottom(LANES_PADDING / 2)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(0.0..scales.end_s, 0.0..lane_count)?;
    let plot = chart.plotting_area();
    let (width_px, _) = plot.dim_in_pixel();
    let min_width_s = MIN_LANE_MARK_PX * scales.end_s / f64::from(width_px.max(1));
    let label = TextStyle::from((FONT, 14).into_font())
        .pos(Pos::new(HPos::Right, VPos::Center))
        .color(&RGBColor(0x33, 0x33, 0x33));
    for (lane, &kind) in kinds.iter().enumerate() {
        // The first kind on top.
        let bottom = lane_count - 1.0 - lane as f64;
        let (low, high) = (bottom + 0.12, bottom + 0.88);
        plot.draw(&Rectangle::new(
            [(0.0, low), (scales.end_s, high)],
            RGBColor(0xF4, 0xF4, 0xF4).filled(),
        ))?;
        // `backend_coord` is in the whole picture's pixels, `area` counts from its corner.
        let (x, y) = chart.backend_coord(&(0.0, bottom + 0.5));
        let (base_x, base_y) = area.get_base_pixel();
        let at = (x - base_x - 6, y - base_y);
        area.draw(&Text::new(kind.name(), at, label.clone()))?;
        let colour = fault_colour(kind);
        for event in events.iter().filter(|event| event.kind == kind) {
            let start = seconds(event.start_ns);
            let end = seconds(event.end_ns).max(start + min_width_s);
            plot.draw(&Rectangle::new(
                [(start, low), (end, high)],
                colour.filled(),
            ))?;
        }
    }
    Ok(())
}

/// The title, and a line of totals under it.
fn draw_head(
    head: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    history: &[Record],
    events: &[NemesisEvent],
    scales: &Scales,
) -> Result<(), Box<dyn std::error::Error>> {
    let title_style = TextStyle::from((FONT, 26).into_font().style(FontStyle::Bold));
    head.draw(&Text::new(title.to_owned(), (16, 10), title_style))?;
    let totals = format!(
        "{} over {:.1} s, {}. Each point is one operation: \
         when it was invoked, and how long it took to come back.",
        counted(history.len(), "operation"),
        scales.last_s,
        counted(events.len(), "fault"),
    );
    head.draw(&Text::new(totals, (16, 40), (FONT, 17).into_font()))?;
    Ok(())
}

/// The legend: the outcomes with their markers and counts, then the fault kinds that occurred.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    history: &[Record],
    events: &[NemesisEvent],
    selection: &Selection,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut legend = Legend { area, y: 36 };
    let count = |outcome| {
        history
            .iter()
            .filter(|record| record.outcome == outcome)
            .count()
    };
    legend.heading("outcome")?;
    area.draw(&Circle::new(
        legend.marker_at(),
        4,
        OK_COLOUR.mix(OK_OPACITY).filled(),
    ))?;
    legend.entry(&format!("ok: {}", thousands(selection.ok_total)))?;
    area.draw(&TriangleMarker::new(
        legend.marker_at(),
        6,
        FAIL_COLOUR.filled(),
    ))?;
    legend.entry(&format!("fail: {}", thousands(count(Outcome::Fail))))?;
    area.draw(&Cross::new(
        legend.marker_at(),
        4,
        INFO_COLOUR.stroke_width(2),
    ))?;
    legend.entry(&format!(
        "info (unknown): {}",
        thousands(count(Outcome::Info))
    ))?;
    if selection.ok.len() < selection.ok_total {
        legend.note(&format!(
            "{} ok points drawn:",
            thousands(selection.ok.len())
        ))?;
        legend.note("those on one pixel drawn once,")?;
        if selection.ok.len() < selection.ok_distinct {
            legend.note(&format!(
                "then thinned (of {}),",
                thousands(selection.ok_distinct)
            ))?;
            legend.note("keeping the slowest;")?;
        }
        legend.note("every fail and info drawn")?;
    }

    legend.y += 20;
    legend.heading("faults")?;
    let mut any = false;
    for kind in FaultKind::ALL {
        let of_kind = events.iter().filter(|event| event.kind == kind);
        let (number, lasting) = of_kind.fold((0, false), |(number, lasting), event| {
            (number + 1, lasting || event.end_ns > event.start_ns)
        });
        if number == 0 {
            continue;
        }
        any = true;
        let colour = fault_colour(kind);
        let (x, y) = legend.marker_at();
        let text = format!("{} ×{}", kind.name(), thousands(number));
        if lasting {
            area.draw(&Rectangle::new(
                [(x - 7, y - 7), (x + 7, y + 7)],
                colour.mix(BAND_OPACITY).filled(),
            ))?;
        } else {
            area.draw(&PathElement::new(
                vec![(x, y - 8), (x, y + 8)],
                colour.stroke_width(2),
            ))?;
        }
        legend.entry(&text)?;
    }
    if any {
        legend.y += 8;
        legend.note("bands: faults that lasted;")?;
        legend.note("lines: instantaneous ones;")?;
        legend.note("lanes above: all, by kind")?;
    } else {
        legend.note("none")?;
    }
    Ok(())
}

/// The legend's column, written downwards.
struct Legend<'a, 'b> {
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    /// Where the next line goes.
    y: i32,
}

impl Legend<'_, '_> {
    const MARKER_X: i32 = 14;
    const TEXT_X: i32 = 30;

    fn heading(&mut self, text: &str) -> Result<(), Box<dyn std::error::Error>> {
        let style = TextStyle::from((FONT, 18).into_font().style(FontStyle::Bold))
            .pos(Pos::new(HPos::Left, VPos::Center));
        self.area.draw(&Text::new(text, (4, self.y), style))?;
        self.y += 28;
        Ok(())
    }

    /// Where the next entry's marker is centred.
    fn marker_at(&self) -> (i32, i32) {
        (Self::MARKER_X, self.y)
    }

    /// An entry's text, beside its marker (drawn by the caller at [`Legend::marker_at`]).
    fn entry(&mut self, text: &str) -> Result<(), Box<dyn std::error::Error>> {
        let style = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        self.area
            .draw(&Text::new(text, (Self::TEXT_X, self.y), style))?;
        self.y += 26;
        Ok(())
    }

    fn note(&mut self, text: &str) -> Result<(), Box<dyn std::error::Error>> {
        let style = TextStyle::from((FONT, 14).into_font())
            .color(&RGBColor(0x55, 0x55, 0x55))
            .pos(Pos::new(HPos::Left, VPos::Center));
        self.area.draw(&Text::new(text, (4, self.y), style))?;
        self.y += 18;
        Ok(())
    }
}

/// `3 faults`, `1 fault`.
fn counted(count: usize, noun: &str) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{} {noun}{plural}", thousands(count))
}

/// `1234567` as `1,234,567`, as the library writes every count a user reads.
fn thousands(count: usize) -> String {
    balsa::kv::thousands(count as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torture::history::{Call, Output};

    /// A small deterministic generator (xorshift64*), so that the histories are the same at
    /// every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn op(index: usize, write: bool, call_ns: u64, latency_ns: u64, outcome: Outcome) -> Record {
        let call = if write {
            Call::Put {
                value: format!("p0-{index}"),
            }
        } else {
            Call::Get
        };
        Record {
            process: 0,
            key: "k0".into(),
            call,
            call_ns,
            return_ns: call_ns + latency_ns,
            outcome,
            output: Output::None,
            error: None,
        }
    }

    fn event(kind: FaultKind, start_s: f64, end_s: f64) -> NemesisEvent {
        NemesisEvent {
            kind,
            detail: format!("{} for a test", kind.name()),
            start_ns: nanos(start_s),
            end_ns: nanos(end_s),
            hit_leader: false,
        }
    }

    fn nanos(seconds: f64) -> u64 {
        // Test times are small and positive: the cast is exact enough and cannot overflow.
        #[allow(clippy::cast_possible_truncation)]
        let ns = (seconds * 1e9) as u64;
        ns
    }

    fn render(history: &[Record], events: &[NemesisEvent], title: &str) -> String {
        let mut out = Vec::new();
        write_svg(history, events, title, &mut out).expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("the SVG backend writes UTF-8")
    }

    fn hex(colour: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2)
    }

    /// The elements named `tag` whose `attribute` is `value`.
    fn count(document: &roxmltree::Document<'_>, tag: &str, attribute: &str, value: &str) -> usize {
        document
            .descendants()
            .filter(|node| node.has_tag_name(tag) && node.attribute(attribute) == Some(value))
            .count()
    }

    /// How many markers of each outcome the SVG holds, less the legend's one of each: dots,
    /// triangles, and crosses (two lines each).
    fn markers(document: &roxmltree::Document<'_>) -> (usize, usize, usize) {
        let ok = count(document, "circle", "fill", &hex(OK_COLOUR));
        let fail = count(document, "polygon", "fill", &hex(FAIL_COLOUR));
        let info_lines = count(document, "line", "stroke", &hex(INFO_COLOUR));
        assert_eq!(info_lines % 2, 0, "a cross is two lines");
        (ok - 1, fail - 1, info_lines / 2 - 1)
    }

    #[test]
    fn the_svg_is_well_formed_with_a_marker_per_operation_a_band_per_fault_and_the_title() {
        // 240 operations half a second apart, so that no two share a pixel.
        let outcomes = [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Fail,
            Outcome::Info,
        ];
        let history: Vec<Record> = (0..240)
            .map(|index| {
                let latency_ns = 50_000 * (1 + (index as u64 % 7) * 40);
                let call_ns = index as u64 * 500_000_000;
                op(
                    index,
                    index.is_multiple_of(2),
                    call_ns,
                    latency_ns,
                    outcomes[index % 5],
                )
            })
            .collect();
        let events = [
            event(FaultKind::Partition, 10.0, 25.0),
            event(FaultKind::Partition, 70.0, 71.0),
            event(FaultKind::Kill, 40.0, 48.0),
            event(FaultKind::Transfer, 60.0, 60.0),
        ];
        let title = "seed 42 · 5 nodes · network <tcp & loss>";
        let svg = render(&history, &events, title);
        let document = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        assert_eq!(document.root_element().tag_name().name(), "svg");

        let expected = |outcome| {
            history
                .iter()
                .filter(|record| record.outcome == outcome)
                .count()
        };
        assert_eq!(
            markers(&document),
            (
                expected(Outcome::Ok),
                expected(Outcome::Fail),
                expected(Outcome::Info)
            )
        );
        // A translucent band in each of the two rows per fault that lasted, and one in the
        // legend per kind; an opaque mark per fault in its kind's lane.
        let rects = |kind, opacity: &str| {
            document
                .descendants()
                .filter(|node| node.has_tag_name("rect"))
                .filter(|node| node.attribute("fill") == Some(hex(fault_colour(kind)).as_str()))
                .filter(|node| node.attribute("opacity") == Some(opacity))
                .count()
        };
        let band_opacity = BAND_OPACITY.to_string();
        assert_eq!(rects(FaultKind::Partition, &band_opacity), 2 * 2 + 1);
        assert_eq!(rects(FaultKind::Kill, &band_opacity), 2 + 1);
        assert_eq!(rects(FaultKind::Transfer, &band_opacity), 0);
        assert_eq!(rects(FaultKind::Partition, "1"), 2);
        assert_eq!(rects(FaultKind::Kill, "1"), 1);
        assert_eq!(rects(FaultKind::Transfer, "1"), 1);
        let transfer_lines = count(
            &document,
            "polyline",
            "stroke",
            &hex(fault_colour(FaultKind::Transfer)),
        );
        assert_eq!(
            transfer_lines,
            2 + 1,
            "an instantaneous fault is a line in each row"
        );

        let texts: Vec<&str> = document
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .filter_map(|node| node.text())
            .map(str::trim)
            .collect();
        assert!(texts.contains(&title), "the title is there: {texts:?}");
        for expected in [
            "latency (log scale)",
            "time since the run started (s)",
            "100 µs",
            "1 ms",
        ] {
            assert!(
                texts.contains(&expected),
                "{expected:?} is there: {texts:?}"
            );
        }
        for lane in ["partition", "kill", "transfer"] {
            assert!(
                texts.contains(&lane),
                "the {lane} lane is labelled: {texts:?}"
            );
        }
        assert!(
            !texts.contains(&"pause"),
            "no lane for a kind that did not occur"
        );
    }

    /// 150,000 operations over 10 minutes at latencies scattered over four decades: more
    /// distinct pixels than the limit, so that thinning happens after merging.
    fn large_history() -> Vec<Record> {
        let mut rng = Rng(0x5EED);
        (0..150_000)
            .map(|index| {
                let call_ns = index as u64 * 4_000_000;
                let latency_ns = nanos(1e-4 * 10f64.powf(rng.unit() * 4.0));
                let outcome = match rng.next() % 100 {
                    0..=1 => Outcome::Fail,
                    2 => Outcome::Info,
                    _ => Outcome::Ok,
                };
                op(
                    index,
                    rng.next().is_multiple_of(2),
                    call_ns,
                    latency_ns,
                    outcome,
                )
            })
            .collect()
    }

    #[test]
    fn over_the_limit_every_fail_and_info_point_survives_and_ok_points_are_bounded() {
        let history = large_history();
        let events = [event(FaultKind::Pause, 100.0, 130.0)];
        let svg = render(&history, &events, "large");
        let document = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        let (ok, fail, info) = markers(&document);
        let expected = |outcome| {
            history
                .iter()
                .filter(|record| record.outcome == outcome)
                .count()
        };
        assert_eq!(
            (fail, info),
            (expected(Outcome::Fail), expected(Outcome::Info))
        );
        assert_eq!(
            ok, OK_POINT_LIMIT,
            "merging left more than the limit, thinned to it"
        );
        assert!(svg.len() < 8 << 20, "{} bytes", svg.len());
    }

    #[test]
    fn an_empty_run_still_makes_a_well_formed_picture() {
        let svg = render(&[], &[], "nothing ran");
        let document = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        assert_eq!(markers(&document), (0, 0, 0));
        // Operations that took no time at all, and a fault that never ended before the run did.
        let history = [
            op(0, true, 5, 0, Outcome::Ok),
            op(1, false, 9, 0, Outcome::Info),
        ];
        let events = [event(FaultKind::Wipe, 0.5, 0.2)];
        let svg = render(&history, &events, "instant");
        let document = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        assert_eq!(markers(&document), (1, 0, 1));
    }

    #[test]
    fn thinning_keeps_exactly_the_limit_in_order_with_the_slowest() {
        let latency = |index: usize| {
            if index % 1000 == 7 {
                1e6
            } else {
                (index % 13) as f64
            }
        };
        let kept = thin((0..100_000).collect(), latency, 5_000);
        assert_eq!(kept.len(), 5_000);
        assert!(
            kept.windows(2).all(|pair| pair[0] < pair[1]),
            "in order, no duplicate"
        );
        assert!(
            (0..100_000)
                .filter(|index| index % 1000 == 7)
                .all(|slow| kept.contains(&slow))
        );
        // Evenly: the kept ones are spread over the whole range.
        assert!(kept[0] < 100 && kept[kept.len() - 1] > 99_900);
        assert_eq!(
            thin((0..10).collect(), latency, 10),
            (0..10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn only_decades_are_labelled_in_the_unit_that_reads_best() {
        assert_eq!(latency_label(&0.1), "100 µs");
        assert_eq!(latency_label(&1.0), "1 ms");
        assert_eq!(latency_label(&100.0), "100 ms");
        assert_eq!(latency_label(&10_000.0), "10 s");
        assert_eq!(latency_label(&3.0), "");
        assert_eq!(seconds_label(&10.0), "10");
        assert_eq!(seconds_label(&(0.1 + 0.2)), "0.3");
        assert_eq!(seconds_label(&0.0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }

    /// A synthetic run to look at: `cargo test -p balsa-cli --release plot::tests::sample --
    /// --ignored` writes `plot-sample.svg` into the temporary directory.
    #[test]
    #[ignore = "writes a file to look at"]
    fn sample() {
        let mut rng = Rng(42);
        let events = [
            event(FaultKind::Partition, 14.0, 24.0),
            event(FaultKind::Snapshot, 30.0, 30.0),
            event(FaultKind::Kill, 36.0, 41.0),
            event(FaultKind::Pause, 47.0, 49.5),
            event(FaultKind::Transfer, 53.0, 53.0),
        ];
        let mut history = Vec::new();
        let mut now_ns = 0u64;
        let mut index = 0;
        while now_ns < 60_000_000_000 {
            let t = seconds(now_ns);
            let write = rng.next().is_multiple_of(2);
            let base_ms = if write { 1.5 } else { 0.6 };
            // Log-normal-ish scatter around the base.
            let mut latency_ms =
                base_ms * (1.0 + 3.0 * rng.unit().powi(4)) * (0.6 + 0.8 * rng.unit());
            let mut outcome = Outcome::Ok;
            let during = |kind: FaultKind| {
                events.iter().any(|event| {
                    event.kind == kind && t >= seconds(event.start_ns) && t <= seconds(event.end_ns)
                })
            };
            if during(FaultKind::Partition) {
                match rng.next() % 10 {
                    0..=2 => (outcome, latency_ms) = (Outcome::Info, 2000.0),
                    3..=5 => (outcome, latency_ms) = (Outcome::Fail, 3.0 + 10.0 * rng.unit()),
                    _ => latency_ms += 200.0 + 800.0 * rng.unit(),
                }
            } else if during(FaultKind::Kill) && t < 37.5 {
                match rng.next() % 10 {
                    0..=1 => (outcome, latency_ms) = (Outcome::Fail, 1.0 + 5.0 * rng.unit()),
                    _ => latency_ms += 300.0 * rng.unit(),
                }
            } else if during(FaultKind::Pause) {
                latency_ms += 1000.0 * rng.unit();
            }
            history.push(op(
                index,
                write,
                now_ns,
                nanos(latency_ms / 1000.0),
                outcome,
            ));
            index += 1;
            now_ns += nanos(0.012 * rng.unit() + 0.006);
        }
        let svg = render(
            &history,
            &events,
            "balsa torture · seed 42 · 5 nodes · network: tcp",
        );
        let path = std::env::temp_dir().join("plot-sample.svg");
        std::fs::write(&path, svg).expect("the temporary directory is writable");
    }
}
