//! `balsa bench --plot FILE.svg` and `balsa bench --compare A.hgrm B.hgrm --plot FILE.svg`:
//! latency as pictures, drawn with `plotters`' SVG backend in the style of `balsa torture
//! --plot` (no fonts needed: text is `<text>` in the viewer's `sans-serif`; Okabe and Ito's
//! colour-blind-safe colours; a second cue besides colour where two series share a hue).
//!
//! A run's picture is one SVG with two panels, one above the other:
//!
//! - **latency by percentile** (HdrHistogram's plot): a curve per kind of operation (writes
//!   blue, reads vermillion); at x = p the curve's height is the latency that a share p of the
//!   operations stayed under. x is `log10(1/(1-p))`, so each tick to the right is ten times
//!   rarer: 0 %, 90 %, 99 %, 99.9 %, 99.99 % (and further when the run had the operations to
//!   reach it). A flat curve is a steady service; where it bends up is where the tail starts.
//! - **over time**, two charts on one time axis: operations per second (a line per kind), and
//!   the p50 (solid) and p99 (dashed, a lighter shade of the kind's colour) latency of the
//!   operations that ended in each interval.
//!
//! Latency axes are logarithmic (1, 2 and 5 of each decade labelled, see [`latency_ticks`]): a stall of tens of
//! milliseconds would otherwise flatten the sub-millisecond body of the curve to the axis. The interval is one second, shorter for runs under
//!   ten seconds (so that they have ten points or more), longer for runs so long that they
//!   would have more than [`MAX_BINS`] (a last interval covered for less than a quarter is left
//!   out: its rate would be noise).
//!
//! `--compare` draws the percentile panel alone, a curve per file, labelled with the file's name,
//! in as many colours as files (at most [`COMPARE_COLOURS`]`.len()`).
//!
//! Rule kept: the picture's size does not grow with the run's operations: a curve has a point
//! per step of the distribution (tens), the charts over time one per interval (at most
//! [`MAX_BINS`]).

use std::io::{self, Write};
use std::time::Duration;

use balsa::client::load::Measured;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The picture's width, and each panel's height, in SVG user units (pixels).
const WIDTH: u32 = 1200;
const HEAD_HEIGHT: u32 = 70;
const PERCENTILE_HEIGHT: u32 = 480;
const TIME_HEIGHT: u32 = 300;
/// The legends of the charts over time stand beside them, in a column this wide: inside, they
/// would hide the lines wherever the lines go.
const SIDE_LEGEND_WIDTH: u32 = 170;

/// The most intervals the charts over time draw.
pub const MAX_BINS: usize = 1000;

const FONT: &str = "sans-serif";

/// Writes (blue) and reads (vermillion), their p99 a lighter shade (sky blue, orange).
pub const WRITES_COLOUR: RGBColor = RGBColor(0x00, 0x72, 0xB2);
/// The reads' colour.
pub const READS_COLOUR: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const WRITES_P99_COLOUR: RGBColor = RGBColor(0x56, 0xB4, 0xE9);
const READS_P99_COLOUR: RGBColor = RGBColor(0xE6, 0x9F, 0x00);

/// One colour per compared file (Okabe–Ito, without its yellow, too pale on white).
pub const COMPARE_COLOURS: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0x00, 0x00, 0x00),
];

/// One curve of the percentile panel.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Its legend's name (`writes`, a file's name).
    pub label: String,
    /// Its colour.
    pub colour: RGBColor,
    /// The distribution's steps: (percentile 0.0–1.0, latency in µs), percentiles going up.
    pub steps: Vec<(f64, f64)>,
    /// Operations it counts.
    pub count: u64,
}

impl Curve {
    /// The latency at the first step at or past `percentile`, in µs.
    fn at(&self, percentile: f64) -> f64 {
        self.steps
            .iter()
            .find(|(p, _)| *p >= percentile)
            .or(self.steps.last())
            .map_or(0.0, |(_, us)| *us)
    }

    /// The largest latency, in µs (the last step's).
    fn max(&self) -> f64 {
        self.steps.iter().map(|(_, us)| *us).fold(0.0, f64::max)
    }
}

/// One kind of operation over time.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// `writes`, `reads`, `stale reads`.
    pub label: String,
    /// The p50 line's and throughput's colour, and the p99 line's.
    pub colour: RGBColor,
    /// The p99 line's colour.
    pub p99_colour: RGBColor,
    /// One per interval, in time order.
    pub bins: Vec<Bin>,
}

