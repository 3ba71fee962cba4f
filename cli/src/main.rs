//! `rackload`: the one binary. Parses the command line, sets up logging and the runtime,
//! and hands off to the libraries. Exit codes: 0 the run completed and every point passed
//! its failure gate; 1 it completed but a point's failed share was over
//! `--max-failure-rate`; 2 it could not run or was aborted (bad input included). A failed
//! request is data, not an exit code.

mod args;
mod certs;
mod children;
mod console;
mod fleet;
mod frontier;
mod progress;
mod report;
mod run;
mod sample;
mod servers;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::console::tell;

/// The global flags every process needs before it logs: `--log-format` and
/// `--otlp-endpoint` (set once in `main`; the embedded mode passes them to its children).
static GLOBAL: std::sync::OnceLock<(args::LogFormat, Option<String>)> = std::sync::OnceLock::new();

pub fn log_format() -> args::LogFormat {
    GLOBAL.get().map_or(args::LogFormat::Human, |g| g.0)
}

pub fn otlp_flag() -> Option<&'static str> {
    GLOBAL.get().and_then(|g| g.1.as_deref())
}

fn settings(default_filter: &'static str, service: &'static str) -> rackload_telemetry::Settings {
    rackload_telemetry::Settings {
        log_format: match log_format() {
            args::LogFormat::Human => rackload_telemetry::LogFormat::Human,
            args::LogFormat::Json => rackload_telemetry::LogFormat::Json,
        },
        default_filter,
        service,
        otlp: None,
    }
}

/// Logs only (the commands that export no spans).
fn init_logging(default_filter: &'static str) {
    let _ = rackload_telemetry::init(&settings(default_filter, "rackload"));
}

/// Logs and, when OTLP is configured, traces; must run inside `rt`.
fn init_telemetry(
    rt: &tokio::runtime::Runtime,
    service: &'static str,
) -> anyhow::Result<rackload_telemetry::Telemetry> {
    let otlp = rackload_telemetry::Otlp::configured(otlp_flag())?;
    let _in = rt.enter();
    Ok(rackload_telemetry::init(&rackload_telemetry::Settings {
        otlp,
        ..settings("info", service)
    })?)
}

/// Runs a long-lived server with logs and traces; the exporter is flushed before the
/// runtime goes away.
fn serve<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    service: &'static str,
    main: impl FnOnce() -> F,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let telemetry = match init_telemetry(&rt, service) {
        Ok(t) => t,
        Err(e) => {
            init_logging("info");
            return Err(e);
        }
    };
    let result = rt.block_on(main());
    drop(telemetry);
    result
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
            tell!(
                "{} (see 'rackload --help')",
                one_line(&e.render().to_string())
            );
            Err(ExitCode::from(2))
        }
    }
}

/// clap's message as one line: its lines (a missing argument is named on the lines after
/// the first; a value may hold blank lines) up to the tips and usage that close it.
fn one_line(rendered: &str) -> String {
    let words: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| {
            !l.starts_with("tip:")
                && !l.starts_with("Usage:")
                && !l.starts_with("For more information")
        })
        .filter(|l| !l.is_empty())
        .collect();
    if words.is_empty() {
        "error: invalid arguments".to_owned()
    } else {
        // A huge value is named, not repeated; escapes in it are shown, not obeyed.
        rackload_input::printable(&rackload_input::clip_words(&words.join(" "), 200))
    }
}

/// An error as the one line it is printed as: control characters escaped, a huge value a
/// user typed cut where it is echoed, and the whole at most 1,000 characters.
fn shown_error(e: &anyhow::Error) -> String {
    let text = rackload_input::clip_words(&format!("{e:#}"), 200);
    rackload_input::printable(&rackload_input::clip(&text, 1000))
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let _ = GLOBAL.set((cli.log_format, cli.otlp_endpoint.clone()));
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
            serve("rackload-coordinator", || servers::coordinator(args))
        }
        Command::Worker(args) => {
            // One socket per stream: as many as the hard limit allows.
            rackload_worker::limits::raise_open_files();
            serve("rackload-worker", || servers::worker(args))
        }
        Command::Sim(args) => {
            rackload_worker::limits::raise_open_files();
            serve("rackload-sim", || servers::sim(args))
        }
        Command::Workers(args) => small_runtime().and_then(|rt| rt.block_on(fleet::workers(args))),
        Command::Abort(args) => small_runtime().and_then(|rt| rt.block_on(fleet::abort(args))),
        Command::Workload(args::WorkloadCommand::Sample(args)) => {
            init_logging("warn");
            sample::main(*args)
        }
        Command::Certs(args) => {
            init_logging("warn");
            certs::main(args)
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
            // One line, whatever a user's value put in it (newlines, terminal escapes).
            tell!("error: {}", crate::shown_error(&e));
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

    /// A usage error is one line that names what is wrong: for a missing argument, the
    /// argument (clap puts it on the lines after the first).
    #[test]
    fn usage_errors_are_one_line_naming_the_argument() {
        use clap::error::ErrorKind;
        let missing = Cli::try_parse_from(["rackload", "worker"]).expect_err("missing");
        assert_eq!(missing.kind(), ErrorKind::MissingRequiredArgument);
        let line = super::one_line(&missing.render().to_string());
        assert!(line.contains("--coordinator <URL>"), "{line}");
        assert!(!line.contains('\n') && !line.contains("Usage"), "{line}");
        let blank = Cli::try_parse_from(["rackload", "run", "--max-concurrency", "x\n\ny"])
            .expect_err("not a number");
        let line = super::one_line(&blank.render().to_string());
        assert!(line.contains("--max-concurrency"), "{line}");
        let unknown = Cli::try_parse_from(["rackload", "run", "--bogus"]).expect_err("bogus");
        let line = super::one_line(&unknown.render().to_string());
        assert!(
            line.starts_with("error: unexpected argument '--bogus'"),
            "{line}"
        );
        assert!(!line.contains("tip"), "{line}");
    }
}
