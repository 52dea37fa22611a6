//! Integration tests of cairn-engine: one binary, one module per concern.

mod alloc;
mod archive_read;
mod backup;
mod bounds;
mod browse;
mod common;
mod delay_proxy;
mod docs;
mod export;
mod fault_proxy;
mod forget;
mod gc;
mod golden;
mod mtime;
mod props;
mod restore;
mod s3;
mod seeded;
mod store_conformance;
mod survey;
mod trust;
mod walk;
