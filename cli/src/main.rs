//! `rackload`: the one binary. Parses the command line, sets up logging and the runtime,
//! and hands off to the libraries. Exit codes: 0 the run completed, 2 it could not run or
//! was aborted (bad input included); a failed request is data, not an exit code.

mod args;
mod children;
mod fleet;
mod frontier;
mod plot;
mod progress;
mod report;
mod run;
mod sample;
mod scenario_file;
mod servers;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// The log format `--log-format` chose (set once, before any logging starts).
static LOG_FORMAT: std::sync::OnceLock<args::LogFormat> = std::sync::OnceLock::new();

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match LOG_FORMAT.get().copied().unwrap_or(args::LogFormat::Human) {
        args::LogFormat::Human => builder.try_init(),
        // One JSON object per line: timestamp, level, message and the span fields (run,
        // point, worker id) flattened, for log pipelines.
        args::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// Parses the command line; a usage error is one line on stderr and exit code 2.
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Err(ExitCode::from(2))
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            eprintln!("{first} (see 'rackload --help')");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let _ = LOG_FORMAT.set(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => {
            init_logging("warn");
            // The CLI follows one event stream: one thread is plenty, and children
            // spawned from the main thread die with it (PR_SET_PDEATHSIG).
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(run::main(*args)))
        }
        Command::Coordinator(args) => {
            rackload_worker::limits::raise_open_files();
            server_runtime().and_then(|rt| rt.block_on(servers::coordinator(args)))
        }
        Command::Worker(args) => {
            // One socket per stream: as many as the hard limit allows.
            rackload_worker::limits::raise_open_files();
            server_runtime().and_then(|rt| rt.block_on(servers::worker(args)))
        }
        Command::Sim(args) => {
            rackload_worker::limits::raise_open_files();
            server_runtime().and_then(|rt| rt.block_on(servers::sim(args)))
        }
        Command::Workers(args) => small_runtime().and_then(|rt| rt.block_on(fleet::workers(args))),
        Command::Abort(args) => small_runtime().and_then(|rt| rt.block_on(fleet::abort(args))),
        Command::Workload(args::WorkloadCommand::Sample(args)) => {
            init_logging("warn");
            sample::main(*args)
        }
        Command::Frontier(args) => {
            init_logging("warn");
            frontier::main(args)
        }
        Command::Report(args) => {
            init_logging("warn");
            report::main(args)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    init_logging("warn");
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    init_logging("info");
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::args::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_parses_its_typical_flags() {
        for argv in [
            &[
                "rackload",
                "run",
                "--max-concurrency",
                "4,8",
                "--request-rate",
                "5",
                "--warmup",
                "0",
                "--duration",
                "3",
                "--cooldown",
                "1",
                "--on-worker-loss",
                "abort",
            ][..],
            &[
                "rackload",
                "run",
                "--concurrency-range",
                "4:64:x2",
                "--scenario",
                "reasoning",
                "--range-mode",
                "symmetric",
            ],
            &[
                "rackload",
                "workload",
                "sample",
                "--max-concurrency",
                "4,8",
                "--shard",
                "1/3",
                "--format",
                "table",
            ],
            &[
                "rackload",
                "worker",
                "--coordinator",
                "http://127.0.0.1:1",
                "--max-rate",
                "5",
                "--max-duration",
                "9",
            ],
            &[
                "rackload",
                "coordinator",
                "--listen",
                "127.0.0.1:0",
                "--max-run-duration",
                "60",
            ],
            &["rackload", "workers", "--coordinator", "http://127.0.0.1:1"],
            &[
                "rackload",
                "abort",
                "--coordinator",
                "http://127.0.0.1:1",
                "RUN",
            ],
            &[
                "rackload",
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--ttft-ms",
                "1",
            ],
        ] {
            assert!(Cli::try_parse_from(argv).is_ok(), "{argv:?}");
        }
    }
}