/// The colours of a kind: the writes', or the reads'.
pub fn kind_colours(reads: bool) -> (RGBColor, RGBColor) {
    if reads {
        (READS_COLOUR, READS_P99_COLOUR)
    } else {
        (WRITES_COLOUR, WRITES_P99_COLOUR)
    }
}

/// One interval of a [`Timeline`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bin {
    /// Its middle, in seconds since the measured phase started.
    pub mid_s: f64,
    /// Operations that ended in it, per second.
    pub per_sec: f64,
    /// The p50 and p99 latency of those, in µs (`None`: none ended in it).
    pub p50_us: Option<f64>,
    /// See `p50_us`.
    pub p99_us: Option<f64>,
}

/// The interval of the charts over time for a run of `elapsed_s` seconds (see the module doc).
pub fn bin_width_s(elapsed_s: f64) -> f64 {
    const SHORT: [f64; 6] = [0.5, 0.2, 0.1, 0.05, 0.02, 0.01];
    const LONG: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];
    if elapsed_s < 10.0 {
        SHORT
            .into_iter()
            .find(|width| elapsed_s / width >= 10.0)
            .unwrap_or(0.01)
    } else {
        LONG.into_iter()
            .find(|width| elapsed_s / width <= MAX_BINS as f64)
            .unwrap_or(3600.0)
    }
}

/// `raw`'s operations over the `elapsed` of their run, in intervals of [`bin_width_s`].
pub fn timeline(label: &str, reads: bool, raw: &Measured, elapsed: Duration) -> Timeline {
    let elapsed_s = elapsed.as_secs_f64();
    let width_s = bin_width_s(elapsed_s);
    let count = bin_index((elapsed_s / width_s).ceil()).max(1);
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); count];
    for (&ended_us, &latency_us) in raw.ended_us.iter().zip(&raw.latencies_us) {
        let at = bin_index(ended_us as f64 / 1e6 / width_s).min(count - 1);
        latencies[at].push(latency_us);
    }
    let mut bins = Vec::with_capacity(count);
    for (index, mut ended) in latencies.into_iter().enumerate() {
        let start_s = index as f64 * width_s;
        let covered_s = (elapsed_s - start_s).min(width_s);
        // A last interval covered for less than a quarter: its rate would be noise.
        if count > 1 && covered_s < width_s / 4.0 {
            continue;
        }
        ended.sort_unstable();
        bins.push(Bin {
            mid_s: start_s + covered_s.max(0.0) / 2.0,
            per_sec: ended.len() as f64 / covered_s.max(1e-6),
            p50_us: nearest_rank(&ended, 0.50),
            p99_us: nearest_rank(&ended, 0.99),
        });
    }
    let (colour, p99_colour) = kind_colours(reads);
    Timeline {
        label: label.to_owned(),
        colour,
        p99_colour,
        bins,
    }
}

/// The value at `quantile` of `sorted` by the nearest rank (`None` when empty).
fn nearest_rank(sorted: &[u64], quantile: f64) -> Option<f64> {
    let rank = bin_index((quantile * sorted.len() as f64).ceil()).max(1);
    sorted.get(rank - 1).map(|&us| us as f64)
}

/// A small non-negative float as an index (saturating; the float-to-int `as` saturates).
fn bin_index(value: f64) -> usize {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a non-negative count of intervals, saturating"
    )]
    let index = value.max(0.0) as usize;
    index
}

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A run's picture: the percentile panel of `curves` and the panel over time of `timelines`,
/// under `title` and `subtitle`.
///
/// # Errors
/// Any write error.
pub fn write_run_svg(
    title: &str,
    subtitle: &str,
    curves: &[Curve],
    timelines: &[Timeline],
    out: &mut dyn Write,
) -> io::Result<()> {
    let height = HEAD_HEIGHT + PERCENTILE_HEIGHT + 2 * TIME_HEIGHT;
    render(height, out, |root| {
        let (head, body) = root.split_vertically(HEAD_HEIGHT);
        let (percentiles, time) = body.split_vertically(PERCENTILE_HEIGHT);
        let (charts, keys) = time.split_horizontally(WIDTH - SIDE_LEGEND_WIDTH);
        let (rate, latency) = charts.split_vertically(TIME_HEIGHT);
        let (rate_key, latency_key) = keys.split_vertically(TIME_HEIGHT);
        draw_head(&head, title, subtitle)?;
        draw_percentiles(&percentiles, curves)?;
        draw_over_time([&rate, &rate_key], [&latency, &latency_key], timelines)
    })
}

