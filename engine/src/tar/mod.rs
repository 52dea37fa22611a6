//! The tar side of the daily archive: the header blocks the export writes and a restore reads
//! back (`header`), the guard that bounds what a crafted archive can make a reader hold
//! (`guard`), and the zstd seek table that lets a reader start at any frame (`seek_table`).

pub mod guard;
pub mod header;
pub mod seek_table;
