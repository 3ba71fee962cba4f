//! `rackload workers` and `rackload abort`: small Control calls on a standing coordinator.

use std::process::ExitCode;
use std::time::Duration;

use rackload_proto::v1::{AbortRunRequest, ListWorkersRequest};

use crate::args::{AbortArgs, WorkersArgs, check_url};
use crate::run::connect;

pub async fn workers(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    check_url("--coordinator", &args.coordinator)?;
    let mut client = connect(&args.coordinator, &args.security.client()).await?;
    let list = tokio::time::timeout(
        Duration::from_secs(10),
        client.list_workers(ListWorkersRequest {}),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "the coordinator at {} did not answer within 10 s",
            args.coordinator
        )
    })?
    .map_err(|s| anyhow::anyhow!("the coordinator refused: {}", s.message()))?
    .into_inner();
    println!(
        "{:<24} {:<20} {:>5} {:<10} {:<22} state",
        "id", "host", "cores", "version", "peer"
    );
    for w in &list.workers {
        println!(
            "{:<24} {:<20} {:>5} {:<10} {:<22} {}",
            w.worker_id, w.host, w.cores, w.build_version, w.peer, w.state
        );
    }
    eprintln!("{} worker(s)", list.workers.len());
    Ok(ExitCode::SUCCESS)
}

pub async fn abort(args: AbortArgs) -> anyhow::Result<ExitCode> {
    check_url("--coordinator", &args.coordinator)?;
    let mut client = connect(&args.coordinator, &args.security.client()).await?;
    let found = client
        .abort_run(AbortRunRequest {
            run_id: args.run.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("the coordinator refused: {}", s.message()))?
        .into_inner()
        .found;
    if !found {
        anyhow::bail!(
            "no run {:?} is in progress on {}",
            args.run,
            args.coordinator
        );
    }
    eprintln!("run {} is being aborted", args.run);
    Ok(ExitCode::SUCCESS)
}
