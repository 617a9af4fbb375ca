//! Dependency-free SVG charts for `cargo xtask bench`: line charts (optionally
//! log2 x for folio sizes, log10 y) and grouped bar charts with error whiskers,
//! written as plain text sized for about 800×480.
//!
//! Points that cannot be placed (NaN, infinities, magnitudes above 1e300,
//! non-positive values on a log axis) are dropped rather than reported: a plot
//! is a picture of the results, and `results.json` keeps the raw numbers.

use std::fmt::Write as _;

/// One line of a line chart: a name for the legend and (x, y) points.
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// (x, y) in data units; drawn in x order.
    pub points: Vec<(f64, f64)>,
}

/// One bar: its group (x-axis category, e.g. "fork order-0"), its series
/// (legend, e.g. "Folium", "Linux 6.12"), its value and an optional error
/// half-width (standard deviation) drawn as a whisker.
pub struct Bar {
    /// The x-axis category the bar sits in.
    pub group: String,
    /// The legend entry (and colour) the bar belongs to.
    pub series: String,
    /// The bar height in data units; negative values are drawn as 0.
    pub value: f64,
    /// Half-width of the whisker around `value`, if any.
    pub err: Option<f64>,
}

/// Canvas size; `viewBox` uses the same units, so viewers may scale freely.
const W: f64 = 800.0;
const H: f64 = 480.0;
/// Space kept clear on the right of the plot and around the legend.
const MARGIN: f64 = 24.0;
/// Baseline of the title.
const TITLE_Y: f64 = 26.0;
/// Baseline of the first legend row, and the distance between rows.
const LEGEND_Y: f64 = 50.0;
const LEGEND_ROW: f64 = 18.0;
/// Most tick intervals along y (about 55 px apart at this height) and along
/// a linear x (labels of up to ~8 characters still fit between ticks).
const Y_INTERVALS: usize = 6;
const X_INTERVALS: usize = 8;
/// Most ticks on a log axis before every other power is left unlabelled.
const LOG2_TICKS: usize = 12;
const LOG10_TICKS: usize = 8;
/// Beyond this, range arithmetic (span, rounded-up ends) could overflow.
const MAX_MAG: f64 = 1e300;
/// Names longer than this are cut so one entry cannot push the legend or the
/// group labels off the canvas.
const MAX_NAME: usize = 48;

/// Okabe–Ito colours, ordered so the first few have the most contrast on white
/// and against each other; yellow (weak on white) comes last.
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442",
];

/// `s` with the five XML special characters replaced by entities, safe both
/// as element text and inside a double-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Whether a coordinate can go on a linear axis.
fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_MAG
}

/// `s` cut to [`MAX_NAME`] characters (on a character boundary).
fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_NAME {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_NAME - 1).collect();
        t.push('…');
        t
    }
}

/// Rough rendered width of `s` in a proportional sans-serif font: layout only
/// needs to avoid overlaps, not to be exact.
fn text_w(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.58
}

/// "Nice" tick values covering `lo..=hi` with at most `max_intervals` steps of
/// 1, 2 or 5 times a power of ten. The first tick is at or below `lo`, the
/// last at or above `hi`. Falls back to `[lo, hi]` when no step is usable
/// (empty, denormal or overflowing ranges).
fn nice_ticks(lo: f64, hi: f64, max_intervals: usize) -> Vec<f64> {
    let n = max_intervals.max(1) as f64;
    let span = hi - lo;
    if !(span > 0.0 && span.is_finite()) {
        return vec![lo, hi];
    }
    let mut mag = 10f64.powf((span / n).log10().floor());
    // The first magnitude tried is at most one decade too small, so two
    // decades always find a step; the bound only guards against float quirks.
    for _ in 0..4 {
        for m in [1.0, 2.0, 5.0] {
            let step = m * mag;
            if !step.is_normal() {
                return vec![lo, hi];
            }
            // The epsilon keeps `0.3 / 0.1 = 2.9999…` from adding a whole
            // extra step at either end.
            let a = (lo / step + 1e-9).floor();
            let b = (hi / step - 1e-9).ceil();
            if b - a <= n {
                let ticks: Vec<f64> = (0..=(b - a) as i64)
                    .map(|k| (a + k as f64) * step)
                    .collect();
                if ticks.iter().all(|t| t.is_finite()) {
                    return ticks;
                }
                return vec![lo, hi];
            }
        }
        mag *= 10.0;
    }
    vec![lo, hi]
}

/// Drops trailing zeros of a fixed or exponent decimal (`"2.50"` → `"2.5"`,
/// `"3.00e-5"` → `"3e-5"`).
fn trim_zeros(s: &str) -> String {
    let (mant, exp) = match s.find('e') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mant = if mant.contains('.') {
        mant.trim_end_matches('0').trim_end_matches('.')
    } else {
        mant
    };
    let out = format!("{mant}{exp}");
    if out == "-0" { "0".to_string() } else { out }
}

/// A compact tick label for `v` on an axis whose ticks are `step` apart:
/// `0`, `0.5`, `250`, `1.2k`, `3M`, and exponent form (`2.5e-5`, `4e18`)
/// where suffixes run out. Only as many decimals as `step` needs.
fn fmt_num(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    let step = if step.is_normal() { step.abs() } else { a };
    if a < step * 1e-6 {
        // Float noise around a zero tick (e.g. -3 × 0.1 + 0.3).
        return "0".to_string();
    }
    if !(1e-3..1e15).contains(&a) {
        let d = (a.log10().floor() - step.log10().floor()).clamp(0.0, 3.0) as usize;
        return trim_zeros(&format!("{v:.d$e}"));
    }
    let (scale, suffix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(s, _)| a >= *s)
        .unwrap_or((1.0, ""));
    let d = (-((step / scale).log10() + 1e-9).floor()).clamp(0.0, 6.0) as usize;
    format!("{}{suffix}", trim_zeros(&format!("{:.d$}", v / scale)))
}

/// `v` to three significant figures, in the same compact style as ticks.
fn fmt_sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return fmt_num(v, 1.0);
    }
    fmt_num(v, 10f64.powf(v.abs().log10().floor() - 2.0))
}

/// A size given in KiB as `4K`, `256K`, `2M`, `1.5M`, `1G`; below 1 KiB, in
/// bytes (`512`).
fn fmt_kib(v: f64) -> String {
    let (scale, suffix) = [
        (1024.0 * 1024.0 * 1024.0, "T"),
        (1024.0 * 1024.0, "G"),
        (1024.0, "M"),
        (1.0, "K"),
    ]
    .into_iter()
    .find(|(s, _)| v.abs() >= *s)
    .unwrap_or((1.0 / 1024.0, ""));
    format!("{}{suffix}", trim_zeros(&format!("{:.2}", v / scale)))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    Linear,
    Log2,
    Log10,
}

