//! The resolution pipeline as users meet it: flags over a scenario file, every default
//! from one table, "none" kept apart from 0, errors that name the flag or the file's key,
//! and the wire form the coordinator reads back without defaulting anything.

use std::time::Duration;

use rackload_spec::raw::{OneOrMany, RawRunTable, RawTarget};
use rackload_spec::{
    Context, Endpoint, HttpVersion, LoadBalance, OnWorkerLoss, Origin, RawRun, ResolvedRun,
    defaults, resolve,
};

fn resolved(raw: RawRun) -> ResolvedRun {
    resolve(raw, Context::default()).expect("resolves").run
}

fn flags(run: RawRunTable, target: RawTarget) -> RawRun {
    RawRun {
        run,
        target,
        ..RawRun::default()
    }
}

#[test]
fn nothing_given_means_the_defaults_table() {
    let run = resolved(RawRun::default());
    assert_eq!(run.workers, defaults::WORKERS);
    assert_eq!(run.max_failure_rate, defaults::MAX_FAILURE_RATE);
    assert_eq!(run.on_worker_loss, OnWorkerLoss::Continue);
    assert_eq!(run.target.endpoint, Endpoint::Completions);
    assert_eq!(run.target.http, HttpVersion::Auto);
    assert_eq!(run.target.lb, LoadBalance::RoundRobin);
    assert_eq!(run.target.request_timeout, defaults::REQUEST_TIMEOUT);
    assert_eq!(run.target.connect_timeout, defaults::CONNECT_TIMEOUT);
    assert_eq!(run.target.idle_timeout, None);
    let [p] = &run.points[..] else {
        panic!("one point: {:?}", run.points)
    };
    assert_eq!(p.label, "c16");
    assert_eq!(p.max_concurrency, Some(defaults::CONCURRENCY));
    assert_eq!((p.num_prompts, p.warmup), (160, 32));
}

#[test]
fn zero_is_a_value_where_it_means_something() {
    let run = resolved(flags(
        RawRunTable {
            max_failure_rate: Some(0.0),
            ..RawRunTable::default()
        },
        RawTarget {
            connect_timeout: Some(0.0),
            request_timeout: Some(0.0),
            ..RawTarget::default()
        },
    ));
    assert_eq!(run.max_failure_rate, 0.0, "a gate of 0 stays 0");
    assert_eq!(
        run.target.connect_timeout, None,
        "0 s = no limit, like every timeout"
    );
    assert_eq!(run.target.request_timeout, None);
    // And the wire keeps them apart from "unset".
    let mut run = run;
    run.target.base_urls = vec!["http://127.0.0.1:9".into()];
    let wire = run.to_proto();
    assert_eq!(wire.max_failure_rate, Some(0.0));
    assert_eq!(wire.target.as_ref().and_then(|t| t.connect_timeout_s), None);
    let back = ResolvedRun::from_proto(&wire).expect("valid");
    assert_eq!(back, run, "the coordinator reads exactly what was resolved");
}

#[test]
fn the_coordinator_refuses_unset_fields_instead_of_defaulting_them() {
    let mut run = resolved(RawRun::default());
    run.target.base_urls = vec!["http://127.0.0.1:9".into()];
    let good = run.to_proto();
    type Spoil = Box<dyn Fn(&mut rackload_proto::v1::RunSpec)>;
    let cases: Vec<(&str, Spoil)> = vec![
        ("max_failure_rate", Box::new(|s| s.max_failure_rate = None)),
        ("trace_sample", Box::new(|s| s.trace_sample = None)),
        ("on_worker_loss", Box::new(|s| s.on_worker_loss = 0)),
        (
            "target.endpoint",
            Box::new(|s| s.target.as_mut().map_or((), |t| t.endpoint = 0)),
        ),
        (
            "target.lb",
            Box::new(|s| s.target.as_mut().map_or((), |t| t.lb = 9)),
        ),
        (
            "target.connect_timeout_s",
            Box::new(|s| {
                s.target
                    .as_mut()
                    .map_or((), |t| t.connect_timeout_s = Some(0.0))
            }),
        ),
        (
            "points[0].max_concurrency",
            Box::new(|s| s.points[0].max_concurrency = None),
        ),
        (
            "points[0].label",
            Box::new(|s| s.points[0].label = "../x".into()),
        ),
        (
            "target.base_urls[0]",
            Box::new(|s| {
                s.target
                    .as_mut()
                    .map_or((), |t| t.base_urls[0] = "ftp://x".into())
            }),
        ),
        ("workers", Box::new(|s| s.workers = 0)),
    ];
    for (field, spoil) in cases {
        let mut s = good.clone();
        spoil(&mut s);
        let e = ResolvedRun::from_proto(&s).expect_err(field);
        assert_eq!(e.field, field, "{e}");
    }
}