/// `--compare`'s picture: the percentile panel of `curves` alone.
///
/// # Errors
/// Any write error.
pub fn write_compare_svg(
    title: &str,
    subtitle: &str,
    curves: &[Curve],
    out: &mut dyn Write,
) -> io::Result<()> {
    render(HEAD_HEIGHT + PERCENTILE_HEIGHT + 120, out, |root| {
        let (head, body) = root.split_vertically(HEAD_HEIGHT);
        draw_head(&head, title, subtitle)?;
        draw_percentiles(&body, curves)
    })
}

/// Draws with `draw` on a white picture `height` high, and writes it to `out`.
fn render(
    height: u32,
    out: &mut dyn Write,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> PlotResult<()>,
) -> io::Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|error| error.to_string().into())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|error| error.to_string().into()));
        drawn.map_err(|error: Box<dyn std::error::Error>| io::Error::other(error.to_string()))?;
    }
    out.write_all(svg.as_bytes())?;
    out.flush()
}

fn draw_head(
    head: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    subtitle: &str,
) -> PlotResult<()> {
    let title_style = TextStyle::from((FONT, 26).into_font().style(FontStyle::Bold));
    head.draw(&Text::new(title.to_owned(), (16, 10), title_style))?;
    head.draw(&Text::new(
        subtitle.to_owned(),
        (16, 44),
        (FONT, 16).into_font(),
    ))?;
    Ok(())
}

/// The x of a percentile: `log10(1/(1-p))` (0 % at 0, 90 % at 1, 99 % at 2…); `None` at 100 %.
pub fn percentile_x(percentile: f64) -> Option<f64> {
    (percentile < 1.0).then(|| -(1.0 - percentile).log10())
}

/// A tick of the percentile axis: `0%`, `90%`, `99%`, `99.9%`… at 0, 1, 2, 3…
pub fn percentile_label(x: &f64) -> String {
    if (x - x.round()).abs() > 1e-9 {
        return String::new();
    }
    let nines = bin_index(x.round());
    match nines {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        _ => format!("99.{}%", "9".repeat(nines - 2)),
    }
}

/// A latency tick's label: `200 µs`, `1 ms`, `5 s` for the values 1, 2 and 5 of each decade
/// (blank for any other value).
fn latency_label(us: f64) -> String {
    if us <= 0.0 {
        return String::new();
    }
    let decade = 10f64.powf(us.log10().floor());
    let mantissa = us / decade;
    let labelled = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6);
    if !labelled {
        return String::new();
    }
    let us = (mantissa.round() * decade).round();
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{} ms", trimmed(us / 1000.0))
    } else {
        format!("{} s", trimmed(us / 1_000_000.0))
    }
}