/// One axis: its scale, its range in scaled units (log2/log10 of the data for
/// log axes) and labelled ticks in data units. Always `lo < hi`, both finite.
struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    /// A linear axis over `min..=max` with nice ticks; `from_zero` keeps 0 in
    /// range so bar heights and y values compare by length.
    fn linear(min: f64, max: f64, from_zero: bool, max_intervals: usize) -> Axis {
        let (mut lo, mut hi) = if from_zero {
            (min.min(0.0), max.max(0.0))
        } else {
            (min, max)
        };
        if hi <= lo {
            if from_zero {
                hi = 1.0;
            } else {
                let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.5 };
                lo -= pad;
                hi += pad;
            }
        }
        if hi <= lo {
            // Half of the smallest denormal rounds to nothing.
            lo -= 1.0;
            hi += 1.0;
        }
        let t = nice_ticks(lo, hi, max_intervals);
        let step = if t.len() >= 2 { t[1] - t[0] } else { hi - lo };
        Axis {
            scale: Scale::Linear,
            lo: t[0].min(lo),
            hi: t[t.len() - 1].max(hi),
            ticks: t.iter().map(|&v| (v, fmt_num(v, step))).collect(),
        }
    }

    /// A log axis over `min..=max` (both > 0) with ticks at powers of `base`
    /// (2 or 10), thinned to at most `max_ticks`; a range within one or two
    /// decades also gets ticks at 2× and 5× so it is not left with two labels.
    fn log(min: f64, max: f64, scale: Scale, max_ticks: usize) -> Axis {
        let (lg, base): (fn(f64) -> f64, f64) = match scale {
            Scale::Log2 => (f64::log2, 2.0),
            _ => (f64::log10, 10.0),
        };
        let mut a = lg(min).floor();
        let mut b = lg(max).ceil();
        if b <= a {
            a -= 1.0;
            b += 1.0;
        }
        let n = (b - a) as usize;
        let stride = n.div_ceil(max_ticks.max(2) - 1).max(1);
        // Round the top up so both ends of the frame carry a tick.
        let b = a + (n.div_ceil(stride) * stride) as f64;
        let label = |v: f64| match scale {
            Scale::Log2 => fmt_kib(v),
            _ => fmt_num(v, v),
        };
        let mut ticks = Vec::new();
        let mut e = a;
        while e <= b {
            let v = base.powf(e);
            // 10^-324 is below the smallest denormal: it rounds to 0.
            if v > 0.0 && v.is_finite() {
                ticks.push((v, label(v)));
                if scale == Scale::Log10 && n <= 2 && e < b {
                    for m in [2.0, 5.0] {
                        ticks.push((m * v, label(m * v)));
                    }
                }
            }
            e += stride as f64;
        }
        Axis {
            scale,
            lo: a,
            hi: b,
            ticks,
        }
    }

    /// Where `v` falls along the axis, 0 at `lo` and 1 at `hi`.
    fn frac(&self, v: f64) -> f64 {
        let t = match self.scale {
            Scale::Linear => v,
            Scale::Log2 => v.log2(),
            Scale::Log10 => v.log10(),
        };
        (t - self.lo) / (self.hi - self.lo)
    }
}

/// The plot area in canvas units (y grows downwards).
#[derive(Clone, Copy)]
struct Frame {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl Frame {
    fn x(&self, ax: &Axis, v: f64) -> f64 {
        self.left + ax.frac(v) * (self.right - self.left)
    }

    fn y(&self, ax: &Axis, v: f64) -> f64 {
        self.bottom - ax.frac(v) * (self.bottom - self.top)
    }
}

/// How a legend entry shows its series.
#[derive(Clone, Copy)]
enum Key {
    /// A short line through the series' marker.
    Line(usize),
    /// A filled square, like the bars.
    Swatch,
}

/// Canvas coordinates, to one decimal (a tenth of a pixel at 1:1).
fn n(v: f64) -> String {
    let s = format!("{v:.1}");
    if s == "-0.0" { "0.0".to_string() } else { s }
}

/// The document start: root element, white background (so dark viewers and
/// PNG conversions stay legible) and the title.
fn open(title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\" fill=\"#222\">\n\
         <rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n"
    );
    text(
        &mut s,
        W / 2.0,
        TITLE_Y,
        "middle",
        "font-size=\"16\" font-weight=\"bold\"",
        &clip_title(title),
    );
    s
}

/// Titles may be longer than names, but not wider than the canvas.
fn clip_title(t: &str) -> String {
    let max = ((W - 2.0 * MARGIN) / (16.0 * 0.58)) as usize;
    if t.chars().count() <= max {
        t.to_string()
    } else {
        let mut c: String = t.chars().take(max - 1).collect();
        c.push('…');
        c
    }
}

/// A `<text>` element; `extra` is raw attribute text supplied by this module.
fn text(s: &mut String, x: f64, y: f64, anchor: &str, extra: &str, content: &str) {
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" {extra}>{}</text>",
        n(x),
        n(y),
        escape(content)
    );
}

/// The whole document for a chart with nothing drawable.
fn no_data(title: &str) -> String {
    let mut s = open(title);
    text(
        &mut s,
        W / 2.0,
        H / 2.0,
        "middle",
        "font-size=\"14\" fill=\"#666\"",
        "no data",
    );
    s.push_str("</svg>\n");
    s
}

/// Lays out the legend centred in rows under the title, wrapping at the
/// canvas width; returns the markup and the y where the plot may start.
fn legend(entries: &[(String, Key)]) -> (String, f64) {
    const KEY_W: f64 = 26.0;
    const GAP: f64 = 18.0;
    let widths: Vec<f64> = entries
        .iter()
        .map(|(name, _)| KEY_W + text_w(name, 12.0))
        .collect();
    let avail = W - 2.0 * MARGIN;
    let mut rows: Vec<Vec<usize>> = vec![Vec::new()];
    let mut used = 0.0;
    for (i, w) in widths.iter().enumerate() {
        let row = rows.last_mut().expect("rows starts non-empty");
        if !row.is_empty() && used + GAP + w > avail {
            rows.push(vec![i]);
            used = *w;
        } else {
            used += if row.is_empty() { *w } else { GAP + w };
            row.push(i);
        }
    }
    let mut s = String::from("<g class=\"legend\">\n");
    for (r, row) in rows.iter().enumerate() {
        let total: f64 =
            row.iter().map(|&i| widths[i]).sum::<f64>() + GAP * (row.len().max(1) - 1) as f64;
        let mut x = (W - total) / 2.0;
        let y = LEGEND_Y + r as f64 * LEGEND_ROW;
        for &i in row {
            let (name, key) = &entries[i];
            let colour = PALETTE[i % PALETTE.len()];
            match *key {
                Key::Line(k) => {
                    let _ = writeln!(
                        s,
                        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                        n(x),
                        n(y - 4.0),
                        n(x + 20.0),
                        n(y - 4.0)
                    );
                    marker(&mut s, k, x + 10.0, y - 4.0, colour, None);
                }
                Key::Swatch => {
                    let _ = writeln!(
                        s,
                        "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"12\" fill=\"{colour}\"/>",
                        n(x + 3.0),
                        n(y - 10.0)
                    );
                }
            }
            text(&mut s, x + KEY_W, y, "start", "", name);
            x += widths[i] + GAP;
        }
    }
    s.push_str("</g>\n");
    let top = LEGEND_Y + (rows.len() - 1) as f64 * LEGEND_ROW + 16.0;
    (s, top)
}

