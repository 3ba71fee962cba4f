//! Samples of Prometheus' text exposition format, read line by line. Hand-written: the
//! crate of the field (`prometheus-parse`) matches metric names with `\w+`, so it cannot
//! read vLLM's and SGLang's (`vllm:num_requests_running` has a colon, as the format
//! allows); this reads names `[a-zA-Z_:][a-zA-Z0-9_:]*`, quoted label values with their
//! escapes, and values Go's way (`+Inf`, `NaN`), and skips what it cannot read.

/// One sample: its metric name, labels, and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Sample<'_> {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text` that reads as one (comments and malformed lines skipped).
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(|l| line(l.trim()))
}

fn line(l: &str) -> Option<Sample<'_>> {
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    let end = l
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(l.len());
    let name = &l[..end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &l[end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(body)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `k="v",k2="v2"}` → the pairs, and what follows the `}`.
fn label_set(mut s: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((out, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        let mut chars = s[eq + 1..].trim_start().char_indices();
        let quoted = &s[eq + 1..].trim_start();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut escaped = false;
        let mut close = None;
        for (k, c) in chars {
            match (escaped, c) {
                (true, 'n') => value.push('\n'),
                (true, c) => value.push(c),
                (false, '\\') => {
                    escaped = true;
                    continue;
                }
                (false, '"') => {
                    close = Some(k);
                    break;
                }
                (false, c) => value.push(c),
            }
            escaped = false;
        }
        out.push((key, value));
        s = &quoted[close? + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vllm_and_dcgm_lines_and_skips_the_rest() {
        let text = "# HELP vllm:num_requests_running Running.\n\
            # TYPE vllm:num_requests_running gauge\n\
            vllm:num_requests_running{model_name=\"m\",engine=\"0\"} 12.0\n\
            vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 40\n\
            DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-a\",note=\"a \\\"quoted\\\" }\"} 612.5 1700000000000\n\
            up 1\n\
            garbage line without value\n\
            9bad 1\n";
        let all: Vec<Sample> = samples(text).collect();
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0].name, "vllm:num_requests_running");
        assert_eq!((all[0].label("engine"), all[0].value), (Some("0"), 12.0));
        assert_eq!(all[1].label("le"), Some("+Inf"));
        assert_eq!(all[2].label("note"), Some("a \"quoted\" }"));
        assert_eq!(all[2].value, 612.5);
        assert_eq!((all[3].name, all[3].value), ("up", 1.0));
    }
}