/// A number without float noise or trailing zeros: `2`, `0.5`, `20`.
fn trimmed(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The latency for a legend: `850 µs`, `3.44 ms`, `36.7 ms`, `1.25 s`.
pub fn latency_text(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// A log latency axis from the 1, 2 or 5 of a decade at or below `lowest` µs (a little under
/// it, so that its label shows) to `top` µs, at least a decade.
fn log_axis(lowest: f64, top: f64) -> std::ops::Range<f64> {
    let lowest = if lowest.is_finite() {
        lowest.max(1.0)
    } else {
        1.0
    };
    let decade = 10f64.powf(lowest.log10().floor());
    // The largest of the decade's 1, 2 and 5 at or below the lowest value.
    let floor = [5.0, 2.0, 1.0]
        .into_iter()
        .map(|mantissa| decade * mantissa)
        .find(|value| *value <= lowest)
        .unwrap_or(decade);
    floor * 0.9..top.max(floor * 10.0)
}

/// The values 1, 2 and 5 of each decade within `range`, in µs.
fn ticks_125(range: &std::ops::Range<f64>) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(range.start.max(1e-3).log10().floor());
    while decade <= range.end {
        for mantissa in [1.0, 2.0, 5.0] {
            let value = decade * mantissa;
            if range.contains(&value) {
                ticks.push(value);
            }
        }
        decade *= 10.0;
    }
    ticks
}

type LogChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, LogCoord<f64>>>;

/// The latency axis' ticks, drawn here rather than by plotters (whose log ticks repeat each
/// decade's value, its last minor tick and the next major one, in the same place): a grid
/// line and a label at each of [`ticks_125`] in `y`, across `x`.
fn latency_ticks(
    chart: &LogChart<'_, '_>,
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    x: std::ops::Range<f64>,
    y: &std::ops::Range<f64>,
) -> PlotResult<()> {
    let grid = RGBColor(0xE6, 0xE6, 0xE6).stroke_width(1);
    let label = TextStyle::from((FONT, 15).into_font())
        .pos(Pos::new(HPos::Right, VPos::Center))
        .color(&BLACK);
    let (base_x, base_y) = area.get_base_pixel();
    for value in ticks_125(y) {
        chart.plotting_area().draw(&PathElement::new(
            vec![(x.start, value), (x.end, value)],
            grid,
        ))?;
        // `backend_coord` is in the whole picture's pixels, `area` counts from its corner.
        let (px, py) = chart.backend_coord(&(x.start, value));
        area.draw(&Text::new(
            latency_label(value),
            (px - base_x - 8, py - base_y),
            label.clone(),
        ))?;
        area.draw(&PathElement::new(
            vec![(px - base_x - 5, py - base_y), (px - base_x, py - base_y)],
            BLACK.stroke_width(1),
        ))?;
    }
    Ok(())
}

fn draw_percentiles(area: &DrawingArea<SVGBackend<'_>, Shift>, curves: &[Curve]) -> PlotResult<()> {
    let finite = |curve: &Curve| -> Vec<(f64, f64)> {
        curve
            .steps
            .iter()
            .filter_map(|&(p, us)| percentile_x(p).map(|x| (x, us.max(1.0))))
            .collect()
    };
    let points: Vec<(f64, f64)> = curves.iter().flat_map(finite).collect();
    let widest = points.iter().map(|(x, _)| *x).fold(0.0, f64::max);
    // 99.99 % always shows; further when a curve reaches it; never past 99.9999999 %.
    let x_max = widest.ceil().clamp(4.0, 9.0);
    let lowest = points
        .iter()
        .map(|(_, us)| *us)
        .fold(f64::INFINITY, f64::min);
    let highest = points.iter().map(|(_, us)| *us).fold(1.0, f64::max);
    // Headroom above the slowest for the legend.
    let y_range = log_axis(lowest, highest * 2.5);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "latency by percentile (HdrHistogram style): the latency that share of operations \
             stayed under",
            (FONT, 18),
        )
        .margin(12)
        .margin_right(50)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..x_max, y_range.clone().log_scale())?;
    chart
        .configure_mesh()
        // A tick per whole x (the key points of 0..n asked for n + 1 labels are the integers;
        // `percentile_label` leaves any other blank).
        .x_labels(bin_index(x_max) + 1)
        .x_label_formatter(&percentile_label)
        // The latency ticks are `latency_ticks`'.
        .y_labels(1)
        .y_label_formatter(&|_| String::new())
        .x_desc("percentile (log scale of 1/(1-p): each step right is ten times rarer)")
        .y_desc("latency (log scale)")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .bold_line_style(RGBColor(0xE6, 0xE6, 0xE6))
        .light_line_style(TRANSPARENT)
        .draw()?;
    latency_ticks(&chart, area, 0.0..x_max, &y_range)?;
    for (index, curve) in curves.iter().enumerate() {
        let style = curve.colour.stroke_width(line_width(index, curves.len()));
        let legend = format!(
            "{}: {} ops, p50 {}, p99 {}, p99.9 {}, max {}",
            curve.label,
            thousands(curve.count),
            latency_text(curve.at(0.5)),
            latency_text(curve.at(0.99)),
            latency_text(curve.at(0.999)),
            latency_text(curve.max()),
        );
        chart
            .draw_series(std::iter::once(PathElement::new(finite(curve), style)))?
            .label(legend)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    legend(
        &mut chart,
        !curves.is_empty(),
        SeriesLabelPosition::UpperLeft,
    )
}

