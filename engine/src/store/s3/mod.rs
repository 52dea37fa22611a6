//! An S3 store (MinIO in production, Garage in tests) on aws-sdk-s3.
//!
//! The SDK is async; the engine is not. The store owns a small tokio runtime and blocks on it,
//! which keeps the `Store` trait synchronous for every caller. Requests carry checksums only when
//! the operation requires them, because older MinIO releases and other S3 servers reject the
//! newer default checksum trailers. The SDK's own retries are off: the engine's `RetryStore`
//! retries whole operations, and this module retries the parts of a multipart upload, which
//! cannot be replayed from outside. Nothing here relies on conditional writes (`If-None-Match`):
//! every key the engine writes is either content-addressed or written by one process at a time.
//!
//! One concern a file: `config` (where the bucket is, and the credentials), `client` (the
//! store's client and runtime, and the requests on one object the others build on), `errors`
//! (the SDK's errors as the engine's kinds), `counting` (requests and bytes, and the server's
//! clock), `objects` (the [`Store`](crate::store::Store) operations), `listing` (listing keys,
//! and aborting the uploads of dead writers), `upload` (the streaming multipart writer) and
//! `part` (one part of an upload: its bytes sent, or its range copied inside the server).

mod client;
mod config;
mod counting;
mod errors;
mod listing;
mod objects;
mod part;
mod upload;

pub use client::S3Store;
pub use config::{S3Config, credential_from_env};
