//! Printing: JSON for scripts, aligned text for people, and a progress line on a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use cairn_engine::backup::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// Prints one JSON document on stdout.
pub fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialize")
    );
}

/// Human-readable byte count: `1023 B`, `1.5 KiB`, `1024.0 TiB` (one decimal, at most TiB).
/// Not `indicatif::HumanBytes`, which prints two decimals (`1.46 KiB`) and goes on to PiB: the
/// summaries people and their scripts read keep their form.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress line that follows the backup counters; hidden when stderr is not a terminal.
pub struct BackupBar {
    bar: Option<ProgressBar>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackupBar {
    pub fn start(progress: Arc<Progress>, quiet: bool) -> BackupBar {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if quiet || !std::io::stderr().is_terminal() {
            return BackupBar {
                bar: None,
                stop,
                thread: None,
            };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let (b, s) = (bar.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Relaxed) {
                b.set_message(format!(
                    "{} files, {} scanned, {} read, {} new",
                    progress.files.load(Relaxed),
                    bytes(progress.bytes.load(Relaxed)),
                    bytes(progress.bytes_read.load(Relaxed)),
                    bytes(progress.new_bytes.load(Relaxed)),
                ));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        BackupBar {
            bar: Some(bar),
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_counts_keep_their_form() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1023), "1023 B");
        assert_eq!(super::bytes(1024), "1.0 KiB");
        assert_eq!(super::bytes(1500), "1.5 KiB");
        assert_eq!(super::bytes(1_500_000), "1.4 MiB");
        assert_eq!(super::bytes(1_500_000_000), "1.4 GiB");
        assert_eq!(super::bytes(1 << 50), "1024.0 TiB");
    }
}
