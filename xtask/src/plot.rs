//! The benchmark's SVG charts, drawn with plotters: line charts against
//! folio size (log2 x axis, a tick at each size measured and nowhere
//! else) and grouped bars. Every point and bar carries its standard
//! deviation as an error bar, a series keeps its colour on every chart
//! ([`colour`]), and a subtitle under the title gives the run's
//! conditions.
//!
//! Points that cannot be placed (NaN, infinities, non-positive x on the
//! log axis) are left out: a plot is a picture of the results, and
//! `results.json` keeps the raw numbers.

use plotters::prelude::*;

use crate::Result;

/// One point of a line: x, y and the standard deviation of y.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub err: f64,
}

/// One line of a line chart: its legend label and points.
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// One bar: its group (x-axis category), its series (legend label and
/// colour), its height and standard deviation.
pub struct Bar {
    pub group: String,
    pub series: String,
    pub value: f64,
    pub err: f64,
}

/// What a chart says in words.
pub struct Labels<'a> {
    pub title: &'a str,
    /// The run's conditions, in smaller type under the title.
    pub subtitle: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Canvas size in SVG user units.
const SIZE: (u32, u32) = (860, 520);
const FONT: &str = "sans-serif";
/// The colour of the bars' error whiskers (dark grey, apart from the
/// axes' black).
const WHISKER: RGBColor = RGBColor(0x40, 0x40, 0x40);
/// The bar chart's x units per group.
const UNIT: i32 = 1000;

/// The colour of a series, the same on every chart (Okabe-Ito colours,
/// distinct for colour-blind readers): Folium batched blue, Folium
/// per-PTE vermillion, Linux green; anything else orange.
pub fn colour(series: &str) -> RGBColor {
    if series.starts_with("Linux") {
        RGBColor(0x00, 0x9E, 0x73)
    } else if series.contains("per-PTE") {
        RGBColor(0xD5, 0x5E, 0x00)
    } else if series.starts_with("Folium") {
        RGBColor(0x00, 0x72, 0xB2)
    } else {
        RGBColor(0xE6, 0x9F, 0x00)
    }
}

fn usable(p: &Point) -> bool {
    p.x.is_finite() && p.x > 0.0 && p.y.is_finite() && p.err.is_finite()
}

/// A tick number without trailing zeros: `0.5`, `12`, `2500`.
fn number(v: f64) -> String {
    if v.abs() >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A folio size in KiB as the benchmark names it: `4K`, `2048K`.
fn kib(v: f64) -> String {
    format!("{v:.0}K")
}

type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

/// The legend every chart draws, in the same style, at `pos`.
fn legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>, pos: SeriesLabelPosition) -> Drawn
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// Renders into an SVG string: a white canvas with the title and the
/// subtitle, the rest drawn by `body`.
fn render(
    labels: &Labels,
    body: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Drawn,
) -> Result<String> {
    let mut svg = String::new();
    let drawn: Drawn = (|| {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(labels.title, (FONT, 20))?;
        let root = root.titled(
            labels.subtitle,
            (FONT, 14).into_font().color(&RGBColor(80, 80, 80)),
        )?;
        body(&root)?;
        root.present()?;
        Ok(())
    })();
    drawn.map_err(|e| format!("drawing {}: {e}", labels.title))?;
    Ok(svg)
}

fn no_data(area: &DrawingArea<SVGBackend, plotters::coord::Shift>) -> Drawn {
    let (w, h) = area.dim_in_pixel();
    let style =
        TextStyle::from((FONT, 18).into_font()).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
    area.draw_text("no data", &style, (w as i32 / 2, h as i32 / 2))?;
    Ok(())
}

/// A line chart against folio size: x on a log2 axis with a tick at each
/// x some series has, y linear from 0; each point a dot with its error
/// bar, each series a line of its colour.
pub fn line_chart(labels: &Labels, series: &[Series]) -> Result<String> {
    render(labels, |area| {
        let points = || {
            series
                .iter()
                .flat_map(|s| s.points.iter().filter(|p| usable(p)))
        };
        let mut xs: Vec<f64> = points().map(|p| p.x).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let (Some(&lo), Some(&hi)) = (xs.first(), xs.last()) else {
            return no_data(area);
        };
        let top = points().map(|p| p.y + p.err).fold(0.0, f64::max);
        // Room above the data for the legend.
        let top = if top > 0.0 { top * 1.3 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (lo / 1.4..hi * 1.4).log_scale().with_key_points(xs),
                0.0..top,
            )?;
        chart
            .configure_mesh()
            .x_desc(labels.x)
            .y_desc(labels.y)
            .x_label_formatter(&|v| kib(*v))
            .y_label_formatter(&|v| number(*v))
            .y_labels(8)
            .light_line_style(WHITE)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()?;
        for s in series {
            let c = colour(&s.name);
            let mut pts: Vec<Point> = s.points.iter().copied().filter(usable).collect();
            pts.sort_by(|a, b| a.x.total_cmp(&b.x));
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.x, p.y)),
                    c.stroke_width(2),
                ))?
                .label(s.name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled()));
            // Each point: a dot (the error bar's own) and its whiskers.
            chart.draw_series(pts.iter().map(|p| {
                let lo = (p.y - p.err).max(0.0);
                ErrorBar::new_vertical(p.x, lo, p.y, p.y + p.err, c.filled().stroke_width(1), 8)
            }))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// Grouped bars: one group per distinct `group` (in the order first
