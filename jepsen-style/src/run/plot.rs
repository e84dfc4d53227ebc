//! The run's pictures (SVG): the latency of every operation over time, and throughput per second, with
//! the fault windows and the scenario's steps shaded (each step named at its start).

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::elastic::StepWindow;
use super::nemesis::{FaultKind, FaultWindow};
use super::RunError;
use crate::{Function, History, Outcome};

pub const LATENCY: &str = "latency.svg";
pub const THROUGHPUT: &str = "throughput.svg";

const SIZE: (u32, u32) = (1400, 520);
const FONT: (&str, u32) = ("sans-serif", 20);
const STEP: RGBColor = RGBColor(30, 150, 90);

/// One completed operation, in seconds and milliseconds; one without completion (its process crashed, or
/// the history ended) is drawn at the end of the history.
struct Point {
    at_s: f64,
    latency_ms: f64,
    series: Series,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Series {
    SendOk,
    SendInfo,
    SendFail,
    Poll,
}

impl Series {
    const ALL: [Series; 4] = [Series::Poll, Series::SendOk, Series::SendInfo, Series::SendFail];

    fn label(self) -> &'static str {
        match self {
            Series::SendOk => "send ok",
            Series::SendInfo => "send info (indeterminate)",
            Series::SendFail => "send fail",
            Series::Poll => "poll",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Series::SendOk => RGBColor(30, 110, 200),
            Series::SendInfo => RGBColor(240, 150, 0),
            Series::SendFail => RGBColor(200, 30, 30),
            Series::Poll => RGBColor(150, 150, 150),
        }
    }
}

fn shade(kind: FaultKind) -> RGBColor {
    match kind {
        FaultKind::Kill => RGBColor(230, 80, 80),
        FaultKind::Pause => RGBColor(240, 190, 40),
        FaultKind::Partition => RGBColor(120, 90, 200),
        FaultKind::Power => RGBColor(40, 40, 40),
    }
}

fn points(history: &History) -> Vec<Point> {
    let end = history.events().last().map_or(0, |e| e.time);
    let ms = |ns: u64| ns as f64 / 1e6;
    history
        .operations()
        .into_iter()
        .filter_map(|op| {
            let series = match (op.op.function(), op.outcome) {
                (Function::Send, Outcome::Ok) => Series::SendOk,
                (Function::Send, Outcome::Fail) => Series::SendFail,
                (Function::Send, _) => Series::SendInfo,
                (Function::Poll, _) => Series::Poll,
                _ => return None,
            };
            let done = op.complete_time.unwrap_or(end);
            Some(Point { at_s: done as f64 / 1e9, latency_ms: ms(done - op.invoke_time).max(0.1), series })
        })
        .collect()
}

/// Draws both pictures into `dir`.
pub fn draw(dir: &Path, history: &History, windows: &[FaultWindow], steps: &[StepWindow]) -> Result<(), RunError> {
    let points = points(history);
    let backdrop = Backdrop { windows, steps, end_s: points.iter().map(|p| p.at_s).fold(1.0, f64::max) };
    let failed = |e: String| RunError::Harness(format!("cannot draw: {e}"));
    let path = dir.join(LATENCY);
    latency(SVGBackend::new(&path, SIZE).into_drawing_area(), &points, &backdrop).map_err(failed)?;
    let path = dir.join(THROUGHPUT);
    throughput(SVGBackend::new(&path, SIZE).into_drawing_area(), &points, &backdrop).map_err(failed)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// What both pictures show behind their operations: the run's seconds, its fault windows and its steps.
struct Backdrop<'s> {
    windows: &'s [FaultWindow],
    steps: &'s [StepWindow],
    end_s: f64,
}

impl Backdrop<'_> {
    /// A chart filling `root` over the run's seconds and `y`, its mesh drawn and the windows shaded
    /// (each step named at height `label_at`).
    fn chart<'a, 'b, Y: AsRangedCoord<Value = f64>>(
        &self,
        root: &'a Area<'b>,
        caption: &str,
        y_desc: &str,
        y: Y,
        label_at: f64,
    ) -> Result<Chart<'a, 'b, Y::CoordDescType>, String>
    where
        Y::CoordDescType: ValueFormatter<f64>,
    {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(root)
            .caption(caption, FONT)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..self.end_s, y)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("seconds").y_desc(y_desc).draw().map_err(|e| e.to_string())?;
        let (low, high) = (chart.y_range().start, chart.y_range().end);
        shade_faults(&mut chart, self.windows, low, high)?;
        shade_steps(&mut chart, self.steps, low, high, label_at)?;
        Ok(chart)
    }
}

