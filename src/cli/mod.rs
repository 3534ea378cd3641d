//! The command line: one subcommand per user task. Each subcommand lives in its own file and
//! returns the process exit code; this file only parses and dispatches.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for bad usage or unreadable input, shared by every subcommand.
pub const USAGE_ERROR: u8 = 3;

pub mod check;
pub mod client;
pub mod control;
pub mod demo;
pub mod export;
pub mod judge;
pub mod replay;
pub mod serve;
pub mod token;

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
    /// Decide a rule's rollout again over recorded data or its Prometheus history, on
    /// simulated time, and show the decisions.
    Replay(replay::ReplayArgs),
    /// Write the data an analysis judged as a directory `replay --data` reads.
    Export(export::ExportArgs),
    /// Run the daemon: analyse and drive every rollout of the rule files.
    Serve(serve::ServeArgs),
    /// Run two canary rollouts on a simulated service, in-process, in under a minute.
    Demo(demo::DemoArgs),
    /// Show rollouts (all, or one with its plan) from a running daemon.
    Status(control::StatusArgs),
    /// Show a rollout's audit trail, newest first.
    History(control::HistoryArgs),
    /// Show the latest analysis, baseline against canary, check by check.
    Compare(control::CompareArgs),
    /// Start a new run from the first stage: a pending rollout, a finished one again, or a new
    /// canary version (`--canary`), which supersedes a run in progress.
    Start(control::StartArgs),
    /// Let a stage waiting for approval advance.
    Approve(control::CommandArgs),
    /// Freeze a rollout at its current weight.
    Pause(control::CommandArgs),
    /// Continue a paused rollout.
    Resume(control::CommandArgs),
    /// Skip the evidence and move to the next stage now.
    Promote(control::CommandArgs),
    /// Roll a rollout back (previous stage's weight or 0%, per its plan).
    Rollback(control::CommandArgs),
    /// Give up on a rollout: the canary goes to 0% for good.
    Abort(control::CommandArgs),
    /// Send every rollout to 0% now (or lift the stop with --clear).
    EmergencyStop(control::EmergencyArgs),
    /// Make API tokens for the token file.
    Token(token::TokenArgs),
}

/// Whether the command line asks for `--output json`, read before (or without) a successful
/// parse, so a usage error is reported as JSON too.
fn wants_json(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().any(|a| a == "--output=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--output" && w[1] == "json")
}

/// Parse the command line and run the chosen subcommand.
///
/// A usage error exits 3 (not clap's 2, which `judge` uses for "inconclusive"); with
/// `--output json` it is printed as the control commands print their failures.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { USAGE_ERROR } else { 0 };
            if code != 0 && wants_json(std::env::args()) {
                let message = err.render().to_string();
                let failure = client::Failure::new(client::FailureKind::Usage, message.trim());
                return failure.report(client::Output::Json);
            }
            // Printing help or an error to the terminal can only fail if the terminal is gone.
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Judge(args) => judge::run(args),
        Command::Check(args) => check::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Export(args) => export::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Status(args) => control::status(args),
        Command::History(args) => control::history(args),
        Command::Compare(args) => control::compare(args),
        Command::Start(args) => control::start(args),
        Command::Approve(args) => control::command("approve", args),
        Command::Pause(args) => control::command("pause", args),
        Command::Resume(args) => control::command("resume", args),
        Command::Promote(args) => control::command("promote", args),
        Command::Rollback(args) => control::command("rollback", args),
        Command::Abort(args) => control::command("abort", args),
        Command::EmergencyStop(args) => control::emergency(args),
        Command::Token(args) => token::run(args),
    }
}
