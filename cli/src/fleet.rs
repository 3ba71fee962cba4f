//! `rackload workers` and `rackload abort`: small Control calls on a standing coordinator.

use crate::console::{say, tell};
use rackload_input::printable;
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
    // Worker-given strings shown with control characters escaped: no row of the listing
    // can be forged, nor the terminal driven.
    for w in &list.workers {
        say!(
            "{:<24} {:<20} {:>5} {:<10} {:<22} {}",
            printable(&w.worker_id),
            printable(&w.host),
            w.cores,
            printable(&w.build_version),
            printable(&w.peer),
            printable(&w.state)
        );
    }
    tell!("{} worker(s)", list.workers.len());
    Ok(ExitCode::SUCCESS)
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
