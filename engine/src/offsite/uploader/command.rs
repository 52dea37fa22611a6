//! A client run from argument templates (`offsite.upload`, `offsite.list`, `offsite.delete`):
//! another client than rclone or Proton's, given files only and read from its output lines.

use std::process::Command;
use std::time::Duration;

use super::{RemoteFile, Source, Uploader, Wanted, day_to_delete, is_day, sha256_hex};
use crate::error::{Error, ErrorKind, Result};
use crate::offsite::process;

/// A client run from argument templates: `{file}` (the local file), `{dest}` (`DATE/NAME`) and
/// `{dir}` (`DATE`, or empty for the root) are replaced; nothing else is.
#[derive(Debug)]
pub struct CommandUploader {
    /// Uploads `{file}` to `{dest}`.
    pub upload: Vec<String>,
    /// Lists `{dir}`: one line per file, `SIZE NAME` or `SIZE NAME SHA256`; for the root, one
    /// line per day folder, `0 DATE`.
    pub list: Vec<String>,
    /// Deletes the day folder `{dir}` (needed only when remote days are pruned).
    pub delete: Vec<String>,
}

impl CommandUploader {
    fn command(template: &[String], vars: &[(&str, &str)]) -> Result<Command> {
        let Some((program, args)) = template.split_first() else {
            return Err(Error::config("offsite: a command template is empty"));
        };
        let fill = |s: &String| {
            vars.iter()
                .fold(s.clone(), |s, (k, v)| s.replace(&format!("{{{k}}}"), v))
        };
        let mut c = Command::new(fill(program));
        c.args(args.iter().map(fill));
        Ok(c)
    }

    fn run(
        &self,
        template: &[String],
        vars: &[(&str, &str)],
        timeout: Duration,
        what: &str,
    ) -> Result<Vec<u8>> {
        let mut c = Self::command(template, vars)?;
        let f = process::run(&mut c, None, timeout, what)?;
        match f.failure(what) {
            None => Ok(f.stdout),
            Some(why) => Err(Error::new(ErrorKind::Io, why)),
        }
    }

    fn lines(&self, dir: &str, timeout: Duration) -> Result<Vec<RemoteFile>> {
        let out = self.run(&self.list, &[("dir", dir)], timeout, "the list command")?;
        let mut files = Vec::new();
        for line in String::from_utf8_lossy(&out).lines() {
            let mut f = line.split_whitespace();
            let (Some(size), Some(name)) = (f.next(), f.next()) else {
                continue;
            };
            let Ok(size) = size.parse::<u64>() else {
                continue;
            };
            let sha256 = f.next().and_then(sha256_hex);
            files.push(RemoteFile {
                name: name.to_string(),
                size,
                sha256,
            });
        }
        Ok(files)
    }
}

impl Uploader for CommandUploader {
    fn describe(&self) -> String {
        format!(
            "command {}",
            self.upload.first().map(String::as_str).unwrap_or("")
        )
    }

    fn needs_file(&self) -> bool {
        true
    }

    fn upload(&self, src: Source<'_>, _size: u64, dest: &str, timeout: Duration) -> Result<()> {
        let Source::File(path) = src else {
            return Err(Error::new(
                ErrorKind::Io,
                "the command uploader takes files only",
            ));
        };
        let file = path.to_string_lossy();
        self.run(
            &self.upload,
            &[("file", &file), ("dest", dest)],
            timeout,
            "the upload command",
        )
        .map(|_| ())
    }

    fn list(&self, dir: &str, _want: &[Wanted<'_>], timeout: Duration) -> Result<Vec<RemoteFile>> {
        self.lines(dir, timeout)
    }

    fn days(&self, timeout: Duration) -> Result<Vec<String>> {
        Ok(self
            .lines("", timeout)?
            .into_iter()
            .map(|f| f.name)
            .filter(|n| is_day(n))
            .collect())
    }

    fn delete_day(&self, dir: &str, timeout: Duration) -> Result<()> {
        day_to_delete(dir)?;
        if self.delete.is_empty() {
            return Err(Error::config(
                "offsite.delete is not set: the command uploader cannot delete remote days",
            ));
        }
        self.run(&self.delete, &[("dir", dir)], timeout, "the delete command")
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command client's listing of non-canonical names yields no day, and none reaches its
    /// delete command.
    #[test]
    fn a_command_client_never_deletes_a_name_that_is_not_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let deleted = dir.path().join("deleted");
        let up = CommandUploader {
            upload: vec!["true".into()],
            list: vec![
                "sh".into(),
                "-c".into(),
                "printf '0 2026-1-1\\n0 +2026-01-01\\n0 2026-01-01\\n'".into(),
            ],
            delete: vec![
                "sh".into(),
                "-c".into(),
                format!("echo \"$0\" >> {}", deleted.display()),
                "{dir}".into(),
            ],
        };
        let timeout = Duration::from_secs(10);
        assert_eq!(up.days(timeout).unwrap(), ["2026-01-01"]);
        for name in ["2026-1-1", "+2026-01-01", "2026-01-01 "] {
            assert!(up.delete_day(name, timeout).is_err(), "{name:?}");
        }
        assert!(!deleted.exists(), "{:?}", std::fs::read_to_string(&deleted));
    }
}