/// seen), within it one bar per series that has one (in the order the
/// series are first seen), each with a whisker of its standard deviation.
pub fn bar_chart(labels: &Labels, bars: &[Bar]) -> Result<String> {
    let bars: Vec<&Bar> = bars
        .iter()
        .filter(|b| b.value.is_finite() && b.err.is_finite())
        .collect();
    let mut groups: Vec<&str> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for b in &bars {
        if !groups.contains(&b.group.as_str()) {
            groups.push(&b.group);
        }
        if !names.contains(&b.series.as_str()) {
            names.push(&b.series);
        }
    }
    render(labels, |area| {
        if bars.is_empty() {
            return no_data(area);
        }
        let top = bars.iter().map(|b| b.value + b.err).fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.3 } else { 1.0 };
        // x in thousandths of a group: group g is centred on g * UNIT,
        // the one tick each has (plotters formats integer axes freely).
        let n = groups.len() as i32;
        let ticks: Vec<i32> = (0..n).map(|g| g * UNIT).collect();
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (-UNIT / 2..n * UNIT - UNIT / 2).with_key_points(ticks),
                0.0..top,
            )?;
        let group_name = |v: &i32| {
            let g = usize::try_from(v / UNIT).unwrap_or(usize::MAX);
            match groups.get(g) {
                Some(name) if v % UNIT == 0 => name.to_string(),
                _ => String::new(),
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(labels.y)
            .x_label_formatter(&group_name)
            .y_label_formatter(&|v| number(*v))
            .y_labels(8)
            .light_line_style(WHITE)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()?;
        // Where a bar sits: bars have one width on the whole chart (80% of
        // a group's width over the most bars a group has), and the bars of
        // a group are centred on it.
        let here = |group: &str| -> Vec<&str> {
            names
                .iter()
                .copied()
                .filter(|s| bars.iter().any(|x| x.group == group && x.series == *s))
                .collect()
        };
        let most = groups
            .iter()
            .map(|g| here(g).len())
            .max()
            .unwrap_or(1)
            .max(1) as i32;
        let w = UNIT * 8 / 10 / most;
        let slot = |b: &Bar| {
            let g = groups.iter().position(|g| *g == b.group).unwrap_or(0) as i32;
            let here = here(&b.group);
            let i = here.iter().position(|s| *s == b.series).unwrap_or(0) as i32;
            let x0 = g * UNIT - w * here.len() as i32 / 2 + i * w;
            (x0 + w / 16, x0 + w - w / 16)
        };
        for name in &names {
            let c = colour(name);
            let mine: Vec<&Bar> = bars.iter().copied().filter(|b| b.series == *name).collect();
            chart
                .draw_series(mine.iter().map(|b| {
                    let (x0, x1) = slot(b);
                    Rectangle::new([(x0, 0.0), (x1, b.value.max(0.0))], c.filled())
                }))?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled()));
            let whisker = WHISKER.stroke_width(1);
            for b in mine.iter().filter(|b| b.err > 0.0) {
                let (x0, x1) = slot(b);
                let (mid, cap) = ((x0 + x1) / 2, (x1 - x0) / 5);
                let (lo, hi) = ((b.value - b.err).max(0.0), b.value + b.err);
                chart.draw_series([
                    PathElement::new(vec![(mid, lo), (mid, hi)], whisker),
                    PathElement::new(vec![(mid - cap, lo), (mid + cap, lo)], whisker),
                    PathElement::new(vec![(mid - cap, hi), (mid + cap, hi)], whisker),
                ])?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })
}

/// Reading the charts back, for the tests here and in `bench`: the SVG
/// parsed as XML.
#[cfg(test)]
pub mod check {
    /// The colour of a series as the SVG writes it.
    pub fn hex(series: &str) -> String {
        let c = super::colour(series);
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    /// Every text element's content.
    pub fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect()
    }

    /// How many `tag` elements are filled with `series`' colour.
    pub fn filled(svg: &str, tag: &str, series: &str) -> usize {
        let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
        let want = hex(series);
        doc.descendants()
            .filter(|n| n.has_tag_name(tag))
            .filter(|n| {
                n.attribute("fill")
                    .is_some_and(|f| f.eq_ignore_ascii_case(&want))
            })
            .count()
    }

