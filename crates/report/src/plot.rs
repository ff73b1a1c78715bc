//! Figures for reports, drawn with plotters as SVG text or PNG bytes.
//!
//! Each figure is a plain data struct implementing [`Figure`]; [`svg`] and [`png`] render it to text or bytes
//! (the caller writes them). Text is drawn with DejaVu Sans shipped in `assets/fonts` (registered once), so PNGs
//! render on a machine without any system fonts.

use std::sync::Once;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

static FONTS: Once = Once::new();

fn register_fonts() {
    FONTS.call_once(|| {
        // The bytes are valid TTF files shipped with the crate; a failure here is a build defect.
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/fonts/DejaVuSans.ttf"),
        )
        .map_err(|_| ())
        .expect("shipped DejaVuSans.ttf is a valid font");
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Bold,
            include_bytes!("../assets/fonts/DejaVuSans-Bold.ttf"),
        )
        .map_err(|_| ())
        .expect("shipped DejaVuSans-Bold.ttf is a valid font");
    });
}

/// Colour of the treatment (lead) group.
pub const TREATED: RGBColor = RGBColor(200, 55, 45);
/// Colour of the contrast group.
pub const CONTROL: RGBColor = RGBColor(40, 90, 160);
/// Grey for reference lines.
pub const GREY: RGBColor = RGBColor(150, 150, 150);

/// Something that can be drawn on any plotters backend.
pub trait Figure {
    /// Pixel size (width, height).
    fn size(&self) -> (u32, u32);
    /// Draws the figure on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Turns a plotters error into text.
pub fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// A figure that could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("drawing `{figure}`: {reason}")]
pub struct PlotError {
    /// The figure's title.
    pub figure: String,
    /// What plotters reported.
    pub reason: String,
}

/// Renders `fig` as SVG text.
pub fn svg(fig: &impl Figure, name: &str) -> Result<String, PlotError> {
    register_fonts();
    let fail = |reason: String| PlotError { figure: name.to_string(), reason };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, fig.size()).into_drawing_area();
        fig.draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(format!("{e:?}")))?;
    }
    Ok(svg)
}

/// Renders `fig` as a PNG file's bytes.
pub fn png(fig: &impl Figure, name: &str) -> Result<Vec<u8>, PlotError> {
    register_fonts();
    let fail = |reason: String| PlotError { figure: name.to_string(), reason };
    let (w, h) = fig.size();
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        fig.draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(format!("{e:?}")))?;
    }
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(&rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| fail(e.to_string()))?;
    Ok(bytes)
}

/// Love plot: standardized mean differences per covariate before and after matching, with ±0.1 lines.
#[derive(Debug, Clone)]
pub struct LovePlot {
    /// Title.
    pub title: String,
    /// `(term, smd before, smd after)`; `None` where a value is undefined.
    pub rows: Vec<(String, Option<f64>, Option<f64>)>,
}

