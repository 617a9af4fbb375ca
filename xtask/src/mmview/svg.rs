//! The picture `cargo xtask mmview` draws: one band per snapshot, in the
//! order the program printed them, over a shared address axis.
//!
//! A user address space is almost all holes, so the axis is cut: the
//! ranges any snapshot maps, merged where less than [`MERGE_GAP`] apart,
//! become segments laid side by side with a gap between them (its size
//! written under the axis). Inside a segment the scale is linear; each
//! segment gets width in proportion to its pages but at least
//! [`MIN_SEGMENT`] pixels, so a lone stack page is still visible beside a
//! 2 MiB folio.
//!
//! Each mmview run is a box coloured by its folio's order (darker is
//! larger; grey for the zero page, white for a frame in no folio), pale
//! when read-only, outlined in black and hatched when folded (the arm64
//! contiguous hint, `CON`), with a vermilion bar under it when shared
//! copy-on-write with another process (`maps` > 1). A white line starts
//! each run, so folio boundaries show inside a range. A run narrower
//! than [`TINY`] pixels (one page in a 2 MiB segment) also gets a
//! triangle above it, so a single copied page cannot hide.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::parse::{Run, Snapshot};
use crate::Result;

/// Mapped ranges closer than this share a segment.
pub const MERGE_GAP: u64 = 64 << 10;
/// The least width of a segment, in pixels.
pub const MIN_SEGMENT: f64 = 56.0;
/// Runs narrower than this (pixels) get a triangle marker.
pub const TINY: f64 = 3.0;
/// Pixels between segments.
const SEGMENT_GAP: f64 = 28.0;
/// Canvas width.
pub const WIDTH: u32 = 1280;
/// Left column for the bands' names.
const LABEL_W: f64 = 210.0;
const MARGIN: f64 = 20.0;
const TOP: i32 = 70;
const BAND_H: i32 = 70;
/// A run's box: from this far below the band's top, this high.
const BOX_Y: i32 = 22;
const BOX_H: i32 = 30;
const FONT: &str = "sans-serif";
/// Shared copy-on-write (Okabe-Ito vermilion).
const SHARED: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const ZERO_PAGE: RGBColor = RGBColor(0xB0, 0xB0, 0xB0);
const GREY: RGBColor = RGBColor(0x50, 0x50, 0x50);

/// The colour of a folio of `order` (viridis, order 0 light to order 9
/// dark).
pub fn order_colour(order: u8) -> RGBColor {
    const V: [RGBColor; 10] = [
        RGBColor(0xfd, 0xe7, 0x25),
        RGBColor(0xb5, 0xde, 0x2b),
        RGBColor(0x6e, 0xce, 0x58),
        RGBColor(0x35, 0xb7, 0x79),
        RGBColor(0x1f, 0x9e, 0x89),
        RGBColor(0x26, 0x82, 0x8e),
        RGBColor(0x31, 0x68, 0x8e),
        RGBColor(0x3e, 0x49, 0x89),
        RGBColor(0x48, 0x28, 0x78),
        RGBColor(0x44, 0x01, 0x54),
    ];
    V[usize::from(order).min(V.len() - 1)]
}

/// `c` mixed with white (opaque, so nothing shows through).
fn pale(c: RGBColor) -> RGBColor {
    let m = |v: u8| (f64::from(v) * 0.45 + 255.0 * 0.55).round() as u8;
    RGBColor(m(c.0), m(c.1), m(c.2))
}

/// A size for the axis: exact when a whole number of some unit
/// (`1352K`), else about so many of the largest unit (`~128.0T`).
pub fn approx_size(bytes: u64) -> String {
    let exact = size_name(bytes);
    if exact.len() <= 6 {
        return exact;
    }
    let units = ["K", "M", "G", "T", "P"];
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("~{v:.1}{}", units[u])
}

/// A folio size for people: `4K`, `64K`, `2M`.
pub fn size_name(bytes: u64) -> String {
    let units = ["", "K", "M", "G", "T"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024 && v.is_multiple_of(1024) && u + 1 < units.len() {
        v /= 1024;
        u += 1;
    }
    format!("{v}{}", units[u])
}

/// A stretch of the address axis, drawn linearly.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    /// Left edge and width in pixels.
    pub x: f64,
    pub w: f64,
}

