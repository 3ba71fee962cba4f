//! `rackload workers` and `rackload abort`: small Control calls on a standing coordinator.

use crate::console::{say, tell};
use std::process::ExitCode;

use rackload_proto::v1::{AbortRunRequest, ListWorkersRequest};

use crate::args::{AbortArgs, WorkersArgs, check_url};
use crate::run::connect;

pub async fn workers(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    check_url("--coordinator", &args.coordinator)?;
    let wait = std::time::Duration::from_secs_f64(args.security.connect_wait);
    let mut client = connect(&args.coordinator, &args.security.client(), wait).await?;
    let list = crate::run::answered(
        &args.coordinator,
        client.list_workers(ListWorkersRequest {}),
    )
    .await?
    .map_err(|s| crate::run::refused(&args.coordinator, &s))?
    .into_inner();
    say!(
        "{:<24} {:<20} {:>5} {:<10} {:<22} state",
        "id",
        "host",
        "cores",
        "version",
        "peer"
    );
    for w in &list.workers {
        say!(
            "{:<24} {:<20} {:>5} {:<10} {:<22} {}",
            shown(&w.worker_id),
            shown(&w.host),
            w.cores,
            shown(&w.build_version),
            shown(&w.peer),
            shown(&w.state)
        );
    }
    tell!("{} worker(s)", list.workers.len());
    Ok(ExitCode::SUCCESS)
}

/// A worker-given string as it may be printed: control characters (newlines, terminal
/// escapes) shown escaped, so no row of the listing can be forged or the terminal driven.
fn shown(s: &str) -> String {
    rackload_input::printable(s)
}

pub async fn abort(args: AbortArgs) -> anyhow::Result<ExitCode> {
    check_url("--coordinator", &args.coordinator)?;
    let wait = std::time::Duration::from_secs_f64(args.security.connect_wait);
    let mut client = connect(&args.coordinator, &args.security.client(), wait).await?;
    let found = crate::run::answered(
        &args.coordinator,
        client.abort_run(AbortRunRequest {
            run_id: args.run.clone(),
        }),
    )
    .await?
    .map_err(|s| crate::run::refused(&args.coordinator, &s))?
    .into_inner()
    .found;
    if !found {
        anyhow::bail!(
            "no run {:?} is in progress on {}",
            args.run,
            args.coordinator
        );
    }
    tell!("run {} is being aborted", args.run);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn worker_given_strings_cannot_forge_rows() {
        assert_eq!(shown("node-1"), "node-1");
        assert_eq!(shown("a\nw9 idle"), "a\\nw9 idle");
        assert!(!shown("\u{1b}[2J").contains('\u{1b}'));
    }
}