impl Figure for LovePlot {
    fn size(&self) -> (u32, u32) {
        (900, 160 + 28 * self.rows.len().max(1) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let n = self.rows.len().max(1);
        let max = self
            .rows
            .iter()
            .flat_map(|(_, a, b)| [a, b])
            .filter_map(|v| v.map(f64::abs))
            .fold(0.15f64, f64::max)
            .min(5.0);
        let lim = (max * 1.1 * 20.0).ceil() / 20.0;
        let label_width =
            self.rows.iter().map(|(t, ..)| t.chars().count()).max().unwrap_or(10).clamp(8, 40) as u32 * 8 + 20;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22).into_font().style(FontStyle::Bold))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(label_width)
            .build_cartesian_2d(-lim..lim, 0.0..n as f64)
            .map_err(err)?;
        let labels: Vec<String> = self.rows.iter().map(|(t, ..)| t.clone()).collect();
        chart
            .configure_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .disable_y_mesh()
            .x_desc("Standardized mean difference (treated − control) / SD of treated")
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| row_label(&labels, *y))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        for x in [-0.1, 0.1] {
            chart
                .draw_series(DashedLineSeries::new(vec![(x, 0.0), (x, n as f64)], 6, 4, GREY.stroke_width(1)))
                .map_err(err)?;
        }
        chart.draw_series(LineSeries::new(vec![(0.0, 0.0), (0.0, n as f64)], BLACK.stroke_width(1))).map_err(err)?;
        let clamp = |v: f64| v.clamp(-lim, lim);
        let y_of = |i: usize| (n - 1 - i) as f64 + 0.5;
        chart
            .draw_series(
                self.rows.iter().enumerate().filter_map(|(i, (_, b, _))| {
                    b.map(|v| Circle::new((clamp(v), y_of(i)), 6, CONTROL.stroke_width(2)))
                }),
            )
            .map_err(err)?
            .label("Before matching")
            .legend(|(x, y)| Circle::new((x, y), 6, CONTROL.stroke_width(2)));
        chart
            .draw_series(
                self.rows
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (_, _, a))| a.map(|v| Circle::new((clamp(v), y_of(i)), 6, TREATED.filled()))),
            )
            .map_err(err)?
            .label("After matching")
            .legend(|(x, y)| Circle::new((x, y), 6, TREATED.filled()));
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

/// One panel of a distribution plot: values and weights of the two groups.
#[derive(Debug, Clone)]
pub struct DistributionPanel {
    /// Panel title, e.g. "Before matching".
    pub title: String,
    /// Treated values with weights.
    pub treated: Vec<(f64, f64)>,
    /// Control values with weights.
    pub control: Vec<(f64, f64)>,
}

/// Weighted histograms (as densities) of a score for treated and control units, one panel per stage.
#[derive(Debug, Clone)]
pub struct DistributionPlot {
    /// Figure title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Panels side by side.
    pub panels: Vec<DistributionPanel>,
    /// Names of the groups (treated, control).
    pub groups: (String, String),
}

fn density(values: &[(f64, f64)], lo: f64, width: f64, bins: usize) -> Vec<f64> {
    let mut h = vec![0.0; bins];
    let total: f64 = values.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return h;
    }
    for &(v, w) in values {
        let k = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
        h[k] += w;
    }
    h.iter().map(|c| c / total / width).collect()
}

