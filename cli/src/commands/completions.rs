//! `cairn completions SHELL` and `cairn man`: the shell completion scripts and the man page,
//! generated from the command line's own definition (clap's), so that they cannot drift from
//! it. Neither needs a configuration: the image's build runs both to install their output where
//! bash-completion, zsh, fish and man look (k8s/Dockerfile).

use std::io::Write;

use anyhow::Result;
use clap::{Args, CommandFactory};
use clap_complete::aot::{Shell, generate};

use crate::{Cli, exit};

/// Arguments of `cairn completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell whose completion script to print.
    #[arg(value_enum)]
    shell: Shell,
}

/// Prints the completion script for the shell asked for to stdout.
pub(crate) fn run_completions(a: &CompletionsArgs) -> Result<u8> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    generate(a.shell, &mut cmd, "cairn", &mut script);
    print(&script)
}

/// Prints the man page (roff) to stdout: the command, its options and its subcommands.
pub(crate) fn run_man() -> Result<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    print(&page)
}

/// Writes `bytes` to stdout; a reader that went away (`cairn man | head`) had what it wanted.
fn print(bytes: &[u8]) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        written => {
            written?;
            Ok(exit::OK)
        }
    }
}