/// The charts over time: operations per second in `rate`, p50 and p99 in `latency`.
fn draw_over_time(
    [rate, rate_key]: [&DrawingArea<SVGBackend<'_>, Shift>; 2],
    [latency, latency_key]: [&DrawingArea<SVGBackend<'_>, Shift>; 2],
    timelines: &[Timeline],
) -> PlotResult<()> {
    let bins = || timelines.iter().flat_map(|timeline| &timeline.bins);
    let end_s = bins().map(|bin| bin.mid_s).fold(0.0, f64::max).max(1e-3) * 1.05;
    let top_rate = bins().map(|bin| bin.per_sec).fold(1.0, f64::max) * 1.1;
    let lowest_us = bins()
        .filter_map(|bin| bin.p50_us)
        .fold(f64::INFINITY, f64::min);
    let highest_us = bins()
        .filter_map(|bin| bin.p99_us.or(bin.p50_us))
        .fold(1.0, f64::max);

    let mut rate_chart = ChartBuilder::on(rate)
        .caption(
            "throughput over time: operations that ended per second",
            (FONT, 18),
        )
        .margin(12)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..end_s, 0.0..top_rate)?;
    rate_chart
        .configure_mesh()
        .x_labels(12)
        .y_labels(6)
        .x_label_formatter(&|s| trimmed(*s))
        .y_label_formatter(&|value| thousands(bin_index(value.round()) as u64))
        .x_desc(TIME_DESC)
        .y_desc("operations/s")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .bold_line_style(RGBColor(0xE6, 0xE6, 0xE6))
        .light_line_style(TRANSPARENT)
        .draw()?;
    let mut keys = Vec::new();
    for (index, timeline) in timelines.iter().enumerate() {
        let style = timeline
            .colour
            .stroke_width(line_width(index, timelines.len()));
        let points: Vec<(f64, f64)> = timeline
            .bins
            .iter()
            .map(|bin| (bin.mid_s, bin.per_sec))
            .collect();
        rate_chart.draw_series(std::iter::once(PathElement::new(points, style)))?;
        keys.push((format!("{}/s", timeline.label), style, false));
    }
    side_legend(rate_key, &keys)?;

    let y_range = log_axis(lowest_us, highest_us * 1.5);
    let mut latency_chart = ChartBuilder::on(latency)
        .caption(
            "latency over time: p50 (solid) and p99 (dashed) of the operations that ended then",
            (FONT, 18),
        )
        .margin(12)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..end_s, y_range.clone().log_scale())?;
    latency_chart
        .configure_mesh()
        .x_labels(12)
        // The latency ticks are `latency_ticks`'.
        .y_labels(1)
        .y_label_formatter(&|_| String::new())
        .x_label_formatter(&|s| trimmed(*s))
        .x_desc(TIME_DESC)
        .y_desc("latency (log scale)")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .bold_line_style(RGBColor(0xE6, 0xE6, 0xE6))
        .light_line_style(TRANSPARENT)
        .draw()?;
    latency_ticks(&latency_chart, latency, 0.0..end_s, &y_range)?;
    let mut keys = Vec::new();
    for timeline in timelines {
        let p50 = timeline.colour.stroke_width(2);
        let p99 = timeline.p99_colour.stroke_width(2);
        let points = |pick: fn(&Bin) -> Option<f64>| -> Vec<(f64, f64)> {
            timeline
                .bins
                .iter()
                .filter_map(|bin| pick(bin).map(|us| (bin.mid_s, us.max(1.0))))
                .collect()
        };
        latency_chart.draw_series(std::iter::once(PathElement::new(
            points(|bin| bin.p50_us),
            p50,
        )))?;
        latency_chart.draw_series(std::iter::once(DashedPathElement::new(
            points(|bin| bin.p99_us),
            7,
            4,
            p99,
        )))?;
        keys.push((format!("{} p50", timeline.label), p50, false));
        keys.push((format!("{} p99", timeline.label), p99, true));
    }
    side_legend(latency_key, &keys)
}

