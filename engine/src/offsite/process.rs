//! Running an upload client: a child process in a session of its own, fed from a reader, killed
//! (its whole session: every process group in it) when it outlives its timeout, when it exits
//! and when cairn is stopped by SIGTERM, SIGINT or SIGHUP; its output kept bounded and scrubbed
//! of secrets before anything of it is shown.

use std::io::{Read, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

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
        let last = last_words(&self.stderr);
        Some(if last.is_empty() {
            format!("{what} failed ({})", self.status)
        } else {
            format!("{what} failed ({}): {last}", self.status)
        })
    }
}

/// A client's last line that says something: not empty, not a stack frame (`at f (file:1:2)`),
/// which a client that reports an unexpected error with a trace prints last.
pub fn last_words(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("at "))
        .unwrap_or("")
}

/// Whether an environment variable's name says it holds a secret.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "SESSION"]
        .iter()
        .any(|w| n.contains(w))
}

/// The shortest line (or `name = value` value) of a multi-line secret that is redacted on its
/// own: shorter ones (`{`, `[default]`) say nothing and would blank ordinary words.
const MIN_SECRET_LINE: usize = 8;

/// The most of a `…_FILE` secret read: more than any credentials file holds.
const MAX_SECRET_FILE: u64 = 64 << 10;

/// The secrets this process knows: the values of secret-named environment variables, and the
/// contents of the files that secret-named `…_FILE` variables point to (at most 64 KiB each, as
/// text where it is not UTF-8);
/// of a value of several lines, also each line, and the value of each `name = value` or
/// `name: value` line, since a client may print only one of them.
fn secrets() -> Vec<String> {
    let mut out = secrets_in(std::env::vars_os());
    out.extend(
        EXTRA
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned(),
    );
    out
}