impl Segment {
    fn x_of(&self, va: u64) -> f64 {
        let va = va.clamp(self.start, self.end);
        self.x + (va - self.start) as f64 / (self.end - self.start) as f64 * self.w
    }
}

/// How one run is drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub x0: f64,
    pub x1: f64,
    pub fill: RGBColor,
    pub writable: bool,
    pub folded: bool,
    pub shared: bool,
    /// Narrower than [`TINY`]: marked with a triangle.
    pub tiny: bool,
}

/// One snapshot's band.
#[derive(Clone, Debug)]
pub struct Band {
    pub name: String,
    /// A line of numbers under the name.
    pub summary: String,
    pub marks: Vec<Mark>,
}

/// Everything the picture shows, in pixels.
#[derive(Clone, Debug)]
pub struct Model {
    pub segments: Vec<Segment>,
    pub bands: Vec<Band>,
    /// Folio orders present, for the legend.
    pub orders: Vec<u8>,
    pub zero_page: bool,
}

/// The mapped ranges of all snapshots, merged where closer than
/// [`MERGE_GAP`].
pub fn ranges(snaps: &[Snapshot]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = snaps
        .iter()
        .flat_map(|s| s.runs.iter().map(|r| (r.start, r.end)))
        .collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in all {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(MERGE_GAP) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Widths for segments of `pages` pages sharing `total` pixels: in
/// proportion, but none below [`MIN_SEGMENT`] (when there is room).
fn widths(pages: &[u64], total: f64) -> Vec<f64> {
    let mut fixed = vec![false; pages.len()];
    loop {
        let free_px = total - MIN_SEGMENT * fixed.iter().filter(|f| **f).count() as f64;
        let free_pages: u64 = pages
            .iter()
            .zip(&fixed)
            .filter(|(_, f)| !**f)
            .map(|(p, _)| *p)
            .sum();
        let w: Vec<f64> = pages
            .iter()
            .zip(&fixed)
            .map(|(&p, &f)| {
                if f || free_pages == 0 {
                    MIN_SEGMENT
                } else {
                    free_px * p as f64 / free_pages as f64
                }
            })
            .collect();
        let mut changed = false;
        for (i, wi) in w.iter().enumerate() {
            if !fixed[i] && *wi < MIN_SEGMENT {
                fixed[i] = true;
                changed = true;
            }
        }
        if !changed || fixed.iter().all(|f| *f) {
            return w;
        }
    }
}

fn mark(r: &Run, seg: &Segment) -> Mark {
    let (x0, x1) = (seg.x_of(r.start), seg.x_of(r.end));
    let fill = match r.folio {
        _ if r.zero => ZERO_PAGE,
        Some(f) => order_colour(f.order),
        None => WHITE,
    };
    Mark {
        x0,
        x1,
        fill,
        writable: r.writable,
        folded: r.cont,
        shared: r.shared(),
        tiny: x1 - x0 < TINY,
    }
}

/// The marks of one snapshot's runs. A narrow run is flagged `tiny` only
/// if it stands out: a run touching it is drawn differently, or none
/// touches it at all (so a copied page inside a shared folio is marked,
/// a program's row of small pages is not).
fn marks(runs: &[Run], segments: &[Segment]) -> Vec<Mark> {
    let placed: Vec<(&Run, Mark)> = runs
        .iter()
        .filter_map(|r| {
            let seg = segments
                .iter()
                .find(|g| g.start <= r.start && r.end <= g.end)?;
            Some((r, mark(r, seg)))
        })
        .collect();
    let looks = |m: &Mark| (m.fill, m.writable, m.shared, m.folded);
    (0..placed.len())
        .map(|i| {
            let (r, m) = &placed[i];
            // The neighbour on one side, if it touches: whether it looks
            // different.
            let side = |j: Option<usize>, touches: &dyn Fn(&Run) -> bool| {
                j.and_then(|j| placed.get(j))
                    .filter(|(n, _)| touches(n))
                    .map(|(_, n)| looks(n) != looks(m))
            };
            let (before, after) = (
                side(i.checked_sub(1), &|n| n.end == r.start),
                side(Some(i + 1), &|n| n.start == r.end),
            );
            let stands_out = before == Some(true)
                || after == Some(true)
                || (before.is_none() && after.is_none());
            Mark {
                tiny: m.tiny && stands_out,
                ..m.clone()
            }
        })
        .collect()
}

fn summary(s: &Snapshot) -> String {
    let pages =
        |f: &dyn Fn(&Run) -> bool| -> u64 { s.runs.iter().filter(|r| f(r)).map(Run::pages).sum() };
    let mapped = pages(&|_| true);
    let shared = pages(&|r| r.shared());
    let folded = pages(&|r| r.cont);
    let mut text = format!("pid {}: {mapped} pages, {shared} shared", s.pid);
    if folded > 0 {
        text.push_str(&format!(", {folded} folded"));
    }
    text
}

/// Lays out `snaps` on a canvas [`WIDTH`] wide.
pub fn layout(snaps: &[Snapshot]) -> Model {
    let rs = ranges(snaps);
    let left = LABEL_W + MARGIN;
    let total = f64::from(WIDTH) - left - MARGIN - SEGMENT_GAP * rs.len().saturating_sub(1) as f64;
    let pages: Vec<u64> = rs.iter().map(|(s, e)| (e - s) / 4096).collect();
    let mut x = left;
    let segments: Vec<Segment> = rs
        .iter()
        .zip(widths(&pages, total.max(MIN_SEGMENT)))
        .map(|(&(start, end), w)| {
            let seg = Segment { start, end, x, w };
            x += w + SEGMENT_GAP;
            seg
        })
        .collect();
    let bands = snaps
        .iter()
        .map(|s| Band {
            name: s.name.clone(),
            summary: summary(s),
            marks: marks(&s.runs, &segments),
        })
        .collect();
    let mut orders: Vec<u8> = snaps
        .iter()
        .flat_map(|s| s.runs.iter())
        .filter(|r| !r.zero)
        .filter_map(|r| r.folio.map(|f| f.order))
        .collect();
    orders.sort_unstable();
    orders.dedup();
    Model {
        segments,
        bands,
        orders,
        zero_page: snaps.iter().any(|s| s.runs.iter().any(|r| r.zero)),
    }
}

type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn text(area: &Area, s: &str, at: (f64, f64), size: u32, colour: &RGBColor, h: HPos) -> Drawn {
    let style = TextStyle::from((FONT, size).into_font())
        .color(colour)
        .pos(Pos::new(h, VPos::Center));
    area.draw_text(s, &style, (at.0 as i32, at.1 as i32))?;
    Ok(())
}

/// Hatches the box `[x0, x1] x [y0, y1]` with lines rising at 45 degrees.
fn hatch(area: &Area, x0: f64, x1: f64, y0: i32, y1: i32) -> Drawn {
    let h = f64::from(y1 - y0);
    let mut x = x0 - h;
    while x < x1 {
        let t0 = (x0 - x).max(0.0);
        let t1 = (x1 - x).min(h);
        if t1 > t0 {
            let p = |t: f64| ((x + t) as i32, y1 - t as i32);
            area.draw(&PathElement::new(vec![p(t0), p(t1)], BLACK.mix(0.55)))?;
        }
        x += 6.0;
    }
    Ok(())
}

fn draw_mark(area: &Area, m: &Mark, top: i32) -> Drawn {
    let (y0, y1) = (top + BOX_Y, top + BOX_Y + BOX_H);
    let (x0, x1) = (
        m.x0.round() as i32,
        (m.x1.round() as i32).max(m.x0.round() as i32 + 1),
    );
    let fill = if m.writable {
        m.fill.filled()
    } else {
        pale(m.fill).filled()
    };
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], fill))?;
    if m.fill == WHITE {
        area.draw(&Rectangle::new([(x0, y0), (x1, y1)], GREY.stroke_width(1)))?;
    }
    if x1 - x0 > 3 {
        area.draw(&PathElement::new(
            vec![(x0, y0), (x0, y1)],
            WHITE.stroke_width(1),
        ))?;
    }
    if m.folded {
        hatch(area, m.x0, m.x1, y0, y1)?;
        area.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(2)))?;
    }
    if m.shared {
        area.draw(&Rectangle::new(
            [(x0, y1 + 2), (x1, y1 + 7)],
            SHARED.filled(),
        ))?;
    }
    if m.tiny {
        let xm = (m.x0 + m.x1) / 2.0;
        let tri = vec![
            ((xm - 5.0) as i32, y0 - 11),
            ((xm + 5.0) as i32, y0 - 11),
            (xm as i32, y0 - 2),
        ];
        area.draw(&Polygon::new(tri.clone(), m.fill.filled()))?;
        let mut outline = tri;
        outline.push(outline[0]);
        area.draw(&PathElement::new(outline, BLACK.stroke_width(1)))?;
    }
    Ok(())
}