/// A legend beside a chart: each entry's line (dashed or not) and its label, one under the
/// other from the height of the chart's top.
fn side_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[(String, ShapeStyle, bool)],
) -> PlotResult<()> {
    let text = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (row, (label, style, dashed)) in (0_i32..).zip(entries) {
        let y = 56 + 26 * row;
        let line = vec![(4, y), (34, y)];
        if *dashed {
            area.draw(&DashedPathElement::new(line, 7, 4, *style))?;
        } else {
            area.draw(&PathElement::new(line, *style))?;
        }
        area.draw(&Text::new(label.clone(), (42, y), text.clone()))?;
    }
    Ok(())
}

/// The width of line `index` of `count` drawn in order: the first widest, each next one a pixel
/// narrower, down to 2, so that a line drawn over an equal one leaves it showing at its edges
/// (a mixed run's writes and reads per second are often the same).
fn line_width(index: usize, count: usize) -> u32 {
    let wider = u32::try_from(count.saturating_sub(index + 1)).unwrap_or(u32::MAX);
    2_u32.saturating_add(wider.min(4))
}

const TIME_DESC: &str = "time since the measured phase started (s)";

/// The series' legend, at `position` inside the chart.
fn legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    any: bool,
    position: SeriesLabelPosition,
) -> PlotResult<()> {
    if any {
        chart
            .configure_series_labels()
            .position(position)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(0xAA, 0xAA, 0xAA))
            .label_font((FONT, 15))
            .draw()?;
    }
    Ok(())
}

