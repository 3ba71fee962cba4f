//! Hostile scenario files: every key of every table given values at and beyond its
//! bounds, of the wrong type, NaN and infinities, empty and huge strings, escapes and
//! newlines. Reading and resolving such a file never panics; it either resolves or fails
//! with one line that names a field (or the file's line).

use proptest::prelude::*;
use rackload_spec::{Context, RawRun, resolve};

/// What a key holds: a whole number, a real one, a string, a boolean, a list, a table.
#[derive(Clone, Copy, Debug)]
enum Kind {
    U,
    F,
    S,
    B,
    L,
    T,
}
use Kind::*;

/// Every key a scenario file may hold, by table, with what it holds.
const KEYS: &[(&str, &str, Kind)] = &[
    ("workload", "scenario", S),
    ("workload", "random_input_len", U),
    ("workload", "random_output_len", U),
    ("workload", "random_range_ratio", F),
    ("workload", "range_mode", S),
    ("workload", "dataset_name", S),
    ("workload", "dataset_path", S),
    ("workload", "tokenizer", S),
    ("workload", "sharegpt_output_len", U),
    ("workload", "min_prompt_len", U),
    ("workload", "min_output_len", U),
    ("workload", "max_prompt_len", U),
    ("workload", "max_total_len", U),
    ("workload", "arrival", S),
    ("workload", "request_rate", F),
    ("workload", "burstiness", F),
    ("workload", "ramp_start_rate", F),
    ("workload", "ramp_end_rate", F),
    ("workload", "trace_time_scale", F),
    ("workload", "prompt_format", S),
    ("workload", "shared_prefix_len", U),
    ("workload", "seed", U),
    ("workload", "ignore_eos", B),
    ("target", "base_url", L),
    ("target", "endpoint", S),
    ("target", "model", S),
    ("target", "request_timeout", F),
    ("target", "connect_timeout", F),
    ("target", "first_byte_timeout", F),
    ("target", "idle_timeout", F),
    ("target", "http", S),
    ("target", "lb", S),
    ("target", "headers", T),
    ("target", "extra_body", T),
    ("target", "no_stream", B),
    ("target", "min_tokens", B),
    ("target", "continuous_usage_stats", B),
    ("target", "tls_ca", S),
    ("target", "insecure", B),
    ("run", "workers", U),
    ("run", "max_concurrency", L),
    ("run", "concurrency_range", S),
    ("run", "worker_wait", F),
    ("run", "request_rates", L),
    ("run", "num_prompts", U),
    ("run", "warmup", U),
    ("run", "duration", F),
    ("run", "cooldown", F),
    ("run", "max_failure_rate", F),
    ("run", "on_worker_loss", S),
    ("run", "trace_sample", F),
    ("run", "results_dir", S),
    ("run", "save_requests", B),
    ("run", "save_detailed", B),
    ("run", "goodput", T),
];