fn latency(root: Area<'_>, points: &[Point], backdrop: &Backdrop<'_>) -> Result<(), String> {
    let max_ms = points.iter().map(|p| p.latency_ms).fold(10.0, f64::max) * 1.5;
    let caption = "Latency of every operation (by completion time)";
    let mut chart = backdrop.chart(&root, caption, "latency (ms)", (0.1..max_ms).log_scale(), max_ms / 1.6)?;
    for series in Series::ALL {
        let color = series.color();
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.series == series)
                    .map(|p| Circle::new((p.at_s, p.latency_ms), 1, color.filled())),
            )
            .map_err(|e| e.to_string())?
            .label(series.label())
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    }
    legend(&mut chart)?;
    root.present().map_err(|e| e.to_string())
}

fn throughput(root: Area<'_>, points: &[Point], backdrop: &Backdrop<'_>) -> Result<(), String> {
    let seconds = backdrop.end_s.ceil() as usize + 1;
    let per_second = |series: Series| {
        let mut counts = vec![0u32; seconds];
        for p in points.iter().filter(|p| p.series == series) {
            counts[p.at_s as usize] += 1;
        }
        counts
    };
    let all: Vec<(Series, Vec<u32>)> = Series::ALL.iter().map(|&s| (s, per_second(s))).collect();
    let max = all.iter().flat_map(|(_, c)| c.iter().copied()).max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut chart = backdrop.chart(&root, "Completed operations per second", "operations / s", 0.0..max, max * 0.97)?;
    for (series, counts) in all {
        let color = series.color();
        let line = counts.iter().enumerate().map(|(s, &n)| (s as f64 + 0.5, f64::from(n)));
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(series.label())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    legend(&mut chart)?;
    root.present().map_err(|e| e.to_string())
}

fn shade_faults<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    windows: &[FaultWindow],
    low: f64,
    high: f64,
) -> Result<(), String> {
    for kind in [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::Power] {
        let color = shade(kind);
        let mine: Vec<&FaultWindow> = windows.iter().filter(|w| w.kind == kind).collect();
        if mine.is_empty() {
            continue;
        }
        let secs = |ns: u64| ns as f64 / 1e9;
        chart
            .draw_series(
                mine.iter().map(|w| {
                    Rectangle::new([(secs(w.start_ns), low), (secs(w.end_ns), high)], color.mix(0.18).filled())
                }),
            )
            .map_err(|e| e.to_string())?
            .label(format!("{kind:?}").to_lowercase())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], color.mix(0.4).filled()));
    }
    Ok(())
}

/// Each step's window shaded, a line at its start, and its name by the line at height `label_at`.
fn shade_steps<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    steps: &[StepWindow],
    low: f64,
    high: f64,
    label_at: f64,
) -> Result<(), String> {
    if steps.is_empty() {
        return Ok(());
    }
    let secs = |ns: u64| ns as f64 / 1e9;
    chart
        .draw_series(
            steps
                .iter()
                .map(|s| Rectangle::new([(secs(s.start_ns), low), (secs(s.end_ns), high)], STEP.mix(0.18).filled())),
        )
        .map_err(|e| e.to_string())?
        .label("scenario step")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], STEP.mix(0.4).filled()));
    chart
        .draw_series(steps.iter().map(|s| PathElement::new([(secs(s.start_ns), low), (secs(s.start_ns), high)], STEP)))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(steps.iter().map(|s| Text::new(s.step.clone(), (secs(s.start_ns), label_at), FONT)))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn legend<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(chart: &mut Chart<'a, 'b, Y>) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(FONT)
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HistoryBuilder, Op, Process, Send, TopicPartition};

    #[test]
    fn pictures_show_operations_and_shade_fault_windows() {
        let mut history = HistoryBuilder::new();
        let send = |value: &str| {
            Op::Send(Send { tp: TopicPartition::new("t", 0), key: None, value: value.into(), offset: None })
        };
        let ok = history.invoke(Process(1), 1_000_000_000, send("a")).expect("invoke");
        history.ok_send(ok, 1_005_000_000, 0).expect("ok");
        let info = history.invoke(Process(1), 2_000_000_000, send("b")).expect("invoke");
        history.info(info, 7_000_000_000).expect("info");
        let window = FaultWindow {
            fault: "kill 1".into(),
            kind: FaultKind::Kill,
            start_ns: 2_000_000_000,
            end_ns: 6_000_000_000,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let step = StepWindow {
            step: "rebalance".into(),
            start_ns: 6_500_000_000,
            end_ns: 6_800_000_000,
            unfinished: None,
            moves: Vec::new(),
            longest_write_gap: None,
        };
        draw(dir.path(), &history.finish(), &[window], &[step]).expect("drawn");
        let latency = std::fs::read_to_string(dir.path().join(LATENCY)).expect("latency.svg");
        let throughput = std::fs::read_to_string(dir.path().join(THROUGHPUT)).expect("throughput.svg");
        assert_eq!(latency.matches("<circle").count(), 2 + 4, "two operations and four legend marks");
        for svg in [&latency, &throughput] {
            assert!(svg.contains("fill=\"#E65050\""), "the kill window is shaded");
            assert!(svg.contains("fill=\"#1E965A\"") && svg.contains("rebalance"), "the step is shaded and named");
        }
    }
}