/// The canvas height for `bands` bands.
pub fn height(bands: usize) -> u32 {
    (TOP + BAND_H * bands.max(1) as i32 + 190) as u32
}

/// Draws `model` as an SVG document.
pub fn render(model: &Model, title: &str, subtitle: &str) -> Result<String> {
    let mut svg = String::new();
    let size = (WIDTH, height(model.bands.len()));
    let drawn: Drawn = (|| {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        text(&root, title, (MARGIN, 22.0), 20, &BLACK, HPos::Left)?;
        text(&root, subtitle, (MARGIN, 46.0), 13, &GREY, HPos::Left)?;
        for (i, band) in model.bands.iter().enumerate() {
            let top = TOP + BAND_H * i as i32;
            let mid = f64::from(top + BOX_Y + BOX_H / 2);
            text(
                &root,
                &band.name,
                (MARGIN, mid - 8.0),
                14,
                &BLACK,
                HPos::Left,
            )?;
            text(
                &root,
                &band.summary,
                (MARGIN, mid + 9.0),
                11,
                &GREY,
                HPos::Left,
            )?;
            // The segments' extent, faintly, so holes inside read as holes.
            for s in &model.segments {
                let y = top + BOX_Y + BOX_H / 2;
                root.draw(&PathElement::new(
                    vec![(s.x as i32, y), ((s.x + s.w) as i32, y)],
                    GREY.mix(0.35),
                ))?;
            }
            for m in &band.marks {
                draw_mark(&root, m, top)?;
            }
        }
        // The axis under the bands.
        let axis = TOP + BAND_H * model.bands.len() as i32 + 6;
        for (i, s) in model.segments.iter().enumerate() {
            let (x0, x1) = (s.x as i32, (s.x + s.w) as i32);
            root.draw(&PathElement::new(
                vec![(x0, axis + 6), (x0, axis), (x1, axis), (x1, axis + 6)],
                BLACK.stroke_width(1),
            ))?;
            let row = f64::from(axis) + if i % 2 == 0 { 16.0 } else { 44.0 };
            text(
                &root,
                &format!("{:#x}", s.start),
                (s.x, row),
                10,
                &BLACK,
                HPos::Left,
            )?;
            let size = size_name(s.end - s.start);
            text(&root, &size, (s.x, row + 13.0), 10, &GREY, HPos::Left)?;
            if let Some(next) = model.segments.get(i + 1) {
                let gx = s.x + s.w + SEGMENT_GAP / 2.0;
                text(&root, "//", (gx, f64::from(axis)), 11, &GREY, HPos::Center)?;
                let gap = approx_size(next.start - s.end);
                let gy = f64::from(axis) + if i % 2 == 0 { 74.0 } else { 86.0 };
                text(
                    &root,
                    &format!("gap {gap}"),
                    (gx, gy),
                    9,
                    &GREY,
                    HPos::Center,
                )?;
            }
        }
        // The legend.
        let ly = f64::from(axis + 112);
        let mut lx = MARGIN;
        text(&root, "folio size:", (lx, ly), 12, &BLACK, HPos::Left)?;
        lx += 70.0;
        let swatch = |lx: f64, c: RGBColor| {
            root.draw(&Rectangle::new(
                [(lx as i32, ly as i32 - 7), (lx as i32 + 16, ly as i32 + 7)],
                c.filled(),
            ))
        };
        for &o in &model.orders {
            swatch(lx, order_colour(o))?;
            text(
                &root,
                &size_name(4096 << o),
                (lx + 20.0, ly),
                12,
                &BLACK,
                HPos::Left,
            )?;
            lx += 62.0;
        }
        if model.zero_page {
            swatch(lx, ZERO_PAGE)?;
            text(&root, "zero page", (lx + 20.0, ly), 12, &BLACK, HPos::Left)?;
        }
        let ly2 = ly + 26.0;
        let y = ly2 as i32;
        root.draw(&Rectangle::new(
            [(20, y - 7), (36, y + 7)],
            pale(order_colour(4)).filled(),
        ))?;
        text(
            &root,
            "pale: read-only",
            (40.0, ly2),
            12,
            &BLACK,
            HPos::Left,
        )?;
        root.draw(&Rectangle::new(
            [(170, y + 1), (186, y + 6)],
            SHARED.filled(),
        ))?;
        text(
            &root,
            "bar under: shared copy-on-write (maps > 1)",
            (190.0, ly2),
            12,
            &BLACK,
            HPos::Left,
        )?;
        hatch(&root, 470.0, 486.0, y - 7, y + 7)?;
        root.draw(&Rectangle::new(
            [(470, y - 7), (486, y + 7)],
            BLACK.stroke_width(2),
        ))?;
        text(
            &root,
            "hatched, outlined: folded (contiguous, CON)",
            (490.0, ly2),
            12,
            &BLACK,
            HPos::Left,
        )?;
        let tri = vec![(795, y - 5), (805, y - 5), (800, y + 4)];
        root.draw(&Polygon::new(tri, GREY.filled()))?;
        text(
            &root,
            "a run too narrow to see",
            (810.0, ly2),
            12,
            &BLACK,
            HPos::Left,
        )?;
        root.present()?;
        Ok(())
    })();
    drawn.map_err(|e| format!("drawing {title}: {e}"))?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::super::parse::{self, Folio};
    use super::*;

    fn run(
        start: u64,
        pages: u64,
        order: Option<u8>,
        maps: u32,
        writable: bool,
        cont: bool,
    ) -> Run {
        Run {
            start,
            end: start + pages * 4096,
            pfn: 0x1000,
            folio: order.map(|order| Folio {
                head: 0x1000,
                order,
                mapcount: 1,
            }),
            maps,
            readable: true,
            writable,
            exec: false,
            young: true,
            dirty: true,
            cont,
            zero: false,
            level: "PTE".into(),
        }
    }

    fn snapshot(name: &str, runs: Vec<Run>) -> Snapshot {
        Snapshot {
            name: name.into(),
            pid: 2,
            runs,
            ..Snapshot::default()
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_name(4096), "4K");
        assert_eq!(size_name(2 << 20), "2M");
        assert_eq!(approx_size(1352 << 10), "1352K");
        assert_eq!(approx_size((1 << 47) - 0x231000 - (1 << 30)), "~128.0T");
    }

    #[test]
    fn ranges_merge_only_when_close() {
        let a = snapshot("a", vec![run(0x40_0000, 16, Some(4), 1, true, false)]);
        let b = snapshot(
            "b",
            vec![
                run(0x41_0000 + MERGE_GAP, 1, Some(0), 1, true, false),
                run(0x7fff_0000_0000, 512, Some(9), 1, true, false),
            ],
        );
        assert_eq!(
            ranges(&[a, b]),
            [(0x40_0000, 0x42_1000), (0x7fff_0000_0000, 0x7fff_0020_0000)]
        );
    }

    #[test]
    fn small_segments_keep_a_minimum_width_and_all_fit() {
        let w = widths(&[512, 1, 16, 2], 1000.0);
        assert!(w.iter().all(|&x| x >= MIN_SEGMENT - 1e-9), "{w:?}");
        assert!((w.iter().sum::<f64>() - 1000.0).abs() < 1e-6, "{w:?}");
        assert!(w[0] > w[2] && w[2] >= w[3]);
    }

    #[test]
    fn one_band_per_snapshot_and_one_mark_per_run() {
        let before = snapshot(
            "before",
            vec![
                run(0x40_0000, 16, Some(4), 1, true, true),
                run(0x41_0000, 16, Some(4), 1, true, true),
                run(0x7fff_0000_0000, 512, Some(9), 1, true, false),
            ],
        );
        let after = snapshot(
            "after",
            vec![
                run(0x40_0000, 2, Some(4), 2, false, false),
                run(0x40_2000, 1, Some(0), 1, true, false),
                run(0x40_3000, 13, Some(4), 2, false, false),
                run(0x7fff_0000_0000, 100, Some(9), 2, false, false),
                run(0x7fff_0006_4000, 1, Some(0), 1, true, false),
                run(0x7fff_0006_5000, 411, Some(9), 2, false, false),
            ],
        );
        let m = layout(&[before, after]);
        assert_eq!(m.segments.len(), 2);
        assert_eq!(m.bands.len(), 2);
        assert_eq!(m.bands[0].marks.len(), 3);
        assert_eq!(m.bands[1].marks.len(), 6);
        assert_eq!(m.bands[0].marks.iter().filter(|x| x.folded).count(), 2);
        assert_eq!(m.bands[1].marks.iter().filter(|x| x.shared).count(), 4);
        assert_eq!(m.bands[1].marks.iter().filter(|x| x.writable).count(), 2);
        // The copied page in the 2 MiB segment is too narrow to see.
        let tiny: Vec<&Mark> = m.bands[1].marks.iter().filter(|x| x.tiny).collect();
        assert_eq!(tiny.len(), 2);
        assert!(tiny.iter().all(|t| t.fill == order_colour(0) && t.writable));
        assert_eq!(m.orders, [0, 4, 9]);
        assert!(
            m.bands[1].summary.contains("528 pages, 526 shared"),
            "{}",
            m.bands[1].summary
        );
        // Runs sit in order inside the canvas.
        for b in &m.bands {
            for w in b.marks.windows(2) {
                assert!(w[0].x1 <= w[1].x0 + 1e-9);
            }
            assert!(
                b.marks
                    .iter()
                    .all(|x| x.x0 >= LABEL_W && x.x1 <= f64::from(WIDTH))
            );
        }
    }

    #[test]
    fn the_svg_has_a_band_per_snapshot_and_a_legend() {
        let lines: Vec<String> = include_str!("testdata/mmdemo-virt.txt")
            .lines()
            .map(str::to_string)
            .collect();
        let snaps = parse::parse(&lines).unwrap();
        let model = layout(&snaps);
        assert_eq!(model.bands.len(), 4);
        // The program, C, B, A and the stack.
        assert_eq!(model.segments.len(), 5);
        let svg = render(&model, "mmview: mmdemo", "virt").unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect();
        for s in &snaps {
            assert!(texts.contains(&s.name), "{} missing", s.name);
        }
        for word in ["64K", "2M", "zero page", "pale: read-only"] {
            assert!(texts.iter().any(|t| t == word), "{word} missing: {texts:?}");
        }
        // Each of the child's two copied pages inside large segments is
        // marked with a triangle (polygons: those, plus the legend's).
        let polygons = doc
            .descendants()
            .filter(|n| n.has_tag_name("polygon"))
            .count();
        let tiny: usize = model
            .bands
            .iter()
            .map(|b| b.marks.iter().filter(|m| m.tiny).count())
            .sum();
        assert!(tiny >= 2, "{tiny}");
        assert_eq!(polygons, tiny + 1);
        let shared = model.bands[2].marks.iter().filter(|m| m.shared).count();
        assert!(shared > 0);
        assert_eq!(
            model.bands[3].marks.iter().filter(|m| m.shared).count(),
            0,
            "nothing is shared after the child exited"
        );
    }
}
