//! `cairn completions SHELL` and `cairn man`, run with no configuration anywhere: a bash script
//! that parses and offers every subcommand (the list taken from `cairn --help`, so a new command
//! is checked without editing this test), zsh and fish scripts that name the newest commands,
//! and a roff page that man (or groff) renders.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use super::{assert_exit, stderr, stdout};

/// `cairn ARGS` with no configuration: no `CAIRN_*` variable, run in `dir` (empty) with `dir`
/// as its home.
fn cairn(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.args(args).current_dir(dir).env("HOME", dir);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CAIRN_") {
            c.env_remove(&k);
        }
    }
    c.output().unwrap()
}

/// Whether `tool` is on the PATH.
fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The subcommands `cairn --help` lists (its `Commands:` section, `help` included).
fn subcommands(dir: &Path) -> Vec<String> {
    let help = cairn(dir, &["--help"]);
    assert_exit(&help, 0);
    let text = stdout(&help);
    let names: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A name is indented by two spaces; its wrapped description, further.
        .filter(|l| l.strip_prefix("  ").is_some_and(|r| !r.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    for name in ["dump", "mount", "stats", "completions", "man"] {
        assert!(names.iter().any(|n| n == name), "{name}: {text}");
    }
    names
}

/// `cairn completions SHELL`, checked to succeed and print something.
fn script(dir: &Path, shell: &str) -> String {
    let out = cairn(dir, &["completions", shell]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(!text.trim().is_empty(), "{shell}: empty script");
    text
}

/// What bash's completion function `_cairn` from `script` offers for the command line
/// `cairn WORD` (WORD being completed).
fn offered(script: &Path, word: &str) -> Vec<String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1"; COMP_WORDS=(cairn "$2"); COMP_CWORD=1; _cairn cairn "$2" cairn; printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(script)
        .arg(word)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_parses_and_offers_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let names = subcommands(dir.path());
    let file = dir.path().join("cairn.bash");
    fs::write(&file, script(dir.path(), "bash")).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", stderr(&syntax));
    let all = offered(&file, "");
    for name in &names {
        assert!(all.contains(name), "{name} is not offered: {all:?}");
    }
    assert_eq!(offered(&file, "du"), ["dump"]);
}

#[test]
fn zsh_fish_and_the_others_name_the_newest_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["zsh", "fish"] {
        let text = script(dir.path(), shell);
        for name in ["mount", "dump", "stats"] {
            assert!(text.contains(name), "{shell}: no {name}");
        }
        // The shell's own syntax check, where it is installed.
        if installed(shell) {
            let file = dir.path().join(format!("cairn.{shell}"));
            fs::write(&file, &text).unwrap();
            let check = Command::new(shell).arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "{shell} -n: {}", stderr(&check));
        }
    }
    for shell in ["elvish", "powershell"] {
        script(dir.path(), shell);
    }
    let out = cairn(dir.path(), &["completions", "tcsh"]);
    assert_exit(&out, 2);
}

#[test]
fn the_man_page_is_roff_that_man_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(dir.path(), &["man"]);
    assert_exit(&out, 0);
    let page = stdout(&out);
    // The title comes first, after only the preamble that defines the apostrophe string.
    let lines: Vec<&str> = page.lines().collect();
    let th = lines
        .iter()
        .position(|l| l.starts_with(".TH "))
        .unwrap_or_else(|| panic!("no .TH line: {page}"));
    assert!(
        lines[..th]
            .iter()
            .all(|l| l.starts_with(".ie ") || l.starts_with(".el ")),
        "{page}"
    );
    assert!(lines[th].to_lowercase().contains("cairn"), "{}", lines[th]);
    assert!(page.contains(".SH NAME"), "{page}");
    for name in ["dump", "mount", "stats", "completions"] {
        assert!(page.contains(name), "{name}: {page}");
    }

    let file = dir.path().join("cairn.1");
    fs::write(&file, &page).unwrap();
    let rendered = if installed("man") {
        Some(
            Command::new("man")
                .args(["-l", "-"])
                .env("MANPAGER", "cat")
                .env("PAGER", "cat")
                .env("MANWIDTH", "100")
                .env("LC_ALL", "C.UTF-8")
                .stdin(fs::File::open(&file).unwrap())
                .output()
                .unwrap(),
        )
    } else if installed("groff") {
        Some(
            Command::new("groff")
                .args(["-man", "-Tutf8"])
                .env("GROFF_NO_SGR", "1")
                .arg(&file)
                .output()
                .unwrap(),
        )
    } else {
        eprintln!(
            "note: neither man nor groff is installed; the page's structure alone is checked"
        );
        None
    };
    if let Some(r) = rendered {
        assert!(r.status.success(), "{}", stderr(&r));
        // Bold and underlined letters are overstruck (`N\bN`, `_\bd`): keep the last of each.
        let mut text = String::new();
        for c in stdout(&r).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        assert!(text.contains("NAME") && text.contains("dump"), "{text}");
    }
}