/// `1234567` as `1,234,567` (the library's, so that every figure a user reads is written alike).
pub use balsa::kv::thousands;

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(colour: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2)
    }

    /// The elements named `tag` whose `stroke` is `colour`.
    fn stroked<'a>(
        document: &'a roxmltree::Document<'a>,
        tag: &str,
        colour: RGBColor,
    ) -> Vec<roxmltree::Node<'a, 'a>> {
        let colour = hex(colour);
        document
            .descendants()
            .filter(|node| node.has_tag_name(tag) && node.attribute("stroke") == Some(&colour))
            .collect()
    }

    fn texts<'a>(document: &'a roxmltree::Document<'a>) -> Vec<&'a str> {
        document
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .filter_map(|node| node.text())
            .map(str::trim)
            .collect()
    }

    /// How many points a polyline has.
    fn points(node: &roxmltree::Node<'_, '_>) -> usize {
        node.attribute("points")
            .map_or(0, |points| points.split_whitespace().count())
    }

    /// `n` samples `apart_us` apart with latencies 100..100+n µs.
    fn measured(n: u64, apart_us: u64) -> Measured {
        Measured {
            latencies_us: (0..n).map(|k| 100 + k).collect(),
            ended_us: (0..n).map(|k| k * apart_us).collect(),
            errors: 0,
        }
    }

    fn curve(label: &str, colour: RGBColor, raw: &Measured) -> Curve {
        let mut hist = crate::bench::figures::new_histogram();
        for &us in &raw.latencies_us {
            hist.record(us).expect("within bounds");
        }
        Curve {
            label: label.into(),
            colour,
            steps: crate::bench::figures::percentile_steps(&hist)
                .into_iter()
                .map(|(p, us, _)| (p, us))
                .collect(),
            count: hist.len(),
        }
    }

    /// A mixed run's picture: a percentile curve per kind (every finite step a point), a
    /// throughput line per kind, solid p50 and dashed p99 lines, the ticks of the percentile
    /// axis and the legends.
    #[test]
    fn a_run_has_a_curve_a_rate_and_two_latency_lines_per_kind() {
        let writes = measured(2000, 2000);
        let reads = measured(500, 8000);
        let elapsed = Duration::from_secs(4);
        let curves = [
            curve("writes", WRITES_COLOUR, &writes),
            curve("reads", READS_COLOUR, &reads),
        ];
        let timelines = [
            timeline("writes", false, &writes, elapsed),
            timeline("reads", true, &reads, elapsed),
        ];
        let mut svg = Vec::new();
        write_run_svg("a run", "mixed:0.2", &curves, &timelines, &mut svg).expect("in memory");
        let svg = String::from_utf8(svg).expect("UTF-8");
        let document = roxmltree::Document::parse(&svg).expect("well-formed XML");
        assert_eq!(document.root_element().tag_name().name(), "svg");

        for (curve, timeline) in curves.iter().zip(&timelines) {
            let lines = stroked(&document, "polyline", curve.colour);
            // The percentile curve, the throughput line and the p50 line (and the legends'
            // two-point samples, which are paths of their own).
            let finite = curve.steps.iter().filter(|(p, _)| *p < 1.0).count();
            assert!(
                lines.iter().any(|line| points(line) == finite),
                "{}: a curve of {finite} points",
                curve.label
            );
            let bins = timeline.bins.len();
            assert!(bins >= 10, "{bins} intervals");
            assert_eq!(
                lines.iter().filter(|line| points(line) == bins).count(),
                2,
                "{}: throughput and p50 over {bins} intervals",
                curve.label
            );
            assert!(
                !stroked(&document, "line", timeline.p99_colour).is_empty()
                    || !stroked(&document, "polyline", timeline.p99_colour).is_empty(),
                "{}: the dashed p99",
                curve.label
            );
        }
        let texts = texts(&document);
        for expected in [
            "0%",
            "90%",
            "99%",
            "99.9%",
            "99.99%",
            "writes/s",
            "reads p99",
        ] {
            assert!(texts.contains(&expected), "{expected:?} in {texts:?}");
        }
        assert!(
            texts
                .iter()
                .any(|text| text.starts_with("writes: 2,000 ops, p50")),
            "{texts:?}"
        );
    }

    /// Intervals: ten or more for short runs, one second from ten seconds, bounded for long
    /// ones; each interval's rate is its count over the time it covers.
    #[test]
    fn intervals_are_a_second_or_enough_for_ten_points() {
        assert_eq!(bin_width_s(30.0), 1.0);
        assert_eq!(bin_width_s(2.0), 0.2);
        assert_eq!(bin_width_s(0.05), 0.01);
        assert!(86_400.0 / bin_width_s(86_400.0) <= MAX_BINS as f64);
        // 100 operations a second, each 10 ms after the last (off the intervals' edges by
        // 5 ms), taking 1 ms each.
        let raw = |count: u64| Measured {
            latencies_us: (0..count).map(|_| 1000).collect(),
            ended_us: (0..count).map(|k| k * 10_000 + 5_000).collect(),
            errors: 0,
        };
        let line = timeline("writes", false, &raw(350), Duration::from_millis(3500));
        assert_eq!(
            line.bins.len(),
            18,
            "0.2 s intervals over 3.5 s, the last half covered"
        );
        assert!(
            line.bins
                .iter()
                .all(|bin| (bin.per_sec - 100.0).abs() < 1e-6)
        );
        assert!(line.bins.iter().all(|bin| bin.p99_us == Some(1000.0)));
        // A last interval covered for less than a quarter (30 ms of 200) is left out.
        let line = timeline("writes", false, &raw(341), Duration::from_millis(3430));
        assert_eq!(line.bins.len(), 17);
        assert!(
            line.bins
                .iter()
                .all(|bin| (bin.per_sec - 100.0).abs() < 1e-6)
        );
    }

    #[test]
    fn percentile_ticks_and_units_read_as_people_say_them() {
        let labels: Vec<String> = (0..6).map(|k| percentile_label(&(k as f64))).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        assert_eq!(percentile_x(0.0), Some(0.0));
        assert!((percentile_x(0.99).expect("finite") - 2.0).abs() < 1e-9);
        assert_eq!(percentile_x(1.0), None);
        let labels: Vec<String> = [100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0, 50_000.0, 2e6]
            .iter()
            .map(|us| latency_label(*us))
            .collect();
        assert_eq!(
            labels,
            [
                "100 µs", "200 µs", "", "500 µs", "1 ms", "2 ms", "50 ms", "2 s"
            ]
        );
        assert_eq!(latency_text(453.0), "453 µs");
        assert_eq!(latency_text(3443.0), "3.44 ms");
        assert_eq!(latency_text(12_345.0), "12.3 ms");
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 0.5), Some(2.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    /// Nothing measured still makes a well-formed picture.
    #[test]
    fn an_empty_run_still_makes_a_well_formed_picture() {
        let empty = Measured::default();
        let curves = [curve("writes", WRITES_COLOUR, &empty)];
        let timelines = [timeline("writes", false, &empty, Duration::ZERO)];
        let mut svg = Vec::new();
        write_run_svg("nothing", "", &curves, &timelines, &mut svg).expect("in memory");
        let svg = String::from_utf8(svg).expect("UTF-8");
        roxmltree::Document::parse(&svg).expect("well-formed XML");
    }
}
