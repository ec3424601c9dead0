//! `portauthority`: the server, the migrator and the command-line client in one binary.

mod cli;
mod healthcheck;
mod keys;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::run(cli::Cli::parse()).await
}
