//! `rackload workload sample`: print the request stream a run would send — index, send
//! offset, lengths, optionally prompts — without sending anything. With `--shard K/N`,
//! only what worker K of N would send (equal weights), so sharding can be checked by eye
//! or by `diff`.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use rackload_workloads::Stripe;
use serde_json::json;

use rackload_spec::RawRun;
use rackload_spec::raw::Origin;
use rackload_spec::resolve::{Sweep, resolve_workload};

use crate::args::{SampleArgs, SampleFormat};

pub fn main(args: SampleArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.scenario_file {
        Some(path) => RawRun::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => RawRun::default(),
    };
    rackload_spec::raw::check_workload(&args.workload.config(), &Origin::Flags)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let concurrencies = if args.max_concurrency.is_empty() {
        file.concurrencies()
    } else {
        args.max_concurrency.clone()
    };
    let sweep = Sweep {
        concurrencies,
        rates: args
            .workload
            .request_rate
            .iter()
            .filter_map(|r| r.0)
            .collect(),
        num_prompts: args.num_prompts.or(file.run.num_prompts),
        warmup: Some(0),
        duration: None,
        sim_sweep: false,
    };
    let (mut workload, points) =
        resolve_workload(&args.workload.config().or(file.workload), &sweep)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The stream of the first point.
    let n = points.first().map_or(0, |p| p.num_prompts);
    if let Some(rate) = points.first().and_then(|p| p.request_rate) {
        workload.arrival = workload.arrival.with_rate(rate);
    }
    let stripe = match args.shard {
        Some((k, shards)) => Stripe::tile(n, &vec![1; shards as usize])[k as usize],
        None => Stripe::tile(n, &[1])[0],
    };
    let schedule = workload.schedule(n);
    let open = workload.arrival.is_open();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = (|| -> anyhow::Result<()> {
        if args.format == SampleFormat::Table {
            writeln!(
                out,
                "{:>8} {:>12} {:>9} {:>10}",
                "index", "arrival_s", "input_len", "output_len"
            )?;
        }
        for index in stripe.iter() {
            let req = workload.request(index)?;
            let arrival = open.then(|| schedule.get(index as usize).copied().unwrap_or(0.0));
            match args.format {
                SampleFormat::Table => {
                    let at = arrival.map_or("-".to_owned(), |a| format!("{a:.6}"));
                    writeln!(
                        out,
                        "{index:>8} {at:>12} {:>9} {:>10}",
                        req.input_len, req.output_len
                    )?;
                }
                SampleFormat::Jsonl => {
                    let mut line = json!({
                        "index": index,
                        "arrival_s": arrival,
                        "input_len": req.input_len,
                        "output_len": req.output_len,
                    });
                    if args.with_prompts {
                        match workload.prompt_token_ids(&req) {
                            Some(ids) => line["prompt_tokens"] = json!(ids),
                            None => line["prompt"] = workload.prompt(&req).as_json(),
                        }
                    }
                    serde_json::to_writer(&mut out, &line)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        out.flush()?;
        Ok(())
    })();
    match result {
        // `| head` closing the pipe is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}