impl Figure for DistributionPlot {
    fn size(&self) -> (u32, u32) {
        (520 * self.panels.len().max(1) as u32, 460)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(&self.title, ("sans-serif", 22).into_font().style(FontStyle::Bold)).map_err(err)?;
        let all = self.panels.iter().flat_map(|p| p.treated.iter().chain(p.control.iter())).map(|(v, _)| *v);
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (0.0, 1.0) };
        let bins = 30;
        let width = (hi - lo) / bins as f64;
        let hists: Vec<(Vec<f64>, Vec<f64>)> = self
            .panels
            .iter()
            .map(|p| (density(&p.treated, lo, width, bins), density(&p.control, lo, width, bins)))
            .collect();
        let ymax = hists.iter().flat_map(|(a, b)| a.iter().chain(b.iter())).fold(0.0f64, |m, v| m.max(*v)) * 1.1;
        let ymax = if ymax > 0.0 { ymax } else { 1.0 };
        let areas = root.split_evenly((1, self.panels.len().max(1)));
        for ((panel, area), (ht, hc)) in self.panels.iter().zip(areas.iter()).zip(hists.iter()) {
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(55)
                .build_cartesian_2d(lo..hi, 0.0..ymax)
                .map_err(err)?;
            chart
                .configure_mesh()
                .light_line_style(RGBColor(242, 242, 242))
                .x_desc(&self.x_label)
                .y_desc("Density")
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .draw()
                .map_err(err)?;
            for (h, colour, name, n) in
                [(hc, CONTROL, &self.groups.1, panel.control.len()), (ht, TREATED, &self.groups.0, panel.treated.len())]
            {
                chart
                    .draw_series(h.iter().enumerate().map(|(k, &d)| {
                        let x0 = lo + k as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width, d)], colour.mix(0.35).filled())
                    }))
                    .map_err(err)?;
                let outline: Vec<(f64, f64)> = h
                    .iter()
                    .enumerate()
                    .flat_map(|(k, &d)| {
                        let x0 = lo + k as f64 * width;
                        [(x0, d), (x0 + width, d)]
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(outline, colour.stroke_width(2)))
                    .map_err(err)?
                    .label(format!("{name} (n = {n})"))
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.mix(0.6).filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(GREY)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_as_svg_and_png() {
        let love = LovePlot {
            title: "Covariate balance".into(),
            rows: vec![("pct_fsm".into(), Some(0.45), Some(0.02)), ("factor(region)7".into(), Some(-0.3), None)],
        };
        let dist = DistributionPlot {
            title: "Propensity scores".into(),
            x_label: "Propensity score".into(),
            panels: vec![
                DistributionPanel {
                    title: "Before".into(),
                    treated: vec![(0.6, 1.0), (0.7, 1.0)],
                    control: vec![(0.2, 1.0), (0.3, 1.0), (0.65, 1.0)],
                },
                DistributionPanel { title: "After".into(), treated: vec![(0.6, 1.0)], control: vec![(0.65, 1.0)] },
            ],
            groups: ("Lead".into(), "Contrast".into()),
        };
        let love_svg = svg(&love, "love").unwrap();
        assert!(love_svg.contains("pct_fsm") && love_svg.contains("After matching"));
        assert!(svg(&dist, "dist").unwrap().len() > 1000);
        for bytes in [png(&love, "love").unwrap(), png(&dist, "dist").unwrap()] {
            assert!(bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        }
        let trend = IntervalPlot {
            title: "Attainment".into(),
            y_label: "Mean".into(),
            series: vec![IntervalSeries {
                label: "Lead".into(),
                points: vec![(2013.0, 0.1, 0.0, 0.2), (2014.0, 0.2, 0.1, 0.3)],
                colour: TREATED,
            }],
            marker: Some((2013.5, "Programme starts".into())),
            zero_line: true,
        };
        let cat = CaterpillarPlot {
            title: "Schools".into(),
            effects: vec![(0.1, 0.05, false), (-0.2, 0.1, true), (0.3, 0.02, false)],
            highlight_label: "Lead".into(),
        };
        assert!(svg(&trend, "trend").unwrap().contains("Programme starts"));
        assert_eq!(
            (tick_label(-0.0001, 2), tick_label(-0.05, 2), tick_label(0.1, 1)),
            ("0.00".into(), "−0.05".into(), "0.1".into())
        );
        assert_eq!((tick_digits(0.3), tick_digits(2.0), tick_digits(40.0)), (2, 1, 0));
        assert!(svg(&cat, "cat").unwrap().len() > 1000);
        assert!(png(&trend, "trend").unwrap().len() > 1000 && png(&cat, "cat").unwrap().len() > 1000);
        assert_eq!(year_label(2015), "2014/15");
    }
}

/// One series of points with 95% intervals over an x axis of years.
#[derive(Debug, Clone)]
pub struct IntervalSeries {
    /// Legend label.
    pub label: String,
    /// `(x, estimate, low, high)`.
    pub points: Vec<(f64, f64, f64, f64)>,
    /// Series colour.
    pub colour: RGBColor,
}

/// Estimates with 95% CIs by year, for one or two series (trend plot, event-study plot).
#[derive(Debug, Clone)]
pub struct IntervalPlot {
    /// Title.
    pub title: String,
    /// Y axis label.
    pub y_label: String,
    /// Series drawn with small horizontal offsets so intervals do not overlap.
    pub series: Vec<IntervalSeries>,
    /// Draw a dashed vertical line before this x (the programme start).
    pub marker: Option<(f64, String)>,
    /// Draw a horizontal reference line at 0.
    pub zero_line: bool,
}

impl Figure for IntervalPlot {
    fn size(&self) -> (u32, u32) {
        (900, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let pts = || self.series.iter().flat_map(|s| s.points.iter());
        let (xlo, xhi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (ylo, yhi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.2), b.max(p.3)));
        let (xlo, xhi) = if xlo.is_finite() { (xlo - 0.5, xhi + 0.5) } else { (0.0, 1.0) };
        // Keep the marker (programme start) inside the plot with half a year to its left.
        let (xlo, xhi) = match &self.marker {
            Some((m, _)) => (xlo.min(m - 0.5), xhi.max(m + 0.5)),
            None => (xlo, xhi),
        };
        let (mut ylo, mut yhi) = if ylo.is_finite() && yhi > ylo { (ylo, yhi) } else { (-1.0, 1.0) };
        if self.zero_line {
            ylo = ylo.min(0.0);
            yhi = yhi.max(0.0);
        }
        let pad = (yhi - ylo) * 0.1;
        // A band above the data holds the legend and the marker's label, on opposite sides, so neither
        // covers a point, an interval or the other: the label on the marker's side, the legend on the other.
        let band = (yhi - ylo) * (0.08 + 0.07 * self.series.len().max(1) as f64);
        let top = yhi + pad + band;
        let marker_left = self.marker.as_ref().is_some_and(|(m, _)| *m < (xlo + xhi) / 2.0);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22).into_font().style(FontStyle::Bold))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(xlo..xhi, (ylo - pad)..top)
            .map_err(err)?;
        let n_years = (xhi - xlo).round() as usize;
        let y_digits = tick_digits(top - (ylo - pad));
        chart
            .configure_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .y_label_formatter(&|y| tick_label(*y, y_digits))
            .x_labels(n_years + 1)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 { year_label(x.round() as i64) } else { String::new() }
            })
            .x_desc("Academic year")
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        if self.zero_line {
            chart.draw_series(LineSeries::new(vec![(xlo, 0.0), (xhi, 0.0)], BLACK.stroke_width(1))).map_err(err)?;
        }
        if let Some((x, label)) = &self.marker {
            chart
                .draw_series(DashedLineSeries::new(vec![(*x, ylo - pad), (*x, top)], 8, 5, GREY.stroke_width(2)))
                .map_err(err)?;
            // Beside the line at the top of the band: to its right when the line is in the left half.
            let (dx, anchor) = if marker_left { (0.05, HPos::Left) } else { (-0.05, HPos::Right) };
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*x + dx, top - band * 0.1),
                    ("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90)).pos(Pos::new(anchor, VPos::Top)),
                )))
                .map_err(err)?;
        }
        let k = self.series.len().max(1) as f64;
        for (i, s) in self.series.iter().enumerate() {
            let off = (i as f64 - (k - 1.0) / 2.0) * 0.08;
            let colour = s.colour;
            chart
                .draw_series(s.points.iter().map(|&(x, _, lo, hi)| {
                    PathElement::new(vec![(x + off, lo), (x + off, hi)], colour.stroke_width(2))
                }))
                .map_err(err)?;
            chart
                .draw_series(s.points.iter().flat_map(|&(x, _, lo, hi)| {
                    [lo, hi].map(|y| {
                        PathElement::new(vec![(x + off - 0.04, y), (x + off + 0.04, y)], colour.stroke_width(2))
                    })
                }))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(s.points.iter().map(|&(x, y, ..)| (x + off, y)), colour.stroke_width(2)))
                .map_err(err)?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3)));
            chart
                .draw_series(s.points.iter().map(|&(x, y, ..)| Circle::new((x + off, y), 5, colour.filled())))
                .map_err(err)?;
        }
        legend(&mut chart, if marker_left { SeriesLabelPosition::UpperRight } else { SeriesLabelPosition::UpperLeft })
    }
}

