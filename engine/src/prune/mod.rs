//! Making room in the repository: which snapshots a calendar policy keeps (`forget`), and the
//! garbage collection that deletes or repacks the packs no kept snapshot needs (`gc`), under
//! leases and a grace period so that no concurrent writer loses data.

pub mod forget;
pub mod gc;
