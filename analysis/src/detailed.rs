//! vLLM's detailed per-request arrays (`vllm bench serve --save-detailed`), made from a
//! point's per-request records (`requests/<label>.jsonl.gz`): `input_lens`,
//! `output_lens`, `ttfts` (s), `itls` (per request, the gaps between its chunks, s),
//! `start_times` (s since the point's start; vLLM's are `perf_counter` readings, whose
//! origin means nothing either) and `errors` ("" for a success), in request order.
//! `generated_texts` is not written: rackload keeps no text.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Map, Value, json};

/// The arrays of the records in `path` (gzip JSON lines); a point that sent nothing
/// measured has no file and gets empty arrays.
pub fn arrays(path: &Path, point_start_unix_nanos: i64) -> std::io::Result<Value> {
    let mut records: Vec<Value> = Vec::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            // MultiGzDecoder: the file is one gzip member per report.
            let lines = BufReader::new(flate2::read::MultiGzDecoder::new(f)).lines();
            for (k, line) in lines.enumerate() {
                let line = line?;
                let v: Value = serde_json::from_str(&line).map_err(|e| {
                    std::io::Error::other(format!("record {}: not JSON: {e}", k + 1))
                })?;
                records.push(v);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    records.sort_by_key(|r| r["index"].as_u64().unwrap_or(u64::MAX));
    let s = |ms: &Value| ms.as_f64().map_or(0.0, |m| m / 1000.0);
    let start_us = point_start_unix_nanos as f64 / 1000.0;
    let mut o = Map::new();
    let mut put = |k: &str, v: Vec<Value>| {
        o.insert(k.to_owned(), Value::Array(v));
    };
    put(
        "input_lens",
        records.iter().map(|r| r["input_tokens"].clone()).collect(),
    );
    put(
        "output_lens",
        records
            .iter()
            .map(|r| json!(r["output_tokens"].as_u64().unwrap_or(0)))
            .collect(),
    );
    put(
        "ttfts",
        records.iter().map(|r| json!(s(&r["ttft_ms"]))).collect(),
    );
    put(
        "itls",
        records
            .iter()
            .map(|r| {
                let gaps = r["itl_ms"].as_array().map_or(&[][..], Vec::as_slice);
                Value::Array(gaps.iter().map(|g| json!(s(g))).collect())
            })
            .collect(),
    );
    put(
        "start_times",
        records
            .iter()
            .map(|r| json!((r["sent_us"].as_f64().unwrap_or(start_us) - start_us) / 1e6))
            .collect(),
    );
    put(
        "errors",
        records
            .iter()
            .map(|r| match (&r["error"], &r["message"]) {
                (Value::Null, _) => json!(""),
                (class, Value::String(m)) => {
                    json!(format!("{}: {m}", class.as_str().unwrap_or("")))
                }
                (class, _) => class.clone(),
            })
            .collect(),
    );
    Ok(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn member(lines: &str) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(lines.as_bytes()).expect("write");
        gz.finish().expect("finish")
    }

    #[test]
    fn arrays_come_in_request_order_from_every_member() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c1.jsonl.gz");
        let mut bytes = member(
            r#"{"index":3,"sent_us":3000000,"ttft_ms":20.0,"input_tokens":8,"output_tokens":4,"itl_ms":[1.0,2.0,3.0],"error":null}
"#,
        );
        bytes.extend(member(
            r#"{"index":1,"sent_us":2500000,"ttft_ms":null,"input_tokens":8,"output_tokens":null,"error":"http_5xx","message":"HTTP 503"}
"#,
        ));
        std::fs::write(&path, bytes).expect("write");
        let v = arrays(&path, 2_000_000_000).expect("arrays");
        assert_eq!(v["input_lens"], json!([8, 8]));
        assert_eq!(v["output_lens"], json!([0, 4]));
        assert_eq!(v["ttfts"], json!([0.0, 0.02]));
        assert_eq!(v["itls"], json!([[], [0.001, 0.002, 0.003]]));
        assert_eq!(v["start_times"], json!([0.5, 1.0]));
        assert_eq!(v["errors"], json!(["http_5xx: HTTP 503", ""]));
        let none = arrays(&dir.path().join("absent.jsonl.gz"), 0).expect("no file");
        assert_eq!(none["ttfts"], json!([]));
    }
}