/// Decimals for the ticks of an axis spanning `range` (about ten ticks).
fn tick_digits(range: f64) -> usize {
    if range.is_finite() && range > 0.0 { (-(range / 10.0).log10()).ceil().clamp(0.0, 6.0) as usize } else { 2 }
}

/// A tick label with `digits` decimals and a true minus sign, never `-0`.
fn tick_label(y: f64, digits: usize) -> String {
    let s = format!("{y:.digits$}");
    if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        s.trim_start_matches('-').to_string()
    } else {
        s.replace('-', "−")
    }
}

/// Draws the legend of a chart's labelled series in a white box.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(GREY)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)
}

/// `2015` → `2014/15`.
pub fn year_label(y: i64) -> String {
    format!("{}/{:02}", y - 1, y.rem_euclid(100))
}

/// Caterpillar plot: school random effects (conditional modes) with 95% intervals, sorted, treated highlighted.
#[derive(Debug, Clone)]
pub struct CaterpillarPlot {
    /// Title.
    pub title: String,
    /// `(estimate, conditional SD, highlighted)` per school.
    pub effects: Vec<(f64, f64, bool)>,
    /// Label of the highlighted group.
    pub highlight_label: String,
}

impl Figure for CaterpillarPlot {
    fn size(&self) -> (u32, u32) {
        (900, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let mut e = self.effects.clone();
        e.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = e.len().max(1);
        let (lo, hi) = e
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(m, s, _)| (a.min(m - 1.96 * s), b.max(m + 1.96 * s)));
        let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (-1.0, 1.0) };
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22).into_font().style(FontStyle::Bold))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n as f64, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .disable_x_mesh()
            .x_label_formatter(&|x| format!("{}", x.round() as i64))
            .x_desc("Schools, ranked by estimated effect")
            .y_desc("School effect (conditional mode, 95% interval)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        chart.draw_series(LineSeries::new(vec![(0.0, 0.0), (n as f64, 0.0)], BLACK.stroke_width(1))).map_err(err)?;
        let faint = CONTROL.mix(0.25);
        chart
            .draw_series(e.iter().enumerate().filter(|(_, t)| !t.2).map(|(i, &(m, s, _))| {
                PathElement::new(vec![(i as f64 + 0.5, m - 1.96 * s), (i as f64 + 0.5, m + 1.96 * s)], faint)
            }))
            .map_err(err)?;
        chart
            .draw_series(
                e.iter()
                    .enumerate()
                    .filter(|(_, t)| !t.2)
                    .map(|(i, &(m, ..))| Circle::new((i as f64 + 0.5, m), 1, CONTROL.filled())),
            )
            .map_err(err)?
            .label("Other schools")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, CONTROL.filled()));
        chart
            .draw_series(e.iter().enumerate().filter(|(_, t)| t.2).map(|(i, &(m, s, _))| {
                PathElement::new(
                    vec![(i as f64 + 0.5, m - 1.96 * s), (i as f64 + 0.5, m + 1.96 * s)],
                    TREATED.stroke_width(2),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(
                e.iter()
                    .enumerate()
                    .filter(|(_, t)| t.2)
                    .map(|(i, &(m, ..))| Circle::new((i as f64 + 0.5, m), 4, TREATED.filled())),
            )
            .map_err(err)?
            .label(self.highlight_label.clone())
            .legend(|(x, y)| Circle::new((x + 8, y), 4, TREATED.filled()));
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// One curve of a [`PowerCurve`].
#[derive(Debug, Clone)]
pub struct CurveSeries {
    /// Legend label.
    pub label: String,
    /// `(effect, power, low, high)`: power with its 95% Monte Carlo interval.
    pub points: Vec<(f64, f64, f64, f64)>,
    /// Colour.
    pub colour: RGBColor,
}

/// Power against the simulated effect, one curve per analysis, with the target power dashed.
#[derive(Debug, Clone)]
pub struct PowerCurve {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Curves.
    pub series: Vec<CurveSeries>,
    /// Target power (dashed horizontal line), e.g. 0.8.
    pub target: f64,
    /// Nominal size (dotted horizontal line), e.g. 0.05.
    pub alpha: f64,
}

/// Colours of successive curves.
pub const PALETTE: [RGBColor; 6] =
    [TREATED, CONTROL, RGBColor(60, 140, 70), RGBColor(150, 80, 160), RGBColor(220, 140, 30), RGBColor(90, 90, 90)];

impl Figure for PowerCurve {
    fn size(&self) -> (u32, u32) {
        (900, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let xs = || self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (xlo, xhi) = xs().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
        let (xlo, xhi) = if xlo.is_finite() && xhi > xlo { (xlo, xhi) } else { (xlo.min(0.0), xlo.max(0.0) + 1.0) };
        let pad = (xhi - xlo) * 0.04;
        let (xlo, xhi) = (xlo - pad, xhi + pad);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22).into_font().style(FontStyle::Bold))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(xlo..xhi, 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .y_label_formatter(&|y| format!("{:.0}%", 100.0 * y))
            .x_desc(&self.x_label)
            .y_desc("Power (share of replicates with p < 0.05)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(xlo, self.target), (xhi, self.target)],
                8,
                5,
                GREY.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("{:.0}% power", 100.0 * self.target))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREY.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(vec![(xlo, self.alpha), (xhi, self.alpha)], 2, 4, GREY.stroke_width(1)))
            .map_err(err)?
            .label(format!("{:.0}% (nominal size)", 100.0 * self.alpha))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREY.stroke_width(1)));
        for s in &self.series {
            let colour = s.colour;
            chart
                .draw_series(s.points.iter().map(|&(x, _, lo, hi)| {
                    PathElement::new(vec![(x, lo.max(0.0)), (x, hi.min(1.0))], colour.stroke_width(2))
                }))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(s.points.iter().map(|&(x, y, ..)| (x, y)), colour.stroke_width(2)))
                .map_err(err)?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3)));
            chart
                .draw_series(s.points.iter().map(|&(x, y, ..)| Circle::new((x, y), 4, colour.filled())))
                .map_err(err)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