/// Marker `k` (circle, square, diamond, triangle, cycling) centred on (x, y):
/// a shape as well as a colour, for readers who cannot tell the colours apart
/// and for prints in grey.
fn marker(s: &mut String, k: usize, x: f64, y: f64, colour: &str, tip: Option<&str>) {
    const R: f64 = 3.8;
    let tip = tip
        .map(|t| format!("<title>{}</title>", escape(t)))
        .unwrap_or_default();
    let poly = |pts: &[(f64, f64)]| {
        pts.iter()
            .map(|(dx, dy)| format!("{},{}", n(x + dx), n(y + dy)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = match k % 4 {
        0 => writeln!(
            s,
            "<circle cx=\"{}\" cy=\"{}\" r=\"{R}\" fill=\"{colour}\">{tip}</circle>",
            n(x),
            n(y)
        ),
        1 => writeln!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{colour}\">{tip}</rect>",
            n(x - R * 0.85),
            n(y - R * 0.85),
            n(R * 1.7),
            n(R * 1.7)
        ),
        2 => writeln!(
            s,
            "<polygon points=\"{}\" fill=\"{colour}\">{tip}</polygon>",
            poly(&[
                (0.0, -R * 1.2),
                (R * 1.2, 0.0),
                (0.0, R * 1.2),
                (-R * 1.2, 0.0)
            ])
        ),
        _ => writeln!(
            s,
            "<polygon points=\"{}\" fill=\"{colour}\">{tip}</polygon>",
            poly(&[(0.0, -R * 1.25), (R * 1.15, R * 0.8), (-R * 1.15, R * 0.8)])
        ),
    };
}

/// The y grid with its labels, the plot frame and the y-axis title.
fn y_axis(s: &mut String, f: &Frame, ya: &Axis, y_label: &str) {
    for (v, label) in &ya.ticks {
        let y = f.y(ya, *v);
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#e3e3e3\"/>",
            n(f.left),
            n(f.right),
            y = n(y)
        );
        text(s, f.left - 7.0, y + 4.0, "end", "", label);
    }
    let cy = (f.top + f.bottom) / 2.0;
    text(
        s,
        18.0,
        cy,
        "middle",
        &format!("transform=\"rotate(-90 18 {})\" font-size=\"13\"", n(cy)),
        y_label,
    );
}

/// The frame goes on top of the grid so its edges are not greyed out.
fn frame_rect(s: &mut String, f: &Frame) {
    let _ = writeln!(
        s,
        "<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#555\"/>",
        n(f.left),
        n(f.top),
        n(f.right - f.left),
        n(f.bottom - f.top)
    );
}

/// Room for the y tick labels and the rotated y-axis title.
fn left_margin(ya: &Axis) -> f64 {
    let widest = ya
        .ticks
        .iter()
        .map(|(_, l)| text_w(l, 12.0))
        .fold(0.0, f64::max);
    (36.0 + widest + 8.0).max(60.0)
}

/// A line chart: x on a log2 axis when `log2_x` (folio sizes 4..2048 KiB,
/// labelled `4K` … `2M`), y linear from 0 (or log10 when `log10_y`).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    log2_x: bool,
    log10_y: bool,
    series: &[Series],
) -> String {
    let ok = |&(x, y): &(f64, f64)| {
        usable(x) && usable(y) && (!log2_x || x > 0.0) && (!log10_y || y > 0.0)
    };
    let pts: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            let mut v: Vec<(f64, f64)> = s.points.iter().copied().filter(ok).collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        })
        .collect();
    let all = || pts.iter().flatten();
    let Some(&(x0, y0)) = all().next() else {
        return no_data(title);
    };
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (x0, x0, y0, y0);
    for &(x, y) in all() {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    let xa = if log2_x {
        Axis::log(xmin, xmax, Scale::Log2, LOG2_TICKS)
    } else {
        Axis::linear(xmin, xmax, false, X_INTERVALS)
    };
    let ya = if log10_y {
        Axis::log(ymin, ymax, Scale::Log10, LOG10_TICKS)
    } else {
        Axis::linear(ymin, ymax, true, Y_INTERVALS)
    };

    let entries: Vec<(String, Key)> = series
        .iter()
        .enumerate()
        .map(|(i, s)| (clip(&s.name), Key::Line(i)))
        .collect();
    let (leg, top) = legend(&entries);
    let f = Frame {
        left: left_margin(&ya),
        top,
        right: W - MARGIN,
        bottom: H - 56.0,
    };

    let mut s = open(title);
    s.push_str(&leg);
    for (v, label) in &xa.ticks {
        let x = n(f.x(&xa, *v));
        let _ = writeln!(
            s,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#e3e3e3\"/>",
            n(f.top),
            n(f.bottom)
        );
        text(&mut s, f.x(&xa, *v), f.bottom + 18.0, "middle", "", label);
    }
    y_axis(&mut s, &f, &ya, y_label);
    frame_rect(&mut s, &f);
    text(
        &mut s,
        (f.left + f.right) / 2.0,
        H - 14.0,
        "middle",
        "font-size=\"13\"",
        x_label,
    );

    for (i, (ser, p)) in series.iter().zip(&pts).enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            s,
            "<g class=\"series\" data-series=\"{}\">",
            escape(&ser.name)
        );
        if p.len() >= 2 {
            let line: Vec<String> = p
                .iter()
                .map(|&(x, y)| format!("{},{}", n(f.x(&xa, x)), n(f.y(&ya, y))))
                .collect();
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-linejoin=\"round\"/>",
                line.join(" ")
            );
        }
        for &(x, y) in p {
            let tip = format!("{}: {}, {}", ser.name, fmt_sig(x), fmt_sig(y));
            marker(&mut s, i, f.x(&xa, x), f.y(&ya, y), colour, Some(&tip));
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

/// A bar as it will be drawn.
struct Drawn {
    /// Indexes into the group and series lists.
    group: usize,
    series: usize,
    /// Clamped at 0.
    value: f64,
    /// Whisker ends, both clamped at 0.
    whisker: Option<(f64, f64)>,
    /// None for negative values, which are drawn as 0 without comment.
    label: Option<String>,
}

/// Grouped bar chart: groups along x in first-seen order, one colour per
/// series (first-seen order), y linear from 0. A repeated (group, series)
/// pair keeps its first bar; a bar without a usable value leaves a gap.
pub fn bar_chart(title: &str, y_label: &str, bars: &[Bar]) -> String {
    fn index(names: &mut Vec<String>, name: &str) -> usize {
        names.iter().position(|g| g == name).unwrap_or_else(|| {
            names.push(name.to_string());
            names.len() - 1
        })
    }
    let mut groups: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut drawn: Vec<Drawn> = Vec::new();
    for b in bars {
        let g = index(&mut groups, &b.group);
        let k = index(&mut names, &b.series);
        if !usable(b.value) || drawn.iter().any(|d| d.group == g && d.series == k) {
            continue;
        }
        let v = b.value.max(0.0);
        let whisker = b
            .err
            .filter(|e| usable(*e) && *e != 0.0)
            .map(|e| ((b.value - e.abs()).max(0.0), (b.value + e.abs()).max(0.0)))
            .filter(|(lo, hi)| hi > lo);
        let label = (b.value >= 0.0).then(|| fmt_sig(b.value));
        drawn.push(Drawn {
            group: g,
            series: k,
            value: v,
            whisker,
            label,
        });
    }
    if drawn.is_empty() {
        return no_data(title);
    }
    let top_val = drawn
        .iter()
        .map(|d| d.whisker.map_or(d.value, |w| w.1.max(d.value)))
        .fold(0.0, f64::max);
    // Headroom so the value label above the tallest bar stays inside the frame.
    let ya = Axis::linear(0.0, top_val * 1.06, true, Y_INTERVALS);

    let entries: Vec<(String, Key)> = names.iter().map(|nm| (clip(nm), Key::Swatch)).collect();
    let (leg, top) = legend(&entries);
    let ng = groups.len() as f64;
    let right = W - MARGIN;
    let mut left = left_margin(&ya);
    let labels: Vec<String> = groups.iter().map(|g| clip(g)).collect();
    let widest = labels.iter().map(|l| text_w(l, 12.0)).fold(0.0, f64::max);
    // Labels wider than their slot are tilted; the plot gives up height for them.
    let tilt = widest > (right - left) / ng - 6.0;
    if tilt {
        // A tilted label reaches cos 30° of its width left of its slot's
        // centre, left + (right - left) / 2ng for the first: keep that one on
        // the canvas.
        let need = 0.87 * text_w(&labels[0], 12.0) + 4.0;
        let k = 1.0 / (2.0 * ng);
        left = left.max((need - right * k) / (1.0 - k)).min(W * 0.4);
    }
    let gw = (right - left) / ng;
    let bottom = if tilt {
        (H - 16.0 - widest * 0.5 - 14.0).max(H * 0.55)
    } else {
        H - 40.0
    };
    let f = Frame {
        left,
        top,
        right,
        bottom,
    };

    let mut s = open(title);
    s.push_str(&leg);
    y_axis(&mut s, &f, &ya, y_label);
    for (gi, l) in labels.iter().enumerate() {
        let cx = f.left + (gi as f64 + 0.5) * gw;
        if tilt {
            let y = f.bottom + 14.0;
            text(
                &mut s,
                cx,
                y,
                "end",
                &format!("transform=\"rotate(-30 {} {})\"", n(cx), n(y)),
                l,
            );
        } else {
            text(&mut s, cx, f.bottom + 18.0, "middle", "", l);
        }
    }

    let ns = names.len() as f64;
    let bw = (gw * 0.8 / ns).min(64.0);
    for Drawn {
        group: g,
        series: k,
        value: v,
        whisker,
        label,
    } in &drawn
    {
        let x = f.left + *g as f64 * gw + (gw - bw * ns) / 2.0 + *k as f64 * bw;
        let y = f.y(&ya, *v);
        let colour = PALETTE[k % PALETTE.len()];
        let tip = match whisker {
            Some((lo, hi)) => format!(
                "{} / {}: {} ({}..{})",
                names[*k],
                groups[*g],
                fmt_sig(*v),
                fmt_sig(*lo),
                fmt_sig(*hi)
            ),
            None => format!("{} / {}: {}", names[*k], groups[*g], fmt_sig(*v)),
        };
        // The white outline separates touching bars of one group.
        let _ = writeln!(
            s,
            "<rect class=\"bar\" data-group=\"{}\" data-series=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" \
             fill=\"{colour}\" stroke=\"white\" stroke-width=\"1\"><title>{}</title></rect>",
            escape(&groups[*g]),
            escape(&names[*k]),
            n(x),
            n(y),
            n(bw),
            n(f.bottom - y),
            escape(&tip)
        );
        let cx = x + bw / 2.0;
        let mut label_y = y;
        if let Some((lo, hi)) = whisker {
            let (ylo, yhi) = (f.y(&ya, *lo), f.y(&ya, *hi));
            let cap = (bw * 0.25).min(8.0);
            let _ = writeln!(
                s,
                "<path class=\"whisker\" d=\"M{a},{ylo} V{yhi} M{l},{ylo} H{r} M{l},{yhi} H{r}\" stroke=\"#222\" \
                 stroke-width=\"1.3\" fill=\"none\"/>",
                a = n(cx),
                l = n(cx - cap),
                r = n(cx + cap),
                ylo = n(ylo),
                yhi = n(yhi)
            );
            label_y = label_y.min(yhi);
        }
        if let Some(l) = label
            && text_w(l, 10.0) + 2.0 <= bw
        {
            text(
                &mut s,
                cx,
                label_y - 5.0,
                "middle",
                "font-size=\"10\" fill=\"#444\"",
                l,
            );
        }
    }
    frame_rect(&mut s, &f);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One element of a parsed document, in document order.
    #[derive(Debug)]
    struct Elem {
        name: String,
        attrs: Vec<(String, String)>,
        /// Index of the enclosing element.
        parent: Option<usize>,
        /// Its own text (entities decoded), not its children's.
        text: String,
    }

    impl Elem {
        fn attr(&self, k: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        }

        fn num(&self, k: &str) -> f64 {
            self.attr(k)
                .unwrap_or_else(|| panic!("<{}> has no {k}", self.name))
                .parse()
                .unwrap_or_else(|e| panic!("<{}> {k}: {e}", self.name))
        }
    }

    /// Decodes entities in `s`, failing on a bare `&` or an unknown entity.
    fn unescape(s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let end = rest[i..]
                .find(';')
                .ok_or_else(|| format!("bare & in {s:?}"))?;
            let ent = &rest[i + 1..i + end];
            out.push(match ent {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let code = if let Some(h) = ent.strip_prefix("#x") {
                        u32::from_str_radix(h, 16)
                    } else if let Some(d) = ent.strip_prefix('#') {
                        d.parse()
                    } else {
                        return Err(format!("unknown entity &{ent}; in {s:?}"));
                    };
                    code.ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("bad &{ent};"))?
                }
            });
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A strict little XML reader, enough for what this module writes: tags
    /// close in order, attributes are double-quoted and unique, text and
    /// values hold no raw `<` or bare `&`, and there is exactly one root, an
    /// `<svg>` in the SVG namespace with a viewBox.
    fn parse(doc: &str) -> Result<Vec<Elem>, String> {
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.');
        let mut elems: Vec<Elem> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut roots = 0;
        let mut rest = doc;
        while !rest.is_empty() {
            if let Some(close) = rest.strip_prefix("</") {
                let end = close.find('>').ok_or("unterminated end tag")?;
                let name = close[..end].trim_end();
                let open = stack
                    .pop()
                    .ok_or_else(|| format!("</{name}> closes nothing"))?;
                if elems[open].name != name {
                    return Err(format!("</{name}> closes <{}>", elems[open].name));
                }
                rest = &close[end + 1..];
            } else if let Some(tag) = rest.strip_prefix('<') {
                let len = tag.find(|c: char| !name_ok(c)).unwrap_or(tag.len());
                if len == 0 {
                    return Err(format!("bad tag start {:?}", &rest[..rest.len().min(20)]));
                }
                let name = tag[..len].to_string();
                let mut t = &tag[len..];
                let mut attrs: Vec<(String, String)> = Vec::new();
                let self_closing = loop {
                    let trimmed = t.trim_start();
                    let had_space = trimmed.len() < t.len();
                    t = trimmed;
                    if let Some(r) = t.strip_prefix("/>") {
                        t = r;
                        break true;
                    }
                    if let Some(r) = t.strip_prefix('>') {
                        t = r;
                        break false;
                    }
                    if !had_space {
                        return Err(format!(
                            "<{name}>: no space before attribute at {:?}",
                            &t[..t.len().min(20)]
                        ));
                    }
                    let alen = t.find(|c: char| !name_ok(c)).unwrap_or(t.len());
                    if alen == 0 {
                        return Err(format!("<{name}>: junk {:?}", &t[..t.len().min(20)]));
                    }
                    let an = t[..alen].to_string();
                    let v = t[alen..]
                        .strip_prefix("=\"")
                        .ok_or_else(|| format!("<{name}> {an}: value not double-quoted"))?;
                    let vend = v
                        .find('"')
                        .ok_or_else(|| format!("<{name}> {an}: unterminated"))?;
                    let raw = &v[..vend];
                    if raw.contains('<') {
                        return Err(format!("<{name}> {an}: raw < in value"));
                    }
                    if attrs.iter().any(|(k, _)| *k == an) {
                        return Err(format!("<{name}>: {an} twice"));
                    }
                    attrs.push((an, unescape(raw)?));
                    t = &v[vend + 1..];
                };
                if stack.is_empty() {
                    roots += 1;
                }
                elems.push(Elem {
                    name,
                    attrs,
                    parent: stack.last().copied(),
                    text: String::new(),
                });
                if !self_closing {
                    stack.push(elems.len() - 1);
                }
                rest = t;
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                let raw = &rest[..end];
                let txt = unescape(raw)?;
                match stack.last() {
                    Some(&i) => elems[i].text.push_str(&txt),
                    None if txt.trim().is_empty() => {}
                    None => return Err(format!("text outside the root: {txt:?}")),
                }
                rest = &rest[end..];
            }
        }
        if let Some(&i) = stack.last() {
            return Err(format!("<{}> never closed", elems[i].name));
        }
        let root = elems.first().ok_or("empty document")?;
        if roots != 1 || root.name != "svg" {
            return Err(format!("{roots} roots, first <{}>", root.name));
        }
        if root.attr("xmlns") != Some("http://www.w3.org/2000/svg")
            || root.attr("viewBox").is_none()
        {
            return Err("root lacks xmlns or viewBox".to_string());
        }
        Ok(elems)
    }

    fn parsed(doc: &str) -> Vec<Elem> {
        parse(doc).unwrap_or_else(|e| panic!("not well-formed: {e}\n{doc}"))
    }

    fn ser(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.to_string(),
            points: points.to_vec(),
        }
    }

    fn bar(group: &str, series: &str, value: f64, err: Option<f64>) -> Bar {
        Bar {
            group: group.to_string(),
            series: series.to_string(),
            value,
            err,
        }
    }

    /// The texts of all `<text>` elements.
    fn texts(e: &[Elem]) -> Vec<&str> {
        e.iter()
            .filter(|e| e.name == "text")
            .map(|e| e.text.as_str())
            .collect()
    }

    fn frame(e: &[Elem]) -> (f64, f64, f64, f64) {
        let f = e
            .iter()
            .find(|e| e.attr("class") == Some("frame"))
            .expect("a frame");
        (f.num("x"), f.num("y"), f.num("width"), f.num("height"))
    }

    /// The circle markers inside the `<g class="series">` named `name`.
    fn circles(e: &[Elem], name: &str) -> Vec<(f64, f64)> {
        let g = e
            .iter()
            .position(|e| e.attr("class") == Some("series") && e.attr("data-series") == Some(name))
            .expect("series group");
        e.iter()
            .filter(|c| c.name == "circle" && c.parent == Some(g))
            .map(|c| (c.num("cx"), c.num("cy")))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 0.051
    }

    #[test]
    fn checker_rejects_broken_documents() {
        let ok = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><g><text>a &amp; b</text></g></svg>";
        assert!(parse(ok).is_ok());
        for bad in [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><g></svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><g></text></svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><text>a & b</text></svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><text>&foo;</text></svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><g a=b/></svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><g a='b'/></svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><g a=\"<\"/></svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"/><svg/>",
            "<svg viewBox=\"0 0 1 1\"/>",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn escape_replaces_specials() {
        assert_eq!(
            escape("a<b>&\"c\"'d'"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(escape("plain KiB µs"), "plain KiB µs");
        assert_eq!(escape("a\u{1}b"), "a b");
        let nasty = "Linux <6.12> & \"folio\" 'x'";
        assert_eq!(unescape(&escape(nasty)).unwrap(), nasty);
    }

    #[test]
    fn nice_ticks_use_1_2_5_steps() {
        assert_eq!(
            nice_ticks(0.0, 100.0, 5),
            [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(nice_ticks(0.0, 7.0, 5), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(nice_ticks(0.0, 21.2, 6), [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        assert_eq!(nice_ticks(0.0, 1.0, 4), [0.0, 0.5, 1.0]);
        assert_eq!(
            nice_ticks(-3.0, 3.0, 6),
            [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(
            nice_ticks(1200.0, 4800.0, 6),
            [1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
        );
        // Float steps: 0.1-multiples land on k × 0.1, and 0.3 does not grow a
        // fourth tick from 0.3 / 0.1 = 2.9999…
        let t = nice_ticks(0.0, 0.3, 3);
        assert_eq!(t.len(), 4);
        assert!(close(t[3], 0.3));
        let t = nice_ticks(0.0, 2.5e-6, 6);
        let labels: Vec<String> = t.iter().map(|&v| fmt_num(v, t[1] - t[0])).collect();
        assert_eq!(labels, ["0", "5e-7", "1e-6", "1.5e-6", "2e-6", "2.5e-6"]);
        // Every result is a 1-2-5 step within the interval budget.
        for (lo, hi, m) in [
            (0.0, 1e12, 6),
            (3.3, 97.1, 8),
            (-0.02, 0.07, 5),
            (1e-9, 3e-9, 6),
        ] {
            let t = nice_ticks(lo, hi, m);
            assert!(t[0] <= lo && *t.last().unwrap() >= hi, "{lo}..{hi}: {t:?}");
            assert!(t.len() - 1 <= m, "{lo}..{hi}: {t:?}");
            let step = t[1] - t[0];
            let mant = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (mant - m).abs() < 1e-6),
                "step {step}"
            );
        }
        // Degenerate ranges fall back rather than loop or divide by zero.
        assert_eq!(nice_ticks(1.0, 1.0, 5), [1.0, 1.0]);
        assert_eq!(nice_ticks(0.0, 5e-324, 5), [0.0, 5e-324]);
        assert_eq!(nice_ticks(-f64::MAX, f64::MAX, 5), [-f64::MAX, f64::MAX]);
    }

    #[test]
    fn tick_numbers_are_compact() {
        assert_eq!(fmt_num(0.0, 0.5), "0");
        assert_eq!(fmt_num(-0.0, 1.0), "0");
        assert_eq!(fmt_num(0.5, 0.5), "0.5");
        assert_eq!(fmt_num(1.0, 0.5), "1");
        assert_eq!(fmt_num(2.0, 1.0), "2");
        assert_eq!(fmt_num(250.0, 50.0), "250");
        assert_eq!(fmt_num(1200.0, 200.0), "1.2k");
        assert_eq!(fmt_num(1000.0, 500.0), "1k");
        assert_eq!(fmt_num(3e6, 1e6), "3M");
        assert_eq!(fmt_num(2.5e9, 5e8), "2.5G");
        assert_eq!(fmt_num(-1500.0, 500.0), "-1.5k");
        assert_eq!(fmt_num(0.6000000000000001, 0.2), "0.6");
        assert_eq!(fmt_num(0.02, 0.01), "0.02");
        assert_eq!(fmt_num(4e18, 1e18), "4e18");
        assert_eq!(fmt_num(2.5e-5, 5e-6), "2.5e-5");
        assert_eq!(fmt_num(5.551115123125783e-17, 0.1), "0");
        assert_eq!(fmt_sig(1234.5), "1.23k");
        assert_eq!(fmt_sig(12.345), "12.3");
        assert_eq!(fmt_sig(0.5), "0.5");
        assert_eq!(fmt_kib(4.0), "4K");
        assert_eq!(fmt_kib(256.0), "256K");
        assert_eq!(fmt_kib(1024.0), "1M");
        assert_eq!(fmt_kib(1536.0), "1.5M");
        assert_eq!(fmt_kib(2048.0), "2M");
        assert_eq!(fmt_kib(1024.0 * 1024.0), "1G");
        assert_eq!(fmt_kib(0.5), "512");
    }

    #[test]
    fn log2_ticks_cover_folio_sizes() {
        let a = Axis::log(4.0, 2048.0, Scale::Log2, LOG2_TICKS);
        let v: Vec<f64> = a.ticks.iter().map(|t| t.0).collect();
        assert_eq!(
            v,
            [
                4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0
            ]
        );
        let l: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(
            l,
            [
                "4K", "8K", "16K", "32K", "64K", "128K", "256K", "512K", "1M", "2M"
            ]
        );
        assert_eq!((a.lo, a.hi), (2.0, 11.0));
        // Off-power ends round outwards.
        let a = Axis::log(5.0, 1000.0, Scale::Log2, LOG2_TICKS);
        assert_eq!((a.lo, a.hi), (2.0, 10.0));
        // 4K..1T is 28 doublings: every third power, both ends ticked.
        let a = Axis::log(4.0, 2f64.powi(30), Scale::Log2, LOG2_TICKS);
        let v: Vec<f64> = a.ticks.iter().map(|t| t.0.log2()).collect();
        let want: Vec<f64> = (0..=10).map(|k| 2.0 + 3.0 * k as f64).collect();
        assert_eq!(v, want);
        assert_eq!(a.hi, 32.0);
        assert!(a.ticks.len() <= LOG2_TICKS);
    }

    #[test]
    fn log10_ticks() {
        let a = Axis::log(0.003, 40.0, Scale::Log10, LOG10_TICKS);
        let l: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(l, ["0.001", "0.01", "0.1", "1", "10", "100"]);
        let a = Axis::log(3.0, 40.0, Scale::Log10, LOG10_TICKS);
        let l: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(l, ["1", "2", "5", "10", "20", "50", "100"]);
    }

    #[test]
    fn line_points_land_on_their_pixels() {
        let svg = line_chart(
            "t",
            "x",
            "y",
            false,
            false,
            &[ser(
                "a",
                &[(10.0, 100.0), (0.0, 0.0), (5.0, 50.0), (2.0, 80.0)],
            )],
        );
        let e = parsed(&svg);
        let (fx, fy, fw, fh) = frame(&e);
        // x spans 0..10 and y 0..100 exactly (both already on 1-2-5 ticks),
        // so each point sits at its fraction of the frame.
        let want = |x: f64, y: f64| (fx + x / 10.0 * fw, fy + fh - y / 100.0 * fh);
        let got = circles(&e, "a");
        let exp = [
            want(0.0, 0.0),
            want(2.0, 80.0),
            want(5.0, 50.0),
            want(10.0, 100.0),
        ];
        assert_eq!(got.len(), exp.len());
        for (g, w) in got.iter().zip(&exp) {
            assert!(close(g.0, w.0) && close(g.1, w.1), "{g:?} != {w:?}");
        }
        // The frame itself is where the layout puts it: one legend row.
        assert!(close(fy, LEGEND_Y + 16.0) && close(fy + fh, H - 56.0));
        // The polyline visits the same pixels in x order.
        let pl = e.iter().find(|e| e.name == "polyline").unwrap();
        let pts: Vec<(f64, f64)> = pl
            .attr("points")
            .unwrap()
            .split(' ')
            .map(|p| {
                let (a, b) = p.split_once(',').unwrap();
                (a.parse().unwrap(), b.parse().unwrap())
            })
            .collect();
        assert_eq!(pts, got);
        // Tick labels: 0..10 by 2 on x, 0..100 by 20 on y.
        let t = texts(&e);
        for l in ["0", "2", "4", "6", "8", "10", "20", "40", "60", "80", "100"] {
            assert!(t.contains(&l), "missing tick {l}: {t:?}");
        }
    }

    #[test]
    fn log2_points_land_on_their_pixels() {
        let svg = line_chart(
            "t",
            "folio",
            "ms",
            true,
            false,
            &[ser("a", &[(4.0, 1.0), (64.0, 2.0), (2048.0, 4.0)])],
        );
        let e = parsed(&svg);
        let (fx, _, fw, _) = frame(&e);
        let got = circles(&e, "a");
        // log2 4 = 2 and log2 2048 = 11 are the frame edges.
        for ((gx, _), x) in got.iter().zip([4.0f64, 64.0, 2048.0]) {
            let want = fx + (x.log2() - 2.0) / 9.0 * fw;
            assert!(close(*gx, want), "{gx} != {want}");
        }
        let t = texts(&e);
        for l in ["4K", "16K", "64K", "256K", "1M", "2M"] {
            assert!(t.contains(&l), "missing tick {l}");
        }
    }

    #[test]
    fn bars_have_proportional_heights_and_whiskers() {
        let svg = bar_chart(
            "fork",
            "ms",
            &[
                bar("order-0", "Folium", 10.0, Some(2.0)),
                bar("order-0", "Linux", 20.0, None),
                bar("order-9", "Folium", -5.0, Some(1.0)),
                bar("order-9", "Linux", 5.0, Some(7.0)),
            ],
        );
        let e = parsed(&svg);
        let (fx, fy, fw, fh) = frame(&e);
        let bottom = fy + fh;
        // Tallest whisker end is 22; with label headroom (23.32) the 1-2-5
        // ticks run to 25.
        let y_of = |v: f64| bottom - v / 25.0 * fh;
        let rects: Vec<&Elem> = e
            .iter()
            .filter(|e| e.attr("class") == Some("bar"))
            .collect();
        assert_eq!(rects.len(), 4);
        for (r, v) in rects.iter().zip([10.0, 20.0, 0.0, 5.0]) {
            assert!(close(r.num("y"), y_of(v)), "{v}: y {}", r.num("y"));
            assert!(close(r.num("y") + r.num("height"), bottom));
        }
        // Two groups split the width; two bars of equal width side by side.
        let gw = fw / 2.0;
        let bw = rects[0].num("width");
        assert!(close(bw, (gw * 0.8 / 2.0).min(64.0)));
        assert!(close(rects[1].num("x"), rects[0].num("x") + bw));
        assert!(close(rects[2].num("x"), rects[0].num("x") + gw));
        assert!(rects[0].num("x") > fx);
        assert_eq!(rects[3].attr("data-group"), Some("order-9"));
        assert_eq!(rects[3].attr("data-series"), Some("Linux"));
        // Whiskers: 10±2; -5±1 is entirely below 0 so none; 5±7 clamps at 0.
        let w: Vec<&str> = e
            .iter()
            .filter(|e| e.attr("class") == Some("whisker"))
            .map(|e| e.attr("d").unwrap())
            .collect();
        assert_eq!(w.len(), 2);
        let first = format!(
            "M{},{} V{}",
            n(rects[0].num("x") + bw / 2.0),
            n(y_of(8.0)),
            n(y_of(12.0))
        );
        assert!(w[0].starts_with(&first), "{} vs {first}", w[0]);
        let second = format!(
            "M{},{} V{}",
            n(rects[3].num("x") + bw / 2.0),
            n(y_of(0.0)),
            n(y_of(12.0))
        );
        assert!(w[1].starts_with(&second), "{} vs {second}", w[1]);
        // The negative bar gets no label; the others do.
        let t = texts(&e);
        assert!(t.contains(&"10") && t.contains(&"20") && t.contains(&"5"));
        assert!(!t.iter().any(|s| s.starts_with('-')));
    }

    #[test]
    fn legends_name_every_series_with_distinct_colours() {
        let names = [
            "Folium",
            "Linux 6.12",
            "a <b> & \"c\" 'd'",
            "fourth",
            "fifth",
        ];
        let series: Vec<Series> = names
            .iter()
            .map(|s| ser(s, &[(1.0, 1.0), (2.0, 3.0)]))
            .collect();
        let line = line_chart("t", "x", "y", false, false, &series);
        let bars: Vec<Bar> = names.iter().map(|s| bar("g", s, 1.0, None)).collect();
        let barc = bar_chart("t", "y", &bars);
        for svg in [&line, &barc] {
            let e = parsed(svg);
            let lg = e
                .iter()
                .position(|e| e.attr("class") == Some("legend"))
                .unwrap();
            let in_legend: Vec<&str> = e
                .iter()
                .filter(|t| t.name == "text" && t.parent == Some(lg))
                .map(|t| t.text.as_str())
                .collect();
            assert_eq!(in_legend, names);
            assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;"));
            assert!(!svg.contains("<b>"));
        }
        let e = parsed(&barc);
        let fills: Vec<&str> = e
            .iter()
            .filter(|e| e.attr("class") == Some("bar"))
            .map(|e| e.attr("fill").unwrap())
            .collect();
        assert_eq!(fills.len(), names.len());
        for (i, f) in fills.iter().enumerate() {
            assert!(!fills[..i].contains(f), "colour {f} reused");
        }
    }

    /// A line chart with plain axis titles.
    fn lc(title: &str, log2_x: bool, log10_y: bool, series: &[Series]) -> String {
        line_chart(title, "x", "y", log2_x, log10_y, series)
    }

    /// The edge cases, named; [`write_examples`] also writes them out.
    fn edge_cases() -> Vec<(&'static str, String)> {
        let (nan, inf, big) = (f64::NAN, f64::INFINITY, 1e200);
        let long = |i| format!("series {i} with a rather long name indeed, longer than the cut");
        let many: Vec<Series> = (0..11).map(|i| ser(&long(i), &[(i as f64, 1.0)])).collect();
        let groups: Vec<Bar> = (0..12)
            .map(|i| {
                bar(
                    &format!("fork order-{i} & more"),
                    "Folium",
                    i as f64,
                    Some(0.3),
                )
            })
            .collect();
        vec![
            ("one", lc("one", false, false, &[ser("a", &[(3.0, 7.0)])])),
            (
                "one-log",
                lc("one", true, true, &[ser("a", &[(4.0, 10.0)])]),
            ),
            (
                "zeros",
                lc(
                    "zeros",
                    false,
                    false,
                    &[ser("a", &[(0.0, 0.0), (0.0, 0.0)])],
                ),
            ),
            (
                "neg",
                lc(
                    "neg",
                    false,
                    false,
                    &[ser("a", &[(-5.0, -3.0), (5.0, 2.0)])],
                ),
            ),
            (
                "huge",
                lc(
                    "huge",
                    false,
                    false,
                    &[ser("a", &[(0.0, big), (1.0, 2.0 * big), (2.0, f64::MAX)])],
                ),
            ),
            (
                "tiny",
                lc(
                    "tiny",
                    false,
                    true,
                    &[ser("a", &[(1e-12, 5e-324), (2e-12, 1e-300)])],
                ),
            ),
            (
                "mixed",
                lc(
                    "mixed",
                    true,
                    false,
                    &[
                        ser("a", &[(4.0, 1.0), (nan, 2.0), (8.0, -inf), (16.0, 3.0)]),
                        ser("b", &[]),
                    ],
                ),
            ),
            ("many", lc("many", false, false, &many)),
            (
                "bar-zeros",
                bar_chart(
                    "zeros",
                    "y",
                    &[bar("a", "s", 0.0, Some(0.0)), bar("b", "s", 0.0, None)],
                ),
            ),
            (
                "bar-neg",
                bar_chart("neg", "y", &[bar("a", "s", -4.0, None)]),
            ),
            (
                "bar-err",
                bar_chart(
                    "err",
                    "y",
                    &[
                        bar("a", "s", 1.0, Some(nan)),
                        bar("a", "t", 2.0, Some(-0.5)),
                        bar("a", "s", 9.0, None),
                    ],
                ),
            ),
            (
                "bar-huge",
                bar_chart(
                    "huge",
                    "y",
                    &[bar("a", "s", big, Some(big)), bar("b", "s", 1e-200, None)],
                ),
            ),
            ("bar-groups", bar_chart("long groups", "y", &groups)),
        ]
    }

    #[test]
    fn edge_cases_stay_well_formed() {
        let (nan, inf) = (f64::NAN, f64::INFINITY);
        let empty = lc("empty & <odd>", false, false, &[]);
        let no_data_cases = [
            lc("t", true, true, &[ser("a", &[])]),
            lc(
                "t",
                true,
                true,
                &[ser("a", &[(nan, 1.0), (0.0, 1.0), (4.0, -1.0), (inf, 2.0)])],
            ),
            bar_chart("t", "y", &[]),
            bar_chart("t", "y", &[bar("g", "s", nan, None)]),
        ];
        for svg in no_data_cases.iter().chain([&empty]) {
            assert!(texts(&parsed(svg)).contains(&"no data"), "{svg}");
        }
        assert!(texts(&parsed(&empty)).contains(&"empty & <odd>"));

        let cases = edge_cases();
        for (name, svg) in &cases {
            let e = parsed(svg);
            for el in &e {
                for (k, v) in &el.attrs {
                    let bad = v.contains("NaN") || v.contains("inf");
                    assert!(!bad, "{name}: <{}> {k}=\"{v}\"", el.name);
                }
            }
            // Everything drawn stays on the canvas.
            for c in e.iter().filter(|e| e.name == "circle") {
                let (x, y) = (c.num("cx"), c.num("cy"));
                let inside = (0.0..=W).contains(&x) && (0.0..=H).contains(&y);
                assert!(inside, "{name}: {x},{y}");
            }
            for r in e.iter().filter(|e| e.attr("class") == Some("bar")) {
                assert!(r.num("height") >= 0.0 && r.num("y") >= 0.0, "{name}");
            }
        }
        let get = |name: &str| parsed(&cases.iter().find(|c| c.0 == name).unwrap().1);
        // Dropped: NaN x, -inf y, and a value past 1e300 (like infinity).
        assert_eq!(circles(&get("mixed"), "a").len(), 2);
        assert_eq!(circles(&get("huge"), "a").len(), 2);
        // 5e-324 stays on a log axis (it is positive and finite).
        assert_eq!(circles(&get("tiny"), "a").len(), 2);
        // The repeated (a, s) bar is ignored: the first, 1.0, is drawn, so
        // the axis stops well short of 9.
        let e = get("bar-err");
        let t = texts(&e);
        assert!(
            t.contains(&"2") && !t.contains(&"9") && !t.contains(&"8"),
            "{t:?}"
        );
        // Group labels too wide for their slots are tilted, not overlapped.
        let e = get("bar-groups");
        let tilted = e.iter().filter(|e| {
            e.attr("transform")
                .is_some_and(|t| t.starts_with("rotate(-30"))
        });
        assert_eq!(tilted.count(), 12);
    }

    /// Realistic charts to look at (not checked against pictures, only for
    /// well-formedness): `target/plot-examples/{line,bars,edge-*}.svg`.
    #[test]
    fn write_examples() {
        let sizes = [
            4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
        ];
        let folium: Vec<(f64, f64)> = sizes
            .iter()
            .map(|&s: &f64| (s, 41.0 / (1.0 + s.log2() * 0.45)))
            .collect();
        let linux: Vec<(f64, f64)> = sizes
            .iter()
            .map(|&s: &f64| (s, 38.5 / (1.0 + s.log2() * 0.3) + 1.2))
            .collect();
        let line = line_chart(
            "munmap of 256 MiB, by folio size (virt, TCG)",
            "folio size",
            "munmap time (ms)",
            true,
            false,
            &[ser("Folium", &folium), ser("Linux 6.12", &linux)],
        );
        let bars = bar_chart(
            "fork of a 256 MiB anonymous mapping",
            "fork time (ms)",
            &[
                bar("fork order-0", "Folium", 18.4, Some(1.1)),
                bar("fork order-0", "Linux 6.12", 21.7, Some(0.9)),
                bar("fork order-9", "Folium", 0.62, Some(0.05)),
                bar("fork order-9", "Linux 6.12", 0.81, Some(0.12)),
            ],
        );
        parsed(&line);
        parsed(&bars);
        let dir = crate::build::target_dir().join("plot-examples");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("line.svg"), &line).unwrap();
        std::fs::write(dir.join("bars.svg"), &bars).unwrap();
        for (name, svg) in edge_cases() {
            std::fs::write(dir.join(format!("edge-{name}.svg")), svg).unwrap();
        }
        assert_eq!(std::fs::read_to_string(dir.join("line.svg")).unwrap(), line);
    }
}
