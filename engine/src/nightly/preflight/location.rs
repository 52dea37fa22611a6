//! One storage location (`[store]` or `[exports]`): its bucket, the repository in the store,
//! and what the key may do, shown by one fixed probe object per role (`_preflight/<role>`,
//! overwritten each time, so a key without delete leaves no litter).

use super::finding::{Finding, Role, Status, finding};
use crate::config::{StoreConfig, StoreKind};
use crate::error::{Error, ErrorKind};
use crate::store::Store;

/// One location (`[store]` or `[exports]`): its bucket, the repository (for the store), and what
/// the key may do, by a fixed probe object. Returns the opened store for the clock check.
pub(super) fn location(
    out: &mut Vec<Finding>,
    loc: &StoreConfig,
    section: &str,
    role: Role,
) -> Option<std::sync::Arc<dyn Store>> {
    let place = loc.server_name();
    match crate::setup::ensure_bucket(loc, section, false) {
        Ok(Some(_)) => out.push(finding(
            format!("{section} bucket"),
            Status::Ok,
            format!("{place}: exists"),
        )),
        Ok(None) => {}
        Err(e) => {
            out.push(finding(
                format!("{section} bucket"),
                Status::Fail,
                e.to_string(),
            ));
            return None;
        }
    }
    let store = match crate::setup::open_store(loc, section, section == "exports") {
        Ok(s) => s,
        Err(e) => {
            out.push(finding(
                format!("{section} access"),
                Status::Fail,
                e.to_string(),
            ));
            return None;
        }
    };
    if section == "store" {
        out.push(match crate::repo::Repository::open(store.clone()) {
            Ok(r) => finding(
                "store repository",
                Status::Ok,
                format!("repository {} in {place}", &r.config().id[..8]),
            ),
            Err(e) if e.kind() == ErrorKind::NotFound && role == Role::Nightly => finding(
                "store repository",
                Status::Ok,
                format!("none yet in {place}: `cairn init --exists-ok` makes it"),
            ),
            Err(e) => finding("store repository", Status::Fail, e.to_string()),
        });
    }
    // put, get, list: one object per role, overwritten each time (no litter without delete).
    let key = format!("_preflight/{}", role.name());
    let access = put_get_list(store.as_ref(), &key, role);
    match access {
        Ok(()) => out.push(finding(
            format!("{section} access"),
            Status::Ok,
            format!("{place}: put, get and list work"),
        )),
        Err((what, e)) => {
            out.push(finding(
                format!("{section} access"),
                Status::Fail,
                format!("{place}: {what} failed: {e}"),
            ));
            return Some(store);
        }
    }
    // A directory has no key to hold rights: whoever may write it may delete.
    if loc.kind == StoreKind::S3 {
        out.push(delete_rights(store.as_ref(), section, &place, &key, role));
    }
    Some(store)
}

/// Puts the probe object `key`, reads it back and finds it listed; names the step that failed.
fn put_get_list(store: &dyn Store, key: &str, role: Role) -> Result<(), (&'static str, Error)> {
    let body = format!(
        "cairn preflight {} {}\n",
        role.name(),
        jiff::Timestamp::now()
    );
    store
        .put(key, body.as_bytes())
        .map_err(|e| ("put", e))
        .and_then(|()| store.get(key).map_err(|e| ("get", e)))
        .and_then(|got| {
            if got == body.as_bytes() {
                Ok(())
            } else {
                Err((
                    "get",
                    Error::corrupt(format!("{key} read back other bytes")),
                ))
            }
        })
        .and_then(|()| store.list("_preflight/").map_err(|e| ("list", e)))
        .and_then(|listed| {
            if listed.iter().any(|o| o.key == key) {
                Ok(())
            } else {
                Err((
                    "list",
                    Error::not_found(format!("{key} was written but is not listed")),
                ))
            }
        })
}

/// Whether the key may delete, by deleting the probe object (or, for the offsite role, a key
/// that does not exist): expected of retention, unwelcome in the nightly key.
fn delete_rights(store: &dyn Store, section: &str, place: &str, key: &str, role: Role) -> Finding {
    let check = format!("{section} delete");
    // As gc probes: any refusal but an absent object or a server in trouble means "may not".
    let may = match store.delete(key) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => true,
        Err(e) if matches!(e.kind(), ErrorKind::Transient | ErrorKind::Unavailable) => {
            return finding(check, Status::Fail, format!("{place}: delete failed: {e}"));
        }
        Err(_) => false,
    };
    match (role, may) {
        (Role::Retention, true) => {
            finding(check, Status::Ok, format!("{place}: the key may delete"))
        }
        (Role::Retention, false) => finding(
            check,
            Status::Fail,
            format!(
                "{place}: this key may not delete, and retention must: give it the retention \
                 policy (docs/OPERATIONS.md, Least-privilege keys)"
            ),
        ),
        (Role::Nightly, true) => finding(
            check,
            Status::Warn,
            format!(
                "{place}: the nightly key may delete: a compromised pod could destroy history; \
                 give it the policy without s3:DeleteObject (docs/OPERATIONS.md, Least-privilege keys)"
            ),
        ),
        (_, false) => finding(
            check,
            Status::Ok,
            format!("{place}: the key may not delete, as it need not"),
        ),
        // The offsite job uses the nightly key: the same least-privilege warning.
        (Role::Offsite, true) => finding(
            check,
            Status::Warn,
            format!(
                "{place}: the offsite job's key may delete: a compromised pod could destroy \
                 history; give it the policy without s3:DeleteObject (docs/OPERATIONS.md, \
                 Least-privilege keys)"
            ),
        ),
    }
}
