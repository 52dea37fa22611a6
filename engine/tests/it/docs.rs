//! docs/FORMAT.md against the code: every list of kinds the documentation gives is exactly the
//! set of names the code writes, so that neither can drift from the other.

use std::collections::BTreeSet;

use cairn_engine::check::ProblemKind;
use cairn_engine::run::RunStatus;
use cairn_engine::snapshot::{SkipReason, WarningKind};

const FORMAT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md"));

/// The backticked lower-case names in FORMAT.md between `start` and the next `end`, outside
/// parentheses (which explain a name and may mention others).
fn listed(start: &str, end: &str) -> BTreeSet<String> {
    let from = FORMAT
        .find(start)
        .unwrap_or_else(|| panic!("FORMAT.md has no {start:?}"))
        + start.len();
    let to = from + FORMAT[from..].find(end).expect("end of the list");
    let mut depth = 0usize;
    let outside: String = FORMAT[from..to]
        .chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect();
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(str::to_string)
        .collect()
}

/// The serialized names of `kinds`.
fn names<T: serde::Serialize>(kinds: impl IntoIterator<Item = T>) -> BTreeSet<String> {
    kinds
        .into_iter()
        .map(|k| {
            serde_json::to_value(k)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn format_md_lists_every_kind() {
    assert_eq!(
        listed("- Warning kinds:", "Skip reasons:"),
        names(WarningKind::WRITTEN),
        "warning kinds"
    );
    assert_eq!(
        listed("Skip reasons:", "\n-"),
        names(SkipReason::WRITTEN),
        "skip reasons"
    );
    assert_eq!(
        listed("| `status` |", "\n"),
        names(RunStatus::ALL),
        "run statuses"
    );
    assert_eq!(
        listed("Problem kinds:", "The process exits"),
        names(ProblemKind::ALL),
        "problem kinds"
    );
    assert_eq!(
        listed("Offsite states:", ";"),
        names(cairn_engine::offsite::status::State::ALL),
        "offsite states"
    );
}

/// A kind written by a newer cairn still reads, as `unknown`: an old binary must not lose a
/// snapshot over a word it does not know.
#[test]
fn unknown_kinds_read_as_unknown() {
    let w: cairn_engine::snapshot::Warning =
        serde_json::from_str(r#"{"path": "a", "kind": "from_the_future", "message": "m"}"#)
            .unwrap();
    assert_eq!(w.kind, WarningKind::Unknown);
    let s: cairn_engine::snapshot::Skipped =
        serde_json::from_str(r#"{"path": "a", "reason": "from_the_future"}"#).unwrap();
    assert_eq!(s.reason, SkipReason::Unknown);
}
