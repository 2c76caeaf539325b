//! The `tally` command: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use tally_client::ClientError;
use tally_client::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let error_exit_code = cli.command.error_exit_code();
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                ClientError::ChecksFailed { .. } => ExitCode::FAILURE,
                _ => ExitCode::from(error_exit_code),
            }
        }
    }
}