    /// The number of points of each polyline drawn in `series`' colour.
    pub fn lines(svg: &str, series: &str) -> Vec<usize> {
        let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
        let want = hex(series);
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter(|n| {
                n.attribute("stroke")
                    .is_some_and(|f| f.eq_ignore_ascii_case(&want))
            })
            .map(|n| {
                n.attribute("points")
                    .unwrap_or("")
                    .split_whitespace()
                    .count()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::check::*;
    use super::*;

    fn series(name: &str, pts: &[(f64, f64)]) -> Series {
        Series {
            name: name.into(),
            points: pts
                .iter()
                .map(|&(x, y)| Point {
                    x,
                    y,
                    err: y / 10.0,
                })
                .collect(),
        }
    }

    const LABELS: Labels = Labels {
        title: "munmap() of 64 MiB on virt",
        subtitle: "virt, cortex-a72, TCG, QEMU 10.0.2, 2025-01-01",
        x: "folio size",
        y: "ns per 4 KiB",
    };

    #[test]
    fn line_chart_draws_each_series_with_its_points() {
        let s = [
            series(
                "Folium batched",
                &[(4.0, 700.0), (64.0, 50.0), (2048.0, 40.0)],
            ),
            series("Folium per-PTE", &[(4.0, 720.0), (2048.0, 380.0)]),
            series("Linux 6.12", &[(4.0, 800.0), (64.0, 90.0), (2048.0, 60.0)]),
        ];
        let svg = line_chart(&LABELS, &s).unwrap();
        let texts = texts(&svg);
        for want in [
            LABELS.title,
            LABELS.subtitle,
            "Folium batched",
            "Folium per-PTE",
            "Linux 6.12",
        ] {
            assert!(texts.iter().any(|t| t == want), "no {want}: {texts:?}");
        }
        for s in &s {
            // One dot per point, one line through them all, a legend key.
            assert_eq!(
                filled(&svg, "circle", &s.name),
                s.points.len(),
                "{}",
                s.name
            );
            assert!(lines(&svg, &s.name).contains(&s.points.len()), "{}", s.name);
            assert_eq!(filled(&svg, "rect", &s.name), 1, "{}", s.name);
        }
        // A tick at each size measured, none between.
        for t in ["4K", "64K", "2048K"] {
            assert!(texts.iter().any(|x| x == t), "no tick {t}");
        }
        for t in ["8K", "16K", "1024K"] {
            assert!(!texts.iter().any(|x| x == t), "tick {t} without data");
        }
        // Colours are per series, and distinct.
        let mut c: Vec<String> = s.iter().map(|s| hex(&s.name)).collect();
        c.dedup();
        assert_eq!(c.len(), 3);
        assert_eq!(hex("Folium"), hex("Folium batched"));
    }

    #[test]
    fn bar_chart_groups_bars_and_skips_missing_ones() {
        let bar = |group: &str, series: &str, value: f64| Bar {
            group: group.into(),
            series: series.into(),
            value,
            err: value / 5.0,
        };
        let bars = [
            bar("order-0", "Folium batched", 2.0),
            bar("order-0", "Folium per-PTE", 2.1),
            bar("order-0", "Linux 6.12", 3.0),
            bar("order-9", "Folium batched", 0.2),
            bar("order-9", "Folium per-PTE", 6.0),
            bar("order-9/exit-now", "Folium batched", 0.3),
        ];
        let svg = bar_chart(&LABELS, &bars).unwrap();
        // Bars plus one legend key each.
        assert_eq!(filled(&svg, "rect", "Folium batched"), 3 + 1);
        assert_eq!(filled(&svg, "rect", "Folium per-PTE"), 2 + 1);
        assert_eq!(filled(&svg, "rect", "Linux 6.12"), 1 + 1);
        let texts = texts(&svg);
        for g in ["order-0", "order-9", "order-9/exit-now"] {
            assert_eq!(texts.iter().filter(|t| *t == g).count(), 1, "{g}");
        }
        // Three lines per whisker (the bar and two caps).
        let whiskers = roxmltree::Document::parse(&svg)
            .unwrap()
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some("#404040"))
            .count();
        assert_eq!(whiskers, 3 * bars.len());
    }

    #[test]
    fn nothing_to_draw_still_makes_a_chart() {
        let nan = series(
            "Folium batched",
            &[(f64::NAN, 1.0), (0.0, 2.0), (4.0, f64::INFINITY)],
        );
        for svg in [
            line_chart(&LABELS, &[]).unwrap(),
            line_chart(&LABELS, &[nan]).unwrap(),
            bar_chart(&LABELS, &[]).unwrap(),
        ] {
            assert!(texts(&svg).iter().any(|t| t == "no data"), "{svg}");
        }
    }

    #[test]
    fn tick_numbers_are_compact() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(2.25), "2.25");
        assert_eq!(number(12.0), "12");
        assert_eq!(number(2500.0), "2500");
        assert_eq!(kib(2048.0), "2048K");
    }
}
