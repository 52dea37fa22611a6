//! Running an upload client: a child process in its own process group, fed from a reader, killed
//! (the whole group) when it outlives its timeout, its output kept bounded and scrubbed of
//! secrets before anything of it is shown.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// The secrets this process knows: the values of secret-named environment variables, and the
/// contents of the files that secret-named `…_FILE` variables point to (at most 4 KiB each).
fn secrets() -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if !secret_name(k) {
            continue;
        }
        if let Some(base) = k.strip_suffix("_FILE")
            && secret_name(base)
        {
            let mut text = String::new();
            if let Ok(f) = std::fs::File::open(v) {
                let _ = f.take(4096).read_to_string(&mut text);
            }
            out.push(text.trim().to_string());
        }
        out.push(v.to_string());
    }
    out.retain(|v| v.len() >= 4);
    // Longest first, so that a secret containing another is replaced whole.
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}

/// `text` with every secret of [`secrets`] (values of at least four characters) replaced by
/// `[redacted]`: a client that prints what it was given must not put it in a log, a status or a
/// report.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for v in secrets() {
        if out.contains(&v) {
            out = out.replace(&v, "[redacted]");
        }
    }
    out
}

/// Credentials of the store and the exports, which no upload client gets: an unofficial client
/// must not be able to touch the first copy.
const WITHHELD: [&str; 6] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID_FILE",
    "AWS_SECRET_ACCESS_KEY_FILE",
    "AWS_SESSION_TOKEN_FILE",
];

/// Reads a pipe to its end on a thread of its own, keeping at most `keep` bytes (the first ones,
/// or with `tail` the last ones); the result arrives on the returned channel.
fn drain(mut pipe: impl Read + Send + 'static, keep: usize, tail: bool) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if tail {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * keep {
                    kept.drain(..kept.len() - keep);
                }
            } else if kept.len() < keep {
                let room = keep - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        if tail && kept.len() > keep {
            kept.drain(..kept.len() - keep);
        }
        let _ = tx.send(kept);
    });
    rx
}

/// Kills the process group `pid` leads.
fn kill_group(pid: libc::pid_t) {
    // SAFETY: signals only the group this module created for the client, whose leader is not
    // reaped yet when this is called (see `run`), so the id cannot name another group.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// Waits until the child `pid` has exited, without reaping it (the group id stays ours).
fn wait_exited(pid: libc::pid_t) {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; WNOWAIT leaves it to be reaped by `Child::wait`.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Runs `cmd` with `input` on its standard input (none: empty), in a process group of its own
/// that is killed when it outlives `timeout`, and whatever of it is left once the client exits
/// (helpers it started). The client dies with this process (`PR_SET_PDEATHSIG`), and gets no
/// store or exports credentials. `what` names it in errors. Fails when the client cannot be
/// started, was killed, or left its output open past the deadline; a non-zero exit is the
/// caller's to judge.
pub fn run(
    cmd: &mut Command,
    input: Option<&mut dyn Read>,
    timeout: Duration,
    what: &str,
) -> Result<Finished> {
    for k in WITHHELD {
        cmd.env_remove(k);
    }
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child when the
    // thread that spawned it ends.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.process_group(0)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
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
    let out = drain(child.stdout.take().expect("piped"), MAX_STDOUT, false);
    let err = drain(child.stderr.take().expect("piped"), MAX_STDERR, true);
    let stdin = child.stdin.take();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (killed_tx, killed_rx) = mpsc::channel::<bool>();
    // The watchdog kills the group at the deadline; it is told the client exited only before
    // the client is reaped, so the group id it signals is still the client's.
    std::thread::spawn(move || {
        let killed = matches!(
            done_rx.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if killed {
            kill_group(pid);
        }
        let _ = killed_tx.send(killed);
    });
    let mut fed = Ok(());
    if let (Some(mut pipe), Some(input)) = (stdin, input) {
        fed = std::io::copy(input, &mut pipe).map(|_| ());
        let _ = pipe.flush();
        drop(pipe);
    }
    wait_exited(pid);
    let _ = done_tx.send(());
    let killed = killed_rx.recv().unwrap_or(false);
    // Helpers the client left in its group go with it, so they cannot hold its output open.
    kill_group(pid);
    let status = child.wait();
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(5));
    let stdout = out.recv_timeout(left);
    let tail = err.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
    let stderr = redact(&String::from_utf8_lossy(&tail));
    if killed {
        return Err(Error::new(
            ErrorKind::Transient,
            format!(
                "{what} did not finish within {} s and was killed",
                timeout.as_secs()
            ),
        ));
    }
    let Ok(stdout) = stdout else {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{what} exited but a process it started outside its group kept its output open"
            ),
        ));
    };
    let status = status.map_err(|e| Error::io(format!("{what}: waiting for it"), e))?;
    // A client that exited 0 without reading everything did not get the whole file.
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

        // A helper left running in the client's group does not keep the call waiting.
        let t = std::time::Instant::now();
        let f = run(
            Command::new("sh").args(["-c", "sleep 30 & echo done"]),
            None,
            Duration::from_secs(20),
            "test client",
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&f.stdout).trim(), "done");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

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
