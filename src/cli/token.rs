//! `canaryd token`: make API tokens for the token file (`server.token_file`). `new` prints a
//! fresh random token once, with the line to add to the file (only its SHA-256 is stored);
//! `hash` reads a token from standard input (never from the command line, where `ps` and shell
//! history would keep it) and prints its line. No daemon is involved.

use std::io::Read as _;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::tokens::{hex, new_token, sha256};

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    Read,
    App,
    Metrics,
}

impl RoleArg {
    fn as_str(self) -> &'static str {
        match self {
            RoleArg::Admin => "admin",
            RoleArg::Read => "read",
            RoleArg::App => "app",
            RoleArg::Metrics => "metrics",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token once, and the token file line that admits it.
    New {
        /// Who the token is for; the audit trail records this name.
        name: String,
        /// `admin` may give commands; `read` may read everything; `app` only the assignment
        /// and weight endpoints (for applications); `metrics` only `/metrics` (for Prometheus).
        #[arg(long, value_enum, default_value = "read")]
        role: RoleArg,
    },
    /// Read a token on standard input and print the token file line for it.
    Hash {
        name: String,
        #[arg(long, value_enum, default_value = "read")]
        role: RoleArg,
    },
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

pub fn run(args: TokenArgs) -> ExitCode {
    let (name, role) = match &args.command {
        TokenCommand::New { name, role } | TokenCommand::Hash { name, role } => (name, *role),
    };
    if !valid_name(name) {
        eprintln!(
            "canaryd token: `{name}` is not a usable name: use letters, digits and - _ . @ only"
        );
        return ExitCode::from(super::USAGE_ERROR);
    }
    let token = match args.command {
        TokenCommand::New { .. } => match new_token() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("canaryd token: cannot read /dev/urandom: {e}");
                return ExitCode::FAILURE;
            }
        },
        TokenCommand::Hash { .. } => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                eprintln!("canaryd token: cannot read the token on standard input: {e}");
                return ExitCode::from(super::USAGE_ERROR);
            }
            let token = input.trim().to_string();
            if token.is_empty() {
                eprintln!("canaryd token: standard input is empty; pipe the token in");
                return ExitCode::from(super::USAGE_ERROR);
            }
            token
        }
    };
    let line = format!(
        "{name} {} {}",
        role.as_str(),
        hex(&sha256(token.as_bytes()))
    );
    if matches!(args.command, TokenCommand::New { .. }) {
        println!("token: {token}");
        println!(
            "(shown once: give it to {name}, e.g. in a file for --token-file or CANARYD_TOKEN)"
        );
        println!("add this line to the token file (server.token_file):");
    }
    println!("{line}");
    ExitCode::SUCCESS
}
