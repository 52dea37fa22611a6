//! Running an upload client: a child process in its own process group, fed from a reader, killed
//! (the whole group) when it outlives its timeout, its output kept bounded and scrubbed of
//! secrets before anything of it is shown.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The most of a client's standard output kept (listings are small).
const MAX_STDOUT: usize = 16 << 20;
/// The most of its standard error kept: the end, where the reason is.
const MAX_STDERR: usize = 8 << 10;

/// What a finished client left.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output (at most 16 MiB).
    pub stdout: Vec<u8>,
    /// The end of its standard error, secrets replaced.
    pub stderr: String,
}

impl Finished {
    /// The failure as one line, if it failed: exit status and the last line of its stderr.
    pub fn failure(&self, what: &str) -> Option<String> {
        if self.status.success() {
            return None;
        }
        let last = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        Some(if last.is_empty() {
            format!("{what} failed ({})", self.status)
        } else {
            format!("{what} failed ({}): {last}", self.status)
        })
    }
}

/// Whether an environment variable's name says it holds a secret.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "SESSION"]
        .iter()
        .any(|w| n.contains(w))
}

/// `text` with the value of every secret-named environment variable of this process (at least
/// four characters long) replaced by `[redacted]`: a client that prints what it was given must
/// not put it in a log, a status or a report.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if secret_name(k) && v.len() >= 4 && out.contains(v) {
            out = out.replace(v, "[redacted]");
        }
    }
    out
}

/// Runs `cmd` with `input` on its standard input (none: empty), killing its process group after
/// `timeout`. `what` names it in errors. Fails only when it cannot be started or was killed;
/// a non-zero exit is the caller's to judge.
pub fn run(
    cmd: &mut Command,
    input: Option<&mut dyn Read>,
    timeout: Duration,
    what: &str,
) -> Result<Finished> {
    cmd.process_group(0)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(
            if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::Config
            } else {
                ErrorKind::Io
            },
            format!("{what}: cannot start {:?}: {e}", cmd.get_program()),
        )
    })?;
    let pid = child.id() as libc::pid_t;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let stdin = child.stdin.take();
    std::thread::scope(|s| {
        // The watchdog: kills the whole group (a client's helpers too) at the deadline.
        let watchdog = s.spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
                // SAFETY: signals the process group this call created (its leader is the child,
                // which is not reaped before the watchdog is told it is done).
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
                return true;
            }
            false
        });
        let out = s.spawn(move || {
            let mut v = Vec::new();
            let _ = (&mut stdout).take(MAX_STDOUT as u64).read_to_end(&mut v);
            // Anything beyond the bound is drained, so the client never blocks on a full pipe.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            v
        });
        let err = s.spawn(move || {
            let mut tail: Vec<u8> = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * MAX_STDERR {
                    tail.drain(..tail.len() - MAX_STDERR);
                }
            }
            tail
        });
        let mut fed = Ok(());
        if let (Some(mut pipe), Some(input)) = (stdin, input) {
            fed = std::io::copy(input, &mut pipe).map(|_| ());
            let _ = pipe.flush();
            drop(pipe);
        }
        let status = child.wait();
        let _ = done_tx.send(());
        let killed = watchdog.join().unwrap_or(false);
        let stdout = out.join().unwrap_or_default();
        let tail = err.join().unwrap_or_default();
        let stderr = redact(&String::from_utf8_lossy(
            &tail[tail.len().saturating_sub(MAX_STDERR)..],
        ));
        if killed {
            return Err(Error::new(
                ErrorKind::Transient,
                format!(
                    "{what} did not finish within {} s and was killed",
                    timeout.as_secs()
                ),
            ));
        }
        let status = status.map_err(|e| Error::io(format!("{what}: waiting for it"), e))?;
        // A client that stopped reading its input early and failed says why in its status; one
        // that exited 0 without reading everything did not get the whole file.
        if let Err(e) = fed
            && status.success()
        {
            return Err(Error::io(format!("{what}: feeding it the file"), e));
        }
        Ok(Finished {
            status,
            stdout,
            stderr,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_client_is_killed_with_its_children_and_output_is_scrubbed() {
        let t = std::time::Instant::now();
        let err = run(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            None,
            Duration::from_millis(300),
            "test client",
        )
        .unwrap_err();
        assert!(err.to_string().contains("killed"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));

        // SAFETY (for the test): set before any thread reads the environment concurrently.
        unsafe { std::env::set_var("CAIRN_TEST_PROTON_PASSWORD", "hunter2-xyz") };
        let f = run(
            Command::new("sh").args([
                "-c",
                "echo \"login with $CAIRN_TEST_PROTON_PASSWORD\" >&2; exit 3",
            ]),
            None,
            Duration::from_secs(10),
            "test client",
        )
        .unwrap();
        let why = f.failure("upload").unwrap();
        assert!(!why.contains("hunter2"), "{why}");
        assert!(why.contains("[redacted]"), "{why}");

        let mut input: &[u8] = b"abc";
        let f = run(
            Command::new("sh").args(["-c", "wc -c"]),
            Some(&mut input),
            Duration::from_secs(10),
            "test client",
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&f.stdout).trim(), "3");
    }
}