/// Labelled estimates with 95% intervals, one row per label, ranked (the gap-by-area figure).
#[derive(Debug, Clone)]
pub struct RankedIntervals {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// `(label, estimate, low, high)`, drawn top to bottom in this order.
    pub rows: Vec<(String, f64, f64, f64)>,
}

impl Figure for RankedIntervals {
    fn size(&self) -> (u32, u32) {
        (900, (120 + 28 * self.rows.len() as u32).clamp(260, 1600))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let n = self.rows.len().max(1);
        let (lo, hi) = self.rows.iter().fold((0.0f64, 0.0f64), |(a, b), r| (a.min(r.2).min(r.1), b.max(r.3).max(r.1)));
        let pad = ((hi - lo) * 0.05).max(1e-9);
        let labels: Vec<String> = self.rows.iter().map(|r| r.0.clone()).collect();
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22).into_font().style(FontStyle::Bold))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size((width * 8 + 20).clamp(60, 260))
            .build_cartesian_2d((lo - pad)..(hi + pad), 0.0..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .disable_y_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| row_label(&labels, *y))
            .x_desc(self.x_label.as_str())
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        chart.draw_series(LineSeries::new(vec![(0.0, 0.0), (0.0, n as f64)], BLACK.stroke_width(1))).map_err(err)?;
        let y_of = |k: usize| (n - 1 - k) as f64 + 0.5;
        chart
            .draw_series(
                self.rows
                    .iter()
                    .enumerate()
                    .map(|(k, r)| PathElement::new(vec![(r.2, y_of(k)), (r.3, y_of(k))], CONTROL.stroke_width(2))),
            )
            .map_err(err)?;
        chart
            .draw_series(self.rows.iter().enumerate().map(|(k, r)| Circle::new((r.1, y_of(k)), 5, CONTROL.filled())))
            .map_err(err)?;
        Ok(())
    }
}

