//! ShareGPT and trace loading on small committed fixtures: lengths checked against the
//! real Qwen2.5 tokenizer from ../shared/data (a test fails loudly when it is absent),
//! vLLM's filters applied and counted, and clear errors for malformed files.

use std::path::{Path, PathBuf};

use rackload_workloads::dataset::{
    Filters, ShareGptOptions, TokenCounts, load_sharegpt, load_trace,
};
use rackload_workloads::prompt::Prompt;
use rackload_workloads::scenario::{DatasetName, WorkloadConfig};
use rackload_workloads::tokenizer::{LoadedTokenizer, approx_count};
use rackload_workloads::{Arrival, Lengths};

/// This crate's directory at run time (`env!` would bake in the path of whichever
/// checkout first built a shared target dir).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures").join(name)
}

/// The shared Qwen2.5 tokenizer. Its absence fails the test loudly: CI lays shared/
/// beside the checkout.
fn qwen() -> PathBuf {
    let p = manifest_dir().join("../../shared/data/tokenizer/qwen2.5/tokenizer.json");
    assert!(
        p.exists(),
        "{} is absent: the tests read ../shared/data beside the checkout",
        p.display()
    );
    p
}

fn pairs() -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("sharegpt_small.json")).expect("fixture"),
    )
    .expect("json");
    v.as_array()
        .expect("list")
        .iter()
        .filter_map(|e| {
            let c = e["conversations"].as_array()?;
            Some((
                c.first()?["value"].as_str()?.to_owned(),
                c.get(1)?["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[test]
fn sharegpt_lengths_match_the_real_tokenizer_and_filters_are_counted() {
    let path = qwen();
    let tok = LoadedTokenizer::load(&path).expect("tokenizer loads");
    let reference = tokenizers::Tokenizer::from_file(&path).expect("tokenizer");
    let count = |s: &str| reference.encode(s, false).expect("encode").len() as u32;
    let opts = ShareGptOptions {
        filters: Filters {
            max_prompt_len: 40,
            ..Filters::default()
        },
        wanted: 100,
        ..ShareGptOptions::default()
    };
    let d = load_sharegpt(&fixture("sharegpt_small.json"), Some(&tok), &opts).expect("loads");
    let r = &d.report;
    assert_eq!(r.entries_in_file, 10);
    assert_eq!(r.fewer_than_two_turns, 2, "{r:?}");
    assert_eq!(r.examined, 8);
    assert_eq!(r.dropped_prompt_too_short, 1, "\"Hi\" is one token: {r:?}");
    assert_eq!(
        r.dropped_output_too_short, 1,
        "\"Ok.\" is two tokens: {r:?}"
    );
    assert_eq!(r.dropped_prompt_too_long, 1, "the long story prompt: {r:?}");
    assert_eq!(r.kept, 5);
    assert!(r.oversampled);
    assert_eq!(
        r.examined,
        r.kept
            + r.dropped_prompt_too_short
            + r.dropped_output_too_short
            + r.dropped_prompt_too_long
            + r.dropped_total_too_long
    );
    assert_eq!(d.token_counts, TokenCounts::Tokenizer);
    let source = pairs();
    for e in &d.entries {
        let prompt = e.prompt.as_deref().expect("sharegpt entries carry text");
        let (_, answer) = source
            .iter()
            .find(|(p, _)| p == prompt)
            .expect("entry from the file");
        assert_eq!(e.input_len, count(prompt), "{prompt}");
        assert_eq!(e.output_len, count(answer), "{answer}");
        assert!(e.input_len >= 4 && e.input_len <= 40 && e.output_len >= 4);
    }
}

#[test]
fn sharegpt_without_tokenizer_is_approximate_and_flagged() {
    let d = load_sharegpt(
        &fixture("sharegpt_small.json"),
        None,
        &ShareGptOptions {
            wanted: 3,
            seed: 4,
            ..ShareGptOptions::default()
        },
    )
    .expect("loads");
    assert_eq!(d.token_counts, TokenCounts::ApproximateCharsOver4);
    assert_eq!(d.entries.len(), 3);
    assert!(!d.report.oversampled);
    for e in &d.entries {
        assert_eq!(e.input_len, approx_count(e.prompt.as_deref().unwrap_or("")));
    }
    // the same seed samples the same entries, another seed another order
    let again = load_sharegpt(
        &fixture("sharegpt_small.json"),
        None,
        &ShareGptOptions {
            wanted: 3,
            seed: 4,
            ..ShareGptOptions::default()
        },
    )
    .expect("loads");
    assert_eq!(d.entries, again.entries);
}

#[test]
fn sharegpt_output_override_replaces_output_lengths() {
    let opts = ShareGptOptions {
        output_len_override: Some(50),
        wanted: 100,
        ..ShareGptOptions::default()
    };
    let d = load_sharegpt(&fixture("sharegpt_small.json"), None, &opts).expect("loads");
    assert!(d.entries.iter().all(|e| e.output_len == 50));
    assert_eq!(d.report.dropped_output_too_short, 0);
}

fn load_text(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad.json");
    std::fs::write(&p, text).expect("write");
    load_sharegpt(
        &p,
        None,
        &ShareGptOptions {
            wanted: 10,
            ..ShareGptOptions::default()
        },
    )
    .expect_err("malformed")
    .to_string()
}

#[test]
fn malformed_sharegpt_files_name_the_entry_and_the_problem() {
    assert!(load_text("[{").contains("not JSON"));
    assert!(load_text("{\"conversations\": []}").contains("expected a JSON list"));
    let e = load_text(
        r#"[{"id":"ok","conversations":[{"value":"a b c d e"},{"value":"f g h i j"}]},{"id":"x7"}]"#,
    );
    assert!(
        e.contains("entry 1 (id \"x7\")") && e.contains("no \"conversations\""),
        "{e}"
    );
    let e = load_text(r#"[{"conversations":[{"value":"a"},{"value":42}]}]"#);
    assert!(
        e.contains("entry 0") && e.contains("turn 1") && e.contains("not a string"),
        "{e}"
    );
    let e = load_text(r#"[{"conversations":"hello"}]"#);
    assert!(e.contains("not a list"), "{e}");
    let e = load_sharegpt(
        Path::new("/nonexistent/sharegpt.json"),
        None,
        &ShareGptOptions::default(),
    )
    .expect_err("missing");
    assert!(e.to_string().contains("/nonexistent/sharegpt.json"));
}

#[test]
fn traces_replay_timestamps_and_share_prefix_blocks() {
    let cfg = WorkloadConfig {
        dataset_name: Some(DatasetName::Trace),
        dataset_path: Some(fixture("trace_small.jsonl")),
        trace_time_scale: Some(2.0),
        ..WorkloadConfig::default()
    };
    let spec = cfg.resolve(None).expect("resolves");
    assert_eq!(spec.arrival, Arrival::Trace { time_scale: 2.0 });
    assert_eq!(spec.dataset_len(), Some(4));
    assert_eq!(spec.schedule(4), vec![0.0, 0.5, 0.5, 2.0]);
    let words = |i| match spec.prompt(&spec.request(i).expect("request")) {
        Prompt::Text(t) => t.split_whitespace().map(str::to_owned).collect::<Vec<_>>(),
        Prompt::TokenIds(_) => panic!("text prompts"),
    };
    let (a, b, d) = (words(0), words(1), words(3));
    assert_eq!((a.len(), b.len(), d.len()), (600, 520, 1100));
    assert_eq!(a[..512], b[..512], "hash id 1 is shared");
    assert_ne!(a[512..520], b[512..520], "hash ids 2 and 3 differ");
    assert_eq!(a[..600], d[..600], "hash ids 1, 2 are shared");
    let r = spec.request(2).expect("request");
    assert_eq!((r.input_len, r.output_len), (64, 8));
}

#[test]
fn malformed_traces_name_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("t.jsonl");
    std::fs::write(&p, "{\"timestamp\":5,\"input_length\":3,\"output_length\":2}\n{\"timestamp\":1,\"input_length\":3,\"output_length\":2}\n").expect("write");
    let e = load_trace(&p).expect_err("decreasing").to_string();
    assert!(e.contains("line 2") && e.contains("before"), "{e}");
    std::fs::write(
        &p,
        "{\"timestamp\":5,\"input_len\":3,\"output_length\":2}\n",
    )
    .expect("write");
    let e = load_trace(&p).expect_err("bad field").to_string();
    assert!(e.contains("line 1") && e.contains("input_len"), "{e}");
}

#[test]
fn synthesised_prompts_have_exactly_the_requested_tokens() {
    let path = qwen();
    let reference = tokenizers::Tokenizer::from_file(&path).expect("tokenizer");
    let cfg = WorkloadConfig {
        tokenizer: Some(path),
        random_input_len: Some(300),
        random_output_len: Some(8),
        random_range_ratio: Some(0.9),
        shared_prefix_len: Some(16),
        ..WorkloadConfig::default()
    };
    let spec = cfg.resolve(None).expect("resolves");
    assert!(
        spec.prompt.vocab.words.len() >= 1000,
        "{}",
        spec.prompt.vocab.words.len()
    );
    let mut prefixes = Vec::new();
    for i in 0..25 {
        let req = spec.request(i).expect("request");
        let Prompt::Text(text) = spec.prompt(&req) else {
            panic!("text")
        };
        let ids = reference.encode(text.as_str(), false).expect("encode");
        assert_eq!(ids.len() as u32, req.input_len, "request {i}");
        let known = spec
            .prompt_token_ids(&req)
            .expect("ids from the vocabulary");
        assert_eq!(
            ids.get_ids(),
            &known[..],
            "the known ids are the tokenizer's"
        );
        prefixes.push(known[..16].to_vec());
    }
    assert!(prefixes.windows(2).all(|w| w[0] == w[1]), "shared prefix");
    assert!(matches!(spec.lengths, Lengths::Random { .. }));
}

/// Streamed text counted per chunk: the whole text is encoded once and each token goes to
/// the chunk it starts in, so the counts add up to the text's own count.
#[test]
fn tokens_per_piece_count_each_chunk_of_one_encoding() {
    let tok = rackload_workloads::tokenizer::LoadedTokenizer::load(&qwen()).expect("tokenizer");
    // " the of and" is three one-token words; the chunks are " the", " of and".
    let text = " the of and";
    assert_eq!(
        tok.tokens_per_piece(text, &[4, text.len()])
            .expect("counts"),
        [1, 2]
    );
    let long = "Speculative decoding sends several tokens per event.";
    let ends = [11, 30, long.len()];
    let counts = tok.tokens_per_piece(long, &ends).expect("counts");
    assert_eq!(counts.iter().sum::<u32>(), tok.count(long).expect("count"));
}