/// Secrets that are in no environment variable: a client's session tokens, read from its
/// session file (`proton-drive`'s), which it could print.
static EXTRA: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Redacts `values` too from now on, wherever [`redact`] is applied (short values, which would
/// blank out common words, are left out as for the environment's).
pub fn also_redact(values: Vec<String>) {
    let mut extra = EXTRA.lock().unwrap_or_else(|e| e.into_inner());
    for v in values {
        if v.len() >= 8 && !extra.contains(&v) {
            extra.push(v);
        }
    }
}

/// [`secrets`] of the environment `vars`.
fn secrets_in(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<String> {
    let mut values = Vec::new();
    for (k, v) in vars {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if !secret_name(k) {
            continue;
        }
        if let Some(base) = k.strip_suffix("_FILE")
            && secret_name(base)
        {
            // Bytes, not text: a file with one byte that is not UTF-8 (or a character cut at the
            // limit) would otherwise read as empty, and its every line would go unredacted.
            let mut bytes = Vec::new();
            if let Ok(f) = std::fs::File::open(v) {
                let _ = f.take(MAX_SECRET_FILE).read_to_end(&mut bytes);
            }
            values.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        values.push(v.to_string());
    }
    let mut out = Vec::new();
    for v in values {
        let whole = v.trim();
        if whole.len() >= 4 {
            out.push(whole.to_string());
        }
        if !whole.contains('\n') {
            continue;
        }
        for line in whole.lines().map(str::trim) {
            let value = line
                .split_once(['=', ':'])
                .map(|(_, v)| v.trim_matches(|c: char| c.is_whitespace() || "\"',;".contains(c)));
            for part in std::iter::once(line).chain(value) {
                if part.len() >= MIN_SECRET_LINE {
                    out.push(part.to_string());
                }
            }
        }
    }
    // Longest first, so that a secret containing another is replaced whole.
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out.dedup();
    out
}

/// The value of an ASCII hex digit.
fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The end of `secret` in `text` starting at `at`, if it is there: each of its bytes either as
/// itself or percent-encoded (`%2F` or `%2f`), a space also as `+` (form encoding). This
/// matches every encoder's choice of what to escape. A `%` of the secret may be itself or
/// `%25`, so both are tried (a secret holds few).
fn encoded_match(text: &[u8], at: usize, secret: &[u8]) -> Option<usize> {
    let Some((&b, rest)) = secret.split_first() else {
        return Some(at);
    };
    let t = text.get(at).copied()?;
    if (t == b || (t == b'+' && b == b' '))
        && let Some(end) = encoded_match(text, at + 1, rest)
    {
        return Some(end);
    }
    let hex = |i: usize| text.get(i).copied().and_then(hex_value);
    if t == b'%' && hex(at + 1) == Some(b >> 4) && hex(at + 2) == Some(b & 15) {
        return encoded_match(text, at + 3, rest);
    }
    None
}

/// `text` with every occurrence of `secret`, plain or URL-encoded, replaced by `[redacted]`.
fn redact_one(text: &str, secret: &str) -> String {
    let (t, s) = (text.as_bytes(), secret.as_bytes());
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        match encoded_match(t, i, s) {
            Some(end) => {
                out.extend_from_slice(b"[redacted]");
                i = end;
            }
            None => {
                out.push(t[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every secret of [`secrets`] replaced by `[redacted]`, as it is and in its
/// percent-encoded and form-encoded forms (a client that prints a URL or a request body): a
/// client that prints what it was given must not put it in a log, a status or a report.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for v in secrets() {
        out = redact_one(&out, &v);
    }
    out
}

/// Credentials of the store and the exports, which no upload client gets: an unofficial client
/// must not be able to touch the first copy; nor the Pushgateway's password, which it has no use
/// for.
const WITHHELD: [&str; 8] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID_FILE",
    "AWS_SECRET_ACCESS_KEY_FILE",
    "AWS_SESSION_TOKEN_FILE",
    "CAIRN_PUSHGATEWAY_PASSWORD",
    "CAIRN_PUSHGATEWAY_PASSWORD_FILE",
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

/// Kills every process of the session `sid`, which a client leads (see `run`): its own process
/// group at once, then each process the scan of `/proc` finds in the session, in other groups
/// too (a job-control shell gives each job one), until none is left. Its leader is not reaped
/// yet when this is called, so the id cannot name another session or group.
fn kill_session(sid: libc::pid_t) {
    let Some(leader) = process(sid) else {
        return;
    };
    // Signals only the group this module created for the client.
    let _ = rustix::process::kill_process_group(leader, Signal::KILL);
    // Helpers may still be forking while they are found: a few rounds catch their children.
    for _ in 0..10 {
        let mut found = false;
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for p in procs.flatten() {
            let Some(pid) = p
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid pgrp session …`; comm may hold anything but the last `)`.
            let mut fields = stat
                .rsplit_once(')')
                .map_or("", |(_, f)| f)
                .split_whitespace();
            let (state, session) = (fields.next(), fields.nth(2));
            if session == Some(sid.to_string().as_str()) && state != Some("Z") && pid != sid {
                found = true;
                // A process of the client's session (see above).
                if let Some(pid) = process(pid) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
        }
        if !found {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The sessions of the clients running now, by their leaders' pids. Held while a client is
/// started and registered, and while it is deregistered and reaped, so that the stopping thread
/// never signals an id that no longer names a client of ours.
static CLIENTS: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());
/// Set once cairn is being stopped by a signal: a client that ends now was killed for that, and
/// its caller must not record it as a failed upload.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// The write end of the pipe the signal handler wakes the stopping thread through.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // Kept on libc: the handler has only the pipe's raw descriptor, which rustix would need an
    // unsafe `BorrowedFd::borrow_raw` for as well, and it reads and restores errno by pointer.
    // The interrupted code may be about to read errno, which write(2) can change.
    // SAFETY: __errno_location is this thread's errno, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    let b = sig as u8;
    // SAFETY: write(2) is async-signal-safe; the buffer is one valid byte.
    unsafe {
        libc::write(fd, (&raw const b).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// Makes SIGTERM, SIGINT and SIGHUP kill every client's session before cairn dies of them (the
/// kernel's `PR_SET_PDEATHSIG` reaches only the client itself, not the helpers it started). The
/// handler only wakes a thread: the killing reads `/proc`, which a handler must not.
fn stop_clients_on_signals() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let Ok((read_end, write_end)) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        else {
            tracing::warn!("no pipe for signal handling: a stopped sync may leave client helpers");
            return;
        };
        // The write end stays open for the life of the process: the handler writes to it.
        SIGNAL_PIPE.store(write_end.into_raw_fd(), Ordering::Relaxed);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1];
            loop {
                match rustix::io::read(&read_end, &mut buf[..]) {
                    Ok(1) => break,
                    Err(Errno::INTR) => {}
                    _ => return,
                }
            }
            let b = buf[0];
            STOPPING.store(true, Ordering::SeqCst);
            // Kept locked until the process ends: no client is started or reaped meanwhile.
            let clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
            for &sid in clients.iter() {
                kill_session(sid);
            }
            let sig = libc::c_int::from(b);
            // SAFETY: back to the default action, then the signal again: cairn ends as it would
            // have without the handler, with the signal as its status. As PID 1 of a pid
            // namespace (a container's ENTRYPOINT without an init) the kernel drops a signal
            // whose action is the default, so the exit a shell would report follows. Kept on
            // libc: rustix has no safe signal(2) or _exit(2) (only its unstable `runtime`).
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::kill(libc::getpid(), sig);
                libc::_exit(128 + sig);
            }
        });
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            // SAFETY: a zeroed sigaction with a handler and an empty mask is valid; the handler
            // only calls write(2) and keeps errno. The old action is read first. Kept on libc:
            // rustix has no safe sigaction (only its unstable, unsafe `runtime` feature).
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                // Started under `nohup` (SIGHUP ignored), the caller asked cairn to outlive its
                // terminal: that stays so.
                if sig == libc::SIGHUP
                    && libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
                {
                    continue;
                }
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
}

/// Waits until the child `pid` has exited, without reaping it (the group id stays ours).
fn wait_exited(pid: libc::pid_t) {
    let Some(pid) = process(pid) else {
        return;
    };
    // Waits for our own child; WNOWAIT leaves it to be reaped by `Child::wait`.
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
    while matches!(
        rustix::process::waitid(WaitId::Pid(pid), options),
        Err(Errno::INTR)
    ) {}
}

/// `pid` as one process's id: a client's is never 0 or negative (for which `kill` would signal
/// a whole group, even ours).
fn process(pid: libc::pid_t) -> Option<Pid> {
    if pid > 0 { Pid::from_raw(pid) } else { None }
}

/// Runs `cmd` with `input` on its standard input (none: empty), in a session of its own that is
/// killed whole when it outlives `timeout`, once the client exits (helpers it left), and when
/// cairn is stopped by a signal. The client itself also dies with this process
/// (`PR_SET_PDEATHSIG`), and gets no store or exports credentials. `what` names it in errors.
/// Fails when the client cannot be started (a configuration error when the program is missing,
/// not executable or not a program), was killed, or left its output open past the deadline; a
/// non-zero exit is the caller's to judge.
pub fn run(
    cmd: &mut Command,
    input: Option<&mut dyn Read>,
    timeout: Duration,
    what: &str,
) -> Result<Finished> {
    prepare(cmd, input.is_some());
    let started = Instant::now();
    let mut child = spawn_registered(cmd, what)?;
    let pid = child.id() as libc::pid_t;
    let out = drain(child.stdout.take().expect("piped"), MAX_STDOUT, false);
    let err = drain(child.stderr.take().expect("piped"), MAX_STDERR, true);
    let stdin = child.stdin.take();
    let (done_tx, killed_rx) = watchdog(pid, timeout);
    let mut fed = Ok(());
    if let (Some(mut pipe), Some(input)) = (stdin, input) {
        fed = std::io::copy(input, &mut pipe).map(|_| ());
        let _ = pipe.flush();
        drop(pipe);
    }
    wait_exited(pid);
    let _ = done_tx.send(());
    let killed = killed_rx.recv().unwrap_or(false);
    let status = reap(pid, &mut child);
    if STOPPING.load(Ordering::SeqCst) {
        // Killed because cairn is being stopped, which the stopping thread finishes: this is
        // no failed upload to record.
        loop {
            std::thread::park();
        }
    }
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
                "{what} exited but a process it started outside its session kept its output open"
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

/// What every client is started with: none of cairn's own credentials, a session of its own
/// that dies with cairn, a umask that keeps what it writes private, and pipes for its input
/// (where there is one) and its output.
fn prepare(cmd: &mut Command, input: bool) {
    for k in WITHHELD {
        cmd.env_remove(k);
    }
    stop_clients_on_signals();
    // SAFETY: setsid and prctl are async-signal-safe. A session of its own makes the client the
    // leader of a group and a session that every helper it starts stays in (unless it calls
    // setsid itself); the death signal kills the client when the thread that spawned it ends.
    // Kept on libc: `pre_exec` is unsafe whatever the closure calls, and between fork and exec
    // only these plain async-signal-safe calls are wanted.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // What a client writes (a session, caches of keys) is its owner's alone.
            libc::umask(0o077);
            Ok(())
        });
    }
    cmd.stdin(if input { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

/// Starts the client and registers its session, under the lock the stopping thread takes, so
/// that a signal arriving meanwhile finds it. A program that is missing, not executable or not
/// a program is a configuration error.
fn spawn_registered(cmd: &mut Command, what: &str) -> Result<Child> {
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn().map_err(|e| {
        let config = matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
        ) || e.raw_os_error() == Some(libc::ENOEXEC);
        Error::new(
            if config {
                ErrorKind::Config
            } else {
                ErrorKind::Io
            },
            format!("{what}: cannot start {:?}: {e}", cmd.get_program()),
        )
    })?;
    clients.push(child.id() as libc::pid_t);
    drop(clients);
    Ok(child)
}

/// The watchdog of the client `pid`: it kills the session at the deadline. It is told the client
/// exited (the returned sender) only before the client is reaped, so the ids it signals are
/// still the client's; it answers whether it killed it.
fn watchdog(pid: libc::pid_t, timeout: Duration) -> (mpsc::Sender<()>, mpsc::Receiver<bool>) {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (killed_tx, killed_rx) = mpsc::channel::<bool>();
    std::thread::spawn(move || {
        let killed = matches!(
            done_rx.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if killed {
            kill_session(pid);
        }
        let _ = killed_tx.send(killed);
    });
    (done_tx, killed_rx)
}

/// After the client exited: the helpers it left in its session go with it, so they cannot hold
/// its output open or go on uploading; then it is deregistered and reaped, under the lock, so
/// the stopping thread never signals its ids once they may name another process.
fn reap(pid: libc::pid_t, child: &mut Child) -> std::io::Result<ExitStatus> {
    kill_session(pid);
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    clients.retain(|p| *p != pid);
    let status = child.wait();
    drop(clients);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that reports an unexpected error with a stack trace: the reason is the error's
    /// line, not the last frame.
    #[test]
    fn the_reason_is_the_error_line_not_a_stack_frame() {
        use std::os::unix::process::ExitStatusExt;
        let f = Finished {
            status: ExitStatus::from_raw(1 << 8),
            stdout: Vec::new(),
            stderr: "==========\nTrace: TypeError: fetch failed\n    at upload (src/upload.ts:10:3)\n    at processTicksAndRejections (native:7:39)\n".into(),
        };
        let why = f.failure("proton-drive filesystem upload").unwrap();
        assert!(why.ends_with("Trace: TypeError: fetch failed"), "{why}");
    }

    #[test]
    fn encoded_forms_of_a_secret_are_redacted() {
        let secret = "p@ss w/rd+key&m%re";
        for text in [
            "x=p@ss w/rd+key&m%re;",
            "x=p%40ss%20w%2Frd%2Bkey%26m%25re;",
            "x=p%40ss+w%2frd%2bkey%26m%25re;",
            "x=p@ss%20w/rd%2Bkey&m%re;",
        ] {
            assert_eq!(redact_one(text, secret), "x=[redacted];", "{text}");
        }
        assert_eq!(redact_one("p@ss w/rd", secret), "p@ss w/rd");
    }

    /// A `*_FILE` secret with a byte that is not UTF-8, or with a character cut by the old 4 KiB
    /// limit, is still redacted (it was read as empty before).
    #[test]
    fn a_secret_file_that_is_not_utf8_is_still_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad");
        std::fs::write(
            &bad,
            b"user: alice\npassword: Zq9-very-secret-1\nsalt: \xff\xfe\n".as_slice(),
        )
        .unwrap();
        // 4095 bytes, then a two-byte character across byte 4096, then the secret.
        let cut = dir.path().join("cut");
        let mut text = format!("comment: {}\n", "x".repeat(4095 - 10)).into_bytes();
        assert_eq!(text.len(), 4095);
        text.extend_from_slice("\u{e9}\npassword: Zq9-very-secret-2\n".as_bytes());
        std::fs::write(&cut, text).unwrap();
        let found = secrets_in([
            ("PROTON_TOKEN_FILE".into(), bad.into_os_string()),
            ("RCLONE_SESSION_FILE".into(), cut.into_os_string()),
        ]);
        for s in ["Zq9-very-secret-1", "Zq9-very-secret-2"] {
            assert!(
                found.iter().any(|f| f == s),
                "{s} is not redacted: {found:?}"
            );
        }
    }

    #[test]
    fn clients_get_no_credentials_of_cairn_s_own() {
        // Named here, not taken from WITHHELD: the test says what must be withheld.
        let own = [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECRET_ACCESS_KEY_FILE",
            "CAIRN_PUSHGATEWAY_PASSWORD",
            "CAIRN_PUSHGATEWAY_PASSWORD_FILE",
        ];
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "env"]);
        for k in own {
            cmd.env(k, "given");
        }
        cmd.env("RCLONE_CONFIG_PASS_NOT_WITHHELD", "kept");
        let done = run(&mut cmd, None, Duration::from_secs(10), "test client").unwrap();
        let env = String::from_utf8(done.stdout).unwrap();
        for k in own {
            assert!(!env.contains(&format!("{k}=")), "{k} reached the client");
        }
        assert!(env.contains("RCLONE_CONFIG_PASS_NOT_WITHHELD="), "{env}");
    }

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