/// One school's intake beside its family's: per variable, in SDs from the mean of all schools, the family's
/// members (grey dots), their mean ± SD (blue bar) and the school (red diamond).
#[derive(Debug, Clone)]
pub struct FamilyProfile {
    /// Title.
    pub title: String,
    /// The school's legend label.
    pub school_label: String,
    /// `(variable, school, members, family mean, family SD)`, all in SDs of all schools.
    pub rows: Vec<(String, f64, Vec<f64>, f64, f64)>,
}

impl Figure for FamilyProfile {
    fn size(&self) -> (u32, u32) {
        (900, 240 + 40 * self.rows.len().max(1) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let n = self.rows.len().max(1);
        let reach = self
            .rows
            .iter()
            .flat_map(|(_, s, m, mean, sd)| m.iter().copied().chain([*s, mean - sd, mean + sd]))
            .filter(|v| v.is_finite())
            .fold(1.0f64, |a, v| a.max(v.abs()))
            .min(10.0);
        let lim = (reach * 1.1 * 2.0).ceil() / 2.0;
        let labels: Vec<String> = self.rows.iter().map(|r| r.0.clone()).collect();
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(8).clamp(8, 40) as u32 * 8 + 20;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22).into_font().style(FontStyle::Bold))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(width)
            .build_cartesian_2d(-lim..lim, 0.0..n as f64 + 2.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .disable_y_mesh()
            .x_desc("SDs from the mean of all schools")
            .y_labels(2 * (n + 2) + 1)
            .y_label_formatter(&|y| row_label(&labels, *y))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        // The band above the rows holds the legend, so it never covers a point.
        chart.draw_series(LineSeries::new(vec![(0.0, 0.0), (0.0, n as f64)], GREY.stroke_width(1))).map_err(err)?;
        let clamp = |v: f64| v.clamp(-lim, lim);
        let y_of = |i: usize| (n - 1 - i) as f64 + 0.5;
        chart
            .draw_series(self.rows.iter().enumerate().flat_map(|(i, r)| {
                r.2.iter().map(move |&m| Circle::new((clamp(m), y_of(i) - 0.18), 3, GREY.mix(0.8).filled()))
            }))
            .map_err(err)?
            .label("Family members")
            .legend(|(x, y)| Circle::new((x, y), 3, GREY.filled()));
        chart
            .draw_series(self.rows.iter().enumerate().map(|(i, r)| {
                PathElement::new(
                    vec![(clamp(r.3 - r.4), y_of(i)), (clamp(r.3 + r.4), y_of(i))],
                    CONTROL.stroke_width(3),
                )
            }))
            .map_err(err)?
            .label("Family mean ± SD")
            .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], CONTROL.stroke_width(3)));
        chart
            .draw_series(
                self.rows.iter().enumerate().map(|(i, r)| Circle::new((clamp(r.3), y_of(i)), 5, CONTROL.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                self.rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| TriangleMarker::new((clamp(r.1), y_of(i) + 0.18), 7, TREATED.filled())),
            )
            .map_err(err)?
            .label(self.school_label.as_str())
            .legend(|(x, y)| TriangleMarker::new((x, y), 7, TREATED.filled()));
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// The label of the row whose band contains `y` at its centre (rows drawn top to bottom), else empty.
fn row_label(labels: &[String], y: f64) -> String {
    let k = y.floor();
    if (y - k - 0.5).abs() < 1e-6 && k >= 0.0 && (k as usize) < labels.len() {
        labels[labels.len() - 1 - k as usize].clone()
    } else {
        String::new()
    }
}
