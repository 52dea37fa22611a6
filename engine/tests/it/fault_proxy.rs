//! A TCP proxy on loopback in front of the S3 test server that refuses chosen requests: each
//! request's head is read and classified as a step of a multipart upload (create, part, copy
//! part, complete, abort) or anything else, and the next `n` requests of a step get a `503 Slow
//! Down` with the connection closed, as a server that is restarting answers; the rest pass.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

/// A request, as far as a multipart upload is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Create,
    Part,
    CopyPart,
    Complete,
    Abort,
    Other,
}

impl Step {
    /// The step of the request whose head is `head`.
    fn of(head: &str) -> Step {
        let line = head.lines().next().unwrap_or("");
        let lower = head.to_ascii_lowercase();
        let (method, target) = line.split_once(' ').unwrap_or((line, ""));
        let has = |q: &str| target.contains(q);
        match method {
            "PUT" if has("partNumber=") && lower.contains("\r\nx-amz-copy-source:") => {
                Step::CopyPart
            }
            "PUT" if has("partNumber=") => Step::Part,
            "POST" if has("uploadId=") => Step::Complete,
            "POST" if has("uploads") => Step::Create,
            "DELETE" if has("uploadId=") => Step::Abort,
            _ => Step::Other,
        }
    }
}

#[derive(Default)]
struct Rules {
    /// Requests still to refuse, by step.
    refuse: Vec<(Step, u64)>,
    /// Requests refused so far, by step.
    refused: Vec<(Step, u64)>,
}

/// A running proxy; it lives until the test process ends.
pub struct FaultProxy {
    pub addr: SocketAddr,
    rules: Arc<Mutex<Rules>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rules: Arc<Mutex<Rules>> = Default::default();
        let r = rules.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let turn = Arc::new(AtomicBool::new(true));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (t, r) = (turn.clone(), r.clone());
                std::thread::spawn(move || requests(client, server, t, r));
                std::thread::spawn(move || responses(s2, c2, turn));
            }
        });
        FaultProxy { addr, rules }
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Refuses the next `n` requests of `step`.
    pub fn refuse(&self, step: Step, n: u64) {
        let mut r = self.rules.lock().unwrap();
        r.refuse.retain(|(s, _)| *s != step);
        r.refuse.push((step, n));
    }

    /// How many requests of `step` were refused so far.
    pub fn refused(&self, step: Step) -> u64 {
        let r = self.rules.lock().unwrap();
        r.refused
            .iter()
            .filter(|(s, _)| *s == step)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Whether a request of `step` is to be refused now (and counts it).
fn take(rules: &Mutex<Rules>, step: Step) -> bool {
    let mut r = rules.lock().unwrap();
    let Some(left) = r.refuse.iter_mut().find(|(s, _)| *s == step) else {
        return false;
    };
    if left.1 == 0 {
        return false;
    }
    left.1 -= 1;
    match r.refused.iter_mut().find(|(s, _)| *s == step) {
        Some(n) => n.1 += 1,
        None => r.refused.push((step, 1)),
    }
    true
}

/// Client to server: the first bytes after the server last spoke start a request, whose head is
/// gathered and judged before anything of it is forwarded.
fn requests(
    mut from: TcpStream,
    mut to: TcpStream,
    turn: Arc<AtomicBool>,
    rules: Arc<Mutex<Rules>>,
) {
    let mut buf = vec![0u8; 256 << 10];
    let mut head: Vec<u8> = Vec::new();
    let mut gathering = false;
    while let Some(n) = from.read(&mut buf).ok().filter(|&n| n > 0) {
        let mut chunk = &buf[..n];
        if turn.swap(false, SeqCst) && is_request_start(chunk) {
            gathering = true;
            head.clear();
        }
        if gathering {
            head.extend_from_slice(chunk);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if head.len() > 64 << 10 {
                    break;
                }
                continue;
            };
            gathering = false;
            let step = Step::of(&String::from_utf8_lossy(&head[..end]));
            if take(&rules, step) {
                let _ = from.write_all(
                    b"HTTP/1.1 503 Slow Down\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                break;
            }
            if to.write_all(&head).is_err() {
                break;
            }
            chunk = &[];
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn is_request_start(b: &[u8]) -> bool {
    [&b"GET "[..], b"PUT ", b"POST ", b"HEAD ", b"DELETE "]
        .iter()
        .any(|m| b.starts_with(m))
}

/// Server to client, as is; each read marks that the client's next bytes start a request.
fn responses(mut from: TcpStream, mut to: TcpStream, turn: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 256 << 10];
    while let Some(n) = from.read(&mut buf).ok().filter(|&n| n > 0) {
        turn.store(true, SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