#[test]
fn flags_win_over_the_file_and_file_errors_name_the_file_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.toml");
    std::fs::write(
        &path,
        "[run]\nmax_concurrency = [4, 8]\nmax_failure_rate = 0.1\nworkers = 3\n\
         [target]\nlb = \"p2c\"\nheaders = { a = \"file\", b = \"file\" }\n",
    )
    .expect("write");
    let file = RawRun::load(&path).expect("loads");
    let cli = flags(
        RawRunTable {
            max_concurrency: Some(OneOrMany::One(2)),
            ..RawRunTable::default()
        },
        RawTarget {
            headers: Some([("a".to_owned(), "flag".to_owned())].into()),
            ..RawTarget::default()
        },
    );
    let run = resolved(cli.or(file));
    let labels: Vec<&str> = run.points.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["c2"], "the flag's sweep replaces the file's");
    assert_eq!((run.workers, run.max_failure_rate), (3, 0.1));
    assert_eq!(run.target.lb, LoadBalance::P2c);
    assert_eq!(run.target.headers["a"], "flag");
    assert_eq!(run.target.headers["b"], "file");

    for (text, key) in [
        ("[run]\nmax_concurrency = -4\n", "run.max_concurrency"),
        ("[run]\nmax_failure_rate = 2\n", "run.max_failure_rate"),
        ("[target]\nconnect_timeout = -1\n", "target.connect_timeout"),
        (
            "[target]\nlb = \"random\"\n",
            "round-robin, least-outstanding, p2c",
        ),
        ("[run]\nduration = 0\n", "run.duration"),
        ("[target]\nbase_url = [\"ftp://x\"]\n", "target.base_url"),
    ] {
        std::fs::write(&path, text).expect("write");
        let e = RawRun::load(&path).expect_err(text).to_string();
        assert!(e.contains("s.toml") && e.contains(key), "{text}: {e}");
        assert!(
            !e.contains("--"),
            "a file value is not blamed on a flag: {e}"
        );
    }
    let e = flags(
        RawRunTable {
            max_failure_rate: Some(-1.0),
            ..RawRunTable::default()
        },
        RawTarget::default(),
    )
    .check(&Origin::Flags)
    .expect_err("negative");
    assert_eq!(e.field, "--max-failure-rate");
}

#[test]
fn the_embedded_sim_sweeps_by_default_and_durations_bound_points() {
    let ctx = Context {
        embedded_batch_sim: true,
    };
    let run = resolve(RawRun::default(), ctx).expect("resolves").run;
    let c: Vec<Option<u32>> = run.points.iter().map(|p| p.max_concurrency).collect();
    assert_eq!(c, defaults::SIM_SWEEP.map(Some));
    assert_eq!((run.points[3].num_prompts, run.points[3].warmup), (256, 64));

    let mut raw = RawRun::default();
    raw.workload.request_rate = Some(50.0);
    raw.run.duration = Some(5.0);
    let run = resolve(raw, ctx).expect("resolves").run;
    let p = &run.points[0];
    assert_eq!(
        p.max_concurrency, None,
        "an open loop has no cap unless given"
    );
    assert_eq!(p.duration, Some(Duration::from_secs(5)));
    assert!((200..300).contains(&p.num_prompts), "{p:?}");
}

/// A point sends at most `MAX_REQUESTS_PER_POINT` requests, warmup included, however it
/// was asked (a count, a warmup, a duration at a rate, a concurrency's default), and the
/// refusal names what asked; every rate of a sweep is bounded, not only the first; and the
/// coordinator applies the same caps to a run from another client.
#[test]
fn points_and_rates_are_capped_and_the_refusal_names_what_asked() {
    let cap = defaults::MAX_REQUESTS_PER_POINT;
    let refused = |run: RawRunTable| {
        let raw = flags(run, RawTarget::default());
        raw.check(&Origin::Flags)
            .and_then(|()| resolve(raw, Context::default()).map(|_| ()))
            .expect_err("over the cap")
    };
    let e = refused(RawRunTable {
        num_prompts: Some(cap + 1),
        ..RawRunTable::default()
    });
    assert_eq!(e.field, "--num-prompts", "{e}");
    let e = refused(RawRunTable {
        num_prompts: Some(cap),
        warmup: Some(cap),
        ..RawRunTable::default()
    });
    assert_eq!(e.field, "--warmup", "{e}");
    let e = refused(RawRunTable {
        max_concurrency: Some(OneOrMany::One(i64::from(u32::MAX))),
        ..RawRunTable::default()
    });
    assert_eq!(e.field, "--max-concurrency", "{e}");
    assert!(e.reason.contains("over the cap"), "{e}");
    let e = refused(RawRunTable {
        request_rates: Some(vec![1.0, 1e-19]),
        ..RawRunTable::default()
    });
    assert_eq!(e.field, "--request-rate", "{e}");

    let mut wire = resolved(RawRun::default()).to_proto();
    if let Some(t) = wire.target.as_mut() {
        t.base_urls = vec!["http://127.0.0.1:9".into()];
    }
    ResolvedRun::from_proto(&wire).expect("the wire form reads back");
    wire.points[0].num_prompts = cap;
    wire.points[0].warmup_prompts = 1;
    let e = ResolvedRun::from_proto(&wire).expect_err("over the cap");
    assert!(e.reason.contains("over the cap"), "{e}");
    // The coordinator refuses what the scrapers cannot read, as the CLI does.
    wire.points[0].warmup_prompts = 0;
    wire.gpu_metrics = vec!["https://node:9400/metrics".into()];
    wire.node_power = vec!["https://bmc-1/redfish/v1/Chassis/1/Power".into()];
    wire.telemetry_interval_s = 1.0;
    ResolvedRun::from_proto(&wire).expect("https pages are read");
    wire.node_power = vec!["ftp://bmc-1/x".into()];
    let e = ResolvedRun::from_proto(&wire).expect_err("ftp");
    assert_eq!(e.field, "node_power[0]", "{e}");
}
