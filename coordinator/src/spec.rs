//! Validation of a submitted `RunSpec`: the coordinator trusts no client, so every field a
//! run depends on is checked here, and the error names the field and what was expected.

use std::collections::HashSet;

use rackload_proto::v1::RunSpec;
use rackload_workloads::WorkloadSpec;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Endpoints the worker speaks.
pub const ENDPOINTS: [&str; 2] = ["/v1/completions", "/v1/chat/completions"];

/// Checks `spec`; returns the validated workload.
pub fn validate(spec: &RunSpec) -> Result<WorkloadSpec, SpecError> {
    let target = spec
        .target
        .as_ref()
        .ok_or_else(|| err("target", "missing"))?;
    if target.base_urls.is_empty() {
        return Err(err("target.base_urls", "at least one base URL is needed"));
    }
    for (k, u) in target.base_urls.iter().enumerate() {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(err(
                format!("target.base_urls[{k}]"),
                format!("{u:?} is not an http:// URL"),
            ));
        }
    }
    if !ENDPOINTS.contains(&target.endpoint.as_str()) {
        return Err(err(
            "target.endpoint",
            format!(
                "{:?} is not one of {}",
                target.endpoint,
                ENDPOINTS.join(", ")
            ),
        ));
    }
    if !(target.request_timeout_s >= 0.0 && target.request_timeout_s.is_finite()) {
        return Err(err(
            "target.request_timeout_s",
            "must be a non-negative number of seconds",
        ));
    }
    let workload = spec
        .workload
        .as_ref()
        .ok_or_else(|| err("workload", "missing"))?;
    let workload = WorkloadSpec::try_from(workload).map_err(|e| err("workload", e.to_string()))?;
    if spec.workers == 0 {
        return Err(err("workers", "at least one worker is needed"));
    }
    if !(0.0..=1.0).contains(&spec.max_failure_rate) {
        return Err(err("max_failure_rate", "must be between 0 and 1"));
    }
    if !(spec.cooldown_s >= 0.0 && spec.cooldown_s.is_finite()) {
        return Err(err(
            "cooldown_s",
            "must be a non-negative number of seconds",
        ));
    }
    if !matches!(spec.on_worker_loss.as_str(), "" | "continue" | "abort") {
        return Err(err(
            "on_worker_loss",
            format!("{:?} is not continue or abort", spec.on_worker_loss),
        ));
    }
    if spec.points.is_empty() {
        return Err(err("points", "a run needs at least one point"));
    }
    let mut labels = HashSet::new();
    for (k, p) in spec.points.iter().enumerate() {
        let field = |f: &str| format!("points[{k}].{f}");
        if p.label.is_empty()
            || !p
                .label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || p.label.starts_with('.')
        {
            return Err(err(
                field("label"),
                format!(
                    "{:?} must be non-empty letters, digits, '-', '_' or '.'",
                    p.label
                ),
            ));
        }
        if !labels.insert(p.label.as_str()) {
            return Err(err(field("label"), format!("{:?} is used twice", p.label)));
        }
        if p.max_concurrency == 0 && !workload.arrival.is_open() {
            return Err(err(
                field("max_concurrency"),
                "a closed loop needs at least 1",
            ));
        }
        if p.num_prompts == 0 {
            return Err(err(field("num_prompts"), "must be at least 1"));
        }
        let ok = |v: f64| v >= 0.0 && v.is_finite();
        if !(ok(p.request_rate) && ok(p.duration_s)) {
            return Err(err(
                field("request_rate"),
                "rates and durations must be non-negative numbers",
            ));
        }
    }
    Ok(workload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackload_proto::v1::{PointSpec, TargetSpec};

    fn good() -> RunSpec {
        RunSpec {
            target: Some(TargetSpec {
                base_urls: vec!["http://127.0.0.1:8000".into()],
                endpoint: "/v1/completions".into(),
                ..TargetSpec::default()
            }),
            workload: Some((&WorkloadSpec::default()).into()),
            points: vec![PointSpec {
                label: "c8".into(),
                max_concurrency: 8,
                num_prompts: 80,
                ..PointSpec::default()
            }],
            workers: 2,
            worker_wait_s: 10.0,
            ..RunSpec::default()
        }
    }

    #[test]
    fn good_spec_passes_and_bad_fields_are_named() {
        assert!(validate(&good()).is_ok());
        let mut s = good();
        s.points[0].max_concurrency = 0;
        assert_eq!(validate(&s).unwrap_err().field, "points[0].max_concurrency");
        let mut s = good();
        s.points[0].label = "../x".into();
        assert_eq!(validate(&s).unwrap_err().field, "points[0].label");
        let mut s = good();
        if let Some(t) = s.target.as_mut() {
            t.endpoint = "/v1/embeddings".into();
        }
        assert_eq!(validate(&s).unwrap_err().field, "target.endpoint");
        let mut s = good();
        s.workload = Some(
            (&WorkloadSpec::random(10, 10, 2.0, rackload_workloads::RangeMode::OneSided, 0)).into(),
        );
        assert_eq!(validate(&s).unwrap_err().field, "workload");
    }
}
