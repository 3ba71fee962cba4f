//! Prints the quantile tables of `sharegpt-synthetic` (see `src/synthetic.rs`) from a
//! ShareGPT file and a tokenizer: every entry measured, vLLM's filters applied.
//!
//!     cargo run --release -p rackload-workloads --example fit_sharegpt -- \
//!         ../shared/data/sharegpt/sharegpt_v3_first_turns_10k.json \
//!         ../shared/data/tokenizer/qwen2.5/tokenizer.json

use std::path::Path;

use rackload_workloads::dataset::{ShareGptOptions, load_sharegpt};
use rackload_workloads::tokenizer::LoadedTokenizer;

fn quantiles(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    (0..=40)
        .map(|k| {
            let pos = (k as f64 / 40.0) * (v.len() - 1) as f64;
            v[pos.round() as usize]
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, data, tok] = &args[..] else {
        return Err("usage: fit_sharegpt SHAREGPT.json TOKENIZER.json".into());
    };
    let tok = LoadedTokenizer::load(Path::new(tok))?;
    let opts = ShareGptOptions {
        wanted: u64::MAX,
        ..ShareGptOptions::default()
    };
    let d = load_sharegpt(Path::new(data), Some(&tok), &opts)?;
    println!("// {:?}", d.report);
    let inputs = d.entries.iter().map(|e| e.input_len).collect();
    let outputs = d.entries.iter().map(|e| e.output_len).collect();
    println!("INPUT_QUANTILES = {:?}", quantiles(inputs));
    println!("OUTPUT_QUANTILES = {:?}", quantiles(outputs));
    Ok(())
}
