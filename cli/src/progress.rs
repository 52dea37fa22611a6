//! Progress of a long operation, watched from a thread of its own: one line on a terminal
//! (redrawn in place, cleared at the end), or, where nobody watches a terminal (a pod, `-q`,
//! `--json`), a structured log line every `log.progress_interval_s` seconds, so that
//! `kubectl logs` of a long first night says how far it got. The figures come from the engine's
//! meter ([`cairn_engine::progress`]); an operation that never begins a stage shows nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cairn_engine::progress::{Reading, meter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::bytes;

/// How the figures are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// A line on the terminal.
    Line,
    /// A log line every so often (never when the interval is zero).
    Log(Duration),
}

/// The line being drawn, if any: log lines are written with it hidden for a moment
/// ([`LogWriter`]), so that a warning during a long operation does not break it.
static BAR: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// stderr for the logs: with the progress line hidden while a log line is written.
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(b) => b.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The watcher of this process's command, from [`watch`] to [`settle`].
static WATCH: std::sync::Mutex<Option<Watch>> = std::sync::Mutex::new(None);

/// Starts watching the meter for the command about to run.
pub fn watch(show: Show) {
    *WATCH.lock().expect("poisoned") = Some(Watch::start(show));
}

/// Ends the watch, if any: a command calls it before it prints its result, so that the line is
/// drawn for the last time and cleared before the result, not after or across it.
pub fn settle() {
    let w = WATCH.lock().expect("poisoned").take();
    if let Some(w) = w {
        w.finish();
    }
}

/// Watches the meter until [`Watch::finish`]; held by [`WATCH`] from [`watch`] to [`settle`].
struct Watch {
    show: Show,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<ProgressBar>>>,
}

impl Watch {
    fn start(show: Show) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = match show {
            Show::Log(every) if every.is_zero() => None,
            Show::Log(every) => Some(std::thread::spawn(move || {
                log_every(&s, every);
                None
            })),
            Show::Line => Some(std::thread::spawn(move || draw(&s))),
        };
        Watch { show, stop, thread }
    }

    /// Stops watching; a line on the terminal shows the final figures once (also for an
    /// operation too short for the first redraw), then is cleared.
    fn finish(mut self) {
        self.stop.store(true, Relaxed);
        let bar = self.thread.take().and_then(|t| t.join().ok()).flatten();
        let r = meter().read();
        if self.show != Show::Line || r.stage.is_empty() {
            return;
        }
        let bar = bar.unwrap_or_else(new_bar);
        bar.finish_with_message(line(&r));
        bar.finish_and_clear();
        *BAR.lock().expect("poisoned") = None;
    }
}

/// Redraws the line every 200 ms; returns the bar, if a stage began, for the final draw.
fn draw(stop: &AtomicBool) -> Option<ProgressBar> {
    let mut bar: Option<ProgressBar> = None;
    while !stop.load(Relaxed) {
        let r = meter().read();
        if !r.stage.is_empty() {
            bar.get_or_insert_with(new_bar).set_message(line(&r));
        }
        sleep_unless(stop, Duration::from_millis(200));
    }
    bar
}

/// A spinner and the line, on stderr.
fn new_bar() -> ProgressBar {
    let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    b.set_style(ProgressStyle::with_template("{spinner} {wide_msg}").expect("valid template"));
    b.enable_steady_tick(Duration::from_millis(120));
    *BAR.lock().expect("poisoned") = Some(b.clone());
    b
}

/// Logs the figures every `every` while a stage is under way.
fn log_every(stop: &AtomicBool, every: Duration) {
    loop {
        sleep_unless(stop, every);
        if stop.load(Relaxed) {
            return;
        }
        let r = meter().read();
        if r.stage.is_empty() {
            continue;
        }
        let counts: serde_json::Map<String, serde_json::Value> = r
            .counts
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        tracing::info!(
            target: "cairn::progress",
            stage = %r.stage,
            unit = r.unit,
            items = r.items,
            items_total = r.items_total,
            bytes = r.bytes,
            bytes_total = r.bytes_total,
            bytes_per_s = rate(&r),
            eta_s = eta(&r).map(|d| d.as_secs()),
            elapsed_s = r.elapsed.as_secs(),
            counts = %serde_json::Value::Object(counts),
            "progress"
        );
    }
}

/// Sleeps `d`, waking early when asked to stop.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Bytes per second since the stage began.
fn rate(r: &Reading) -> u64 {
    let s = r.elapsed.as_secs_f64();
    if s < 0.05 {
        0
    } else {
        (r.bytes as f64 / s) as u64
    }
}

/// Time left at the rate so far, when the total is known and something is done.
fn eta(r: &Reading) -> Option<Duration> {
    let total = r.bytes_total?;
    let rate = rate(r);
    (rate > 0).then(|| Duration::from_secs(total.saturating_sub(r.bytes) / rate))
}

/// The line people read: `restore: 1204/33670 files, 412.0 MiB/2.6 GiB (15%), 55.2 MiB/s,
/// ETA 0:00:41`, then the stage's own counts. Figures past an estimated total show the total.
pub fn line(r: &Reading) -> String {
    let mut out = format!("{}: ", r.stage);
    match r.items_total {
        Some(t) => out.push_str(&format!("{}/{} {}", r.items.min(t), t, r.unit)),
        None => out.push_str(&format!("{} {}", r.items, r.unit)),
    }
    match r.bytes_total {
        Some(t) if t > 0 => {
            let done = r.bytes.min(t);
            out.push_str(&format!(
                ", {}/{} ({}%)",
                bytes(done),
                bytes(t),
                done * 100 / t
            ))
        }
        _ if r.bytes > 0 => out.push_str(&format!(", {}", bytes(r.bytes))),
        _ => {}
    }
    let rate = rate(r);
    if rate > 0 {
        out.push_str(&format!(", {}/s", bytes(rate)));
    }
    if let Some(left) = eta(r) {
        let s = left.as_secs();
        out.push_str(&format!(
            ", ETA {}:{:02}:{:02}",
            s / 3600,
            s / 60 % 60,
            s % 60
        ));
    }
    for (name, n) in &r.counts {
        out.push_str(&format!(", {name} {n}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        Reading {
            stage: "restore".into(),
            unit: "files",
            items: 12,
            items_total: Some(40),
            bytes: 10 << 20,
            bytes_total: Some(40 << 20),
            counts: vec![("damaged", 1)],
            elapsed: Duration::from_secs(2),
        }
    }

    #[test]
    fn a_line_has_totals_rate_eta_and_counts() {
        assert_eq!(
            line(&reading()),
            "restore: 12/40 files, 10.0 MiB/40.0 MiB (25%), 5.0 MiB/s, ETA 0:00:06, damaged 1"
        );
    }

    #[test]
    fn figures_past_an_estimate_show_the_total_and_unknown_totals_show_what_is_done() {
        let mut r = reading();
        r.bytes = 50 << 20;
        assert!(
            line(&r).contains("40.0 MiB/40.0 MiB (100%)"),
            "{}",
            line(&r)
        );
        r.bytes_total = None;
        r.items_total = None;
        r.counts.clear();
        assert_eq!(line(&r), "restore: 12 files, 50.0 MiB, 25.0 MiB/s");
    }
}