/// Hostile values of each kind: numbers at and past every bound, NaN and infinities,
/// empty, huge and escaped strings, lists and tables of the same.
fn of_kind(kind: Kind) -> BoxedStrategy<String> {
    let pick = |v: &[&str]| {
        prop::sample::select(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).boxed()
    };
    match kind {
        U => prop_oneof![
            pick(&[
                "0",
                "1",
                "-1",
                "16",
                "4194304",
                "4194305",
                "4294967295",
                "4294967296",
                "9223372036854775807",
                "-9223372036854775808",
            ]),
            any::<i64>().prop_map(|n| n.to_string()),
        ]
        .boxed(),
        F => prop_oneof![
            pick(&[
                "0.0", "-0.0", "1e-300", "1e300", "nan", "inf", "-inf", "0.5", "1.5", "0.001", "1",
                "-2",
            ]),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
        ]
        .boxed(),
        S => {
            let huge = format!("\"{}\"", "x".repeat(20_000));
            prop_oneof![
                pick(&[
                    "\"\"",
                    "\"chat\"",
                    "\"a\\nb\\u001b[2J\"",
                    "\"/nonexistent/x.json\"",
                    "\"4:1024:x2\"",
                    "\"0:0:+0\"",
                    "\"1:4294967295:+1\"",
                    "\"poisson\"",
                    "\"gamma\"",
                    "\"ramp\"",
                    "\"sharegpt\"",
                    "\"trace\"",
                    "\"token-ids\"",
                    "\"abort\"",
                    "\"symmetric\"",
                    "\"/v1/chat/completions\"",
                    "\"http2\"",
                    "\"p2c\"",
                    "\"sharegpt-synthetic\"",
                ]),
                Just(huge),
            ]
            .boxed()
        }
        B => pick(&["true", "false"]),
        L => pick(&[
            "[]",
            "[0]",
            "[-3, 5]",
            "[1e300]",
            "[nan]",
            "[1, 1, 2]",
            "[4294967296]",
            "[\"http://127.0.0.1:9\", \"x\"]",
            "[\"http://u:p@h\"]",
            "[\"http://127.0.0.1:9\"]",
            "16",
            "-3",
            "[0.5, 2.0]",
        ]),
        T => pick(&[
            "{}",
            "{ \"Host\" = \"x\" }",
            "{ \"\" = \"v\" }",
            "{ \"x-a\" = \"b\\nc\" }",
            "{ \"Content-Length\" = \"1\" }",
            "{ \"max_tokens\" = -1 }",
            "{ a = { b = [nan] } }",
            "{ ttft_ms = -1 }",
            "{ tpot_ms = nan }",
            "{ e2el_ms = 1e300 }",
            "{ ttft_ms = 2000 }",
        ]),
    }
}

/// Mostly a hostile value of the key's own kind (so that resolution goes past parsing),
/// sometimes one of another kind.
fn value(kind: Kind) -> BoxedStrategy<String> {
    let other = prop::sample::select(vec![U, F, S, B, L, T]).prop_flat_map(of_kind);
    prop_oneof![9 => of_kind(kind), 1 => other].boxed()
}

/// A scenario file of up to 5 keys (each once), each with a hostile value.
fn document() -> impl Strategy<Value = (String, Vec<&'static str>)> {
    let entry = (0..KEYS.len()).prop_flat_map(|k| (Just(k), value(KEYS[k].2)));
    prop::collection::btree_map(entry.prop_map(|(k, v)| (k, v)), Just(()), 1..6)
        .prop_map(|m| m.into_keys().collect::<Vec<_>>())
        .prop_map(|given| {
            let mut text = String::new();
            let mut keys = Vec::new();
            for table in ["workload", "target", "run"] {
                text.push_str(&format!("[{table}]\n"));
                let mut seen = std::collections::BTreeSet::new();
                for (k, v) in &given {
                    if !seen.insert(*k) {
                        continue;
                    }
                    let (t, key, _) = KEYS[*k];
                    if t == table {
                        text.push_str(&format!("{key} = {v}\n"));
                        keys.push(key);
                    }
                }
            }
            (text, keys)
        })
}

/// Does `message` name a field: a key of the file (`run.workers`, or the key on its
/// quoted line), a flag (`--request-rate`), or where in the file it is?
fn names_a_field(message: &str) -> bool {
    message.contains("line ")
        || KEYS.iter().any(|(_, key, _)| {
            message.contains(key) || message.contains(&format!("--{}", key.replace('_', "-")))
        })
        || message.contains("--header")
        || message.contains("--max-concurrency")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hostile_scenario_files_resolve_or_name_a_field((text, keys) in document()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hostile.toml");
        std::fs::write(&path, &text).expect("write");
        let outcome = RawRun::load(&path).and_then(|raw| resolve(raw, Context::default()));
        if let Err(e) = outcome {
            let message = e.to_string();
            prop_assert!(!message.contains('\n'), "more than one line: {message:?}");
            prop_assert!(
                names_a_field(&message),
                "names no field: {message:?} (keys {keys:?})"
            );
            prop_assert!(!message.contains("untagged enum"), "{message}");
            prop_assert!(message.len() < 2000, "too long: {} bytes", message.len());
        }
    }
}
