//! A TCP proxy on loopback that holds back every request by a fixed delay, to stand in for a
//! server further away than the test server: the first bytes a client sends after the server
//! last spoke (a new request on a kept-alive connection, or a new connection) wait `delay`
//! before they are forwarded; the rest of the request and every response pass at once.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

/// A running proxy; it lives until the test process ends.
pub struct DelayProxy {
    pub addr: SocketAddr,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                // Whether the server spoke since the client last did: the client's next bytes
                // start a new request.
                let turn = Arc::new(AtomicBool::new(true));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let t = turn.clone();
                std::thread::spawn(move || pump(client, server, t, Some(delay)));
                std::thread::spawn(move || pump(s2, c2, turn, None));
            }
        });
        DelayProxy { addr }
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Copies `from` to `to` until either side closes. From the client (`delay` set), the first
/// bytes of a new request wait `delay`; from the server, each read marks that the client's next
/// bytes start a new request.
fn pump(mut from: TcpStream, mut to: TcpStream, turn: Arc<AtomicBool>, delay: Option<Duration>) {
    let mut buf = vec![0u8; 256 << 10];
    while let Some(n) = from.read(&mut buf).ok().filter(|&n| n > 0) {
        match delay {
            Some(d) if turn.swap(false, SeqCst) => std::thread::sleep(d),
            Some(_) => {}
            None => turn.store(true, SeqCst),
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
