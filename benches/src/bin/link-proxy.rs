//! A TCP proxy on loopback that makes a link like the production one: each direction capped at
//! a rate shared by all connections (a Raspberry Pi's 1 GbE is about 117 MB/s each way) and
//! delayed by a one-way latency, so that `benches/compare.py --s3 --link` measures the night
//! where every byte moved and every dependent round trip counts, not on loopback's free bytes.
//!
//! `link-proxy LISTEN UPSTREAM RATE_MB_S LATENCY_MS` (e.g. `127.0.0.1:3950 127.0.0.1:3900 117 2`)
//! prints `ready` once listening and serves until killed. Each connection gets two threads per
//! direction: a reader that stamps each piece it reads, and a writer that sends it no earlier
//! than its stamp plus the latency and no faster than the direction's token bucket allows.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token bucket shared by every connection of one direction.
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// Capacity: 4 ms of the rate, so a burst stays short.
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            state: Mutex::new((rate * 0.004, Instant::now())),
        }
    }

    /// Waits until `n` bytes may pass.
    fn take(&self, n: usize) {
        let need = n as f64;
        loop {
            let wait = {
                let mut s = self.state.lock().expect("bucket");
                let now = Instant::now();
                let cap = (self.rate * 0.004).max(need);
                s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(cap);
                s.1 = now;
                if s.0 >= need {
                    s.0 -= need;
                    return;
                }
                (need - s.0) / self.rate
            };
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }
}

/// Copies `from` to `to` through the latency and the bucket, then shuts `to`'s write side.
fn pipe(mut from: TcpStream, mut to: TcpStream, bucket: Arc<Bucket>, latency: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    for (at, piece) in rx {
        let due = at + latency;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // Paced in 16 KiB steps, so the rate holds within a piece too.
        for part in piece.chunks(16 << 10) {
            bucket.take(part.len());
            if to.write_all(part).is_err() {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = reader.join();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: link-proxy LISTEN UPSTREAM RATE_MB_S LATENCY_MS");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(&args[1]).expect("binding the listen address");
    let upstream = args[2].clone();
    let rate: f64 = args[3].parse::<f64>().expect("a rate in MB/s") * 1e6;
    let latency = Duration::from_secs_f64(args[4].parse::<f64>().expect("a latency in ms") / 1e3);
    let (up, down) = (Arc::new(Bucket::new(rate)), Arc::new(Bucket::new(rate)));
    println!("ready");
    for client in listener.incoming().flatten() {
        let Ok(server) = TcpStream::connect(&upstream) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (c2, s2) = (
            client.try_clone().expect("clone"),
            server.try_clone().expect("clone"),
        );
        let (up, down) = (up.clone(), down.clone());
        std::thread::spawn(move || pipe(client, server, up, latency));
        std::thread::spawn(move || pipe(s2, c2, down, latency));
    }
}
