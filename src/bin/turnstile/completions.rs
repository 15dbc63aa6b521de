//! `completions`: shell completion scripts, generated from the command line's own
//! definition by `clap_complete`.

use clap::Args;
use clap_complete::Shell;

use crate::output::{Failure, Output};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// the shell: bash, zsh, fish, powershell or elvish
    #[arg(value_enum)]
    shell: Shell,
}

/// The completion script of `command` for the shell asked for.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<Output, Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "turnstile", &mut script);
    let script = String::from_utf8(script)
        .map_err(|e| Failure::storage(format!("cannot write the completion script: {e}")))?;
    Ok(Output::raw(script))
}
