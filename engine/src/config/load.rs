//! Reading a [`Config`]: the TOML file (bounded, errors naming the line), then `CAIRN_<SECTION>_<KEY>`
//! variables, then `--set section.key=value`, then validation.

use std::path::Path;

use super::{Config, PUSHGATEWAY_PASSWORD, Secret};
use crate::error::{Error, Result};

const SECTIONS: [&str; 10] = [
    "source",
    "store",
    "exports",
    "state",
    "backup",
    "retention",
    "gc",
    "offsite",
    "metrics",
    "log",
];
const LIST_KEYS: [&str; 3] = [
    "source.folders",
    "source.optional_folders",
    "source.exclude",
];

/// Parses an override value: TOML when it is a valid TOML value, a comma list for list keys,
/// otherwise a plain string (so `CAIRN_STATE_DIR=/state` needs no quotes).
fn parse_value(dotted: &str, raw: &str) -> toml::Value {
    if let Ok(t) = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        && let Some(v) = t.get("v")
    {
        return v.clone();
    }
    if LIST_KEYS.contains(&dotted) {
        return toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.into()))
                .collect(),
        );
    }
    toml::Value::String(raw.to_string())
}

fn set_dotted(table: &mut toml::Table, dotted: &str, value: toml::Value) -> Result<()> {
    match dotted.split_once('.') {
        Some((section, key)) if SECTIONS.contains(&section) && !key.contains('.') => {
            let sec = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| Error::config(format!("[{section}] must be a table")))?;
            sec.insert(key.to_string(), value);
            Ok(())
        }
        None if !SECTIONS.contains(&dotted) => {
            table.insert(dotted.to_string(), value);
            Ok(())
        }
        _ => Err(Error::config(format!(
            "{dotted:?} is not a configuration key"
        ))),
    }
}

/// Top-level keys (outside any section).
const TOP_KEYS: [&str; 1] = ["timezone"];

/// Maps `CAIRN_STORE_PATH_STYLE` to `store.path_style`. Variables that name no section and no
/// top-level key (`CAIRN_CONFIG`, `CAIRN_LOG`, other tools' `CAIRN_*`) are not configuration;
/// a variable that names a section but an unknown key is, and fails as a typo should.
fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix("CAIRN_")?.to_ascii_lowercase();
    for s in SECTIONS {
        if let Some(key) = rest.strip_prefix(s).and_then(|k| k.strip_prefix('_')) {
            return Some(format!("{s}.{key}"));
        }
    }
    TOP_KEYS.contains(&rest.as_str()).then_some(rest)
}

/// The largest config file read: a real one is a few KiB. Anything larger (a wrong path,
/// `/dev/zero`) is refused after reading at most this much.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Reads a config file of at most [`MAX_CONFIG_LEN`] bytes (through `take`, so that a device or
/// a growing file cannot make cairn read without end).
fn read_config_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| {
        Error::config(format!("cannot read config file {}", path.display())).with_source(e)
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(Error::config(format!(
            "config file {} is larger than 1 MiB; is it the right file?",
            path.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::config(format!("config file {} is not UTF-8 text", path.display())))
}

/// One line naming the file, the line and column, and what is wrong; the TOML crate's own
/// message spans several lines with a snippet of the file.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let at = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(", line {line}, column {column}")
        }
        None => String::new(),
    };
    let message = e.message().trim().replace('\n', "; ");
    Error::config(format!("config file {}{at}: {message}", path.display()))
}

impl Config {
    /// Loads `file` (or the defaults), then applies `env` (`CAIRN_*` pairs) and `sets`
    /// (`section.key=value`), and validates the result.
    pub fn load(file: Option<&Path>, env: &[(String, String)], sets: &[String]) -> Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = read_config_file(path)?;
                toml::from_str::<toml::Table>(&text).map_err(|e| toml_error(path, &text, &e))?
            }
            None => toml::Table::new(),
        };
        for (var, raw) in env {
            if let Some(dotted) = env_key(var) {
                set_dotted(&mut table, &dotted, parse_value(&dotted, raw))
                    .map_err(|e| e.context(format!("environment variable {var}")))?;
            }
        }
        for s in sets {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| Error::config(format!("--set {s:?}: expected section.key=value")))?;
            // The key alone in the message: the value may be a URL with a password in it.
            set_dotted(&mut table, k.trim(), parse_value(k.trim(), v.trim()))
                .map_err(|e| e.context(format!("--set {}", k.trim())))?;
        }
        let mut cfg: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    Error::config(format!("invalid configuration: {}", e.message()))
                })?;
        cfg.metrics.pushgateway_password = secret_from(env, PUSHGATEWAY_PASSWORD)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `name`'s value in `env`, or the trimmed content of the file `name_FILE` names (a mounted
/// Secret), as `credential_from_env` reads the S3 keys. Errors name the variable and the path,
/// never the content.
fn secret_from(env: &[(String, String)], name: &str) -> Result<Option<Secret>> {
    let var = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if let Some(v) = var(name) {
        return Ok(Some(Secret::new(v)));
    }
    let Some(path) = var(&format!("{name}_FILE")) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::config(format!("cannot read {name}_FILE ({path})")).with_source(e))?;
    Ok(Some(Secret::new(text.trim())))
}
