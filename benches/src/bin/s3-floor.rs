//! The read-back floor of an export on S3, measured with a reader as fast as cairn's own: the
//! `.sha256` covers every byte of the archive, so an export must read each byte from the server
//! once, and this reads an object by parallel ranged GETs (the engine's planned reads: 8 MiB
//! requests, 8 in flight) into SHA-256, in order. The aws CLI, which the benchmark used for the
//! floor before, reads far slower than the server serves.
//!
//! `s3-floor ENDPOINT BUCKET KEY` with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! optionally `AWS_REGION` (default `garage`) set; prints one JSON line: bytes, SHA-256, seconds,
//! requests and bytes read.

use std::time::{Duration, Instant};

use cairn_engine::store::fetch::{FetchOptions, Want, fetch_in_order};
use cairn_engine::store::{RetryPolicy, S3Config, S3Store, Store};
use sha2::{Digest, Sha256};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: s3-floor ENDPOINT BUCKET KEY");
        std::process::exit(2);
    }
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let store = S3Store::new(&S3Config {
        endpoint: Some(args[1].clone()),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "garage".into()),
        bucket: args[2].clone(),
        prefix: String::new(),
        path_style: true,
        access_key: env("AWS_ACCESS_KEY_ID"),
        secret_key: env("AWS_SECRET_ACCESS_KEY"),
        session_token: None,
        retry: RetryPolicy::attempts(5, Duration::from_millis(50), Duration::from_secs(2)),
        server_name: "the S3 server".into(),
    })
    .expect("opening the S3 store");
    let key = &args[3];
    let t = Instant::now();
    let size = store.size(key).expect("the object's size");
    let step = FetchOptions::REMOTE.max_request;
    let wants: Vec<Want> = (0..size.div_ceil(step))
        .map(|i| Want {
            key: key.clone(),
            offset: i * step,
            len: step.min(size - i * step),
        })
        .collect();
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    fetch_in_order(&store, &wants, &FetchOptions::REMOTE, |_, got| {
        let got = got?;
        bytes += got.len() as u64;
        hash.update(&got);
        Ok(())
    })
    .expect("reading the object");
    let secs = t.elapsed().as_secs_f64();
    let st = store.request_stats().unwrap_or_default();
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "{{\"bytes\": {bytes}, \"sha256\": \"{hex}\", \"seconds\": {secs:.3}, \"requests\": {}, \"bytes_read\": {}}}",
        st.requests, st.bytes_read
    );
}
