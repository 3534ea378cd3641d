//! The command line: one subcommand per user task. Each subcommand lives in its own file and
//! returns the process exit code; this file only parses and dispatches.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for bad usage or unreadable input, shared by every subcommand.
pub const USAGE_ERROR: u8 = 3;

pub mod check;
pub mod demo;
pub mod judge;
pub mod serve;

#[derive(Debug, Parser)]
#[command(name = "canaryd", version, about = "Automated canary analysis daemon")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge baseline and canary data files offline, as one check would.
    Judge(judge::JudgeArgs),
    /// Validate rule files; exits 0 when all are valid, 1 otherwise.
    Check(check::CheckArgs),
    /// Run the daemon: analyse and drive every rollout of the rule files.
    Serve(serve::ServeArgs),
    /// Run two canary rollouts on a simulated service, in-process, in under a minute.
    Demo(demo::DemoArgs),
}

/// Parse the command line and run the chosen subcommand.
///
/// A usage error exits 3 (not clap's 2, which `judge` uses for "inconclusive").
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { USAGE_ERROR } else { 0 };
            // Printing help or an error to the terminal can only fail if the terminal is gone.
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Judge(args) => judge::run(args),
        Command::Check(args) => check::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
    }
}
