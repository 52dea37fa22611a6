//! Printing: JSON for scripts, aligned text for people (the progress line is `progress`'s).

/// Prints one JSON document on stdout.
pub fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialize")
    );
}

/// Human-readable byte count: `1023 B`, `1.5 KiB`, `1024.0 TiB` (one decimal, at most TiB).
/// Not `indicatif::HumanBytes`, which prints two decimals (`1.46 KiB`) and goes on to PiB: the
/// summaries people and their scripts read keep their form.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_counts_keep_their_form() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1023), "1023 B");
        assert_eq!(super::bytes(1024), "1.0 KiB");
        assert_eq!(super::bytes(1500), "1.5 KiB");
        assert_eq!(super::bytes(1_500_000), "1.4 MiB");
        assert_eq!(super::bytes(1_500_000_000), "1.4 GiB");
        assert_eq!(super::bytes(1 << 50), "1024.0 TiB");
    }
}
