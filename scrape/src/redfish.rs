//! A node's whole power (CPUs, NICs, fans and GPUs) from its BMC over Redfish: the
//! measurement InferenceX's plan names instead of TDP estimates. Two shapes of page are
//! read: the classic `/redfish/v1/Chassis/<id>/Power` (`PowerControl[].PowerConsumedWatts`)
//! and the newer `/redfish/v1/Chassis/<id>/EnvironmentMetrics` (`PowerWatts.Reading`).

use serde_json::Value;

/// Environment variables holding the BMCs' basic-auth credentials (never logged, never
/// written to results).
pub const USERNAME_ENV: &str = "RACKLOAD_REDFISH_USERNAME";
pub const PASSWORD_ENV: &str = "RACKLOAD_REDFISH_PASSWORD";

/// The node's power in watts on a Redfish page; `None` when the page is neither shape or
/// holds no finite, non-negative reading.
///
/// `PowerControl` may list several domains (DMTF's mockups give the whole chassis first,
/// then sub-domains that would count twice), so its first entry with a reading is taken.
pub fn power(text: &str) -> Option<f64> {
    let page: Value = serde_json::from_str(text).ok()?;
    let ok = |v: &Value| v.as_f64().filter(|w| w.is_finite() && *w >= 0.0);
    if let Some(w) = page.pointer("/PowerWatts/Reading").and_then(ok) {
        return Some(w);
    }
    page.get("PowerControl")?
        .as_array()?
        .iter()
        .find_map(|c| c.get("PowerConsumedWatts").and_then(ok))
}

/// May a BMC at `url` be sent credentials: over https, or over plain http to a loopback
/// address only (a password in cleartext on a network is not sent).
pub fn may_send_credentials(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), _) => true,
        (Some("http"), Some(host)) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// The `Authorization` header value for the credentials in the environment, if both are
/// set.
pub fn basic_auth_from_env() -> Option<String> {
    use base64::Engine as _;
    let user = std::env::var(USERNAME_ENV).ok()?;
    let pass = std::env::var(PASSWORD_ENV).ok()?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    Some(format!("Basic {token}"))
}

#[cfg(test)]
mod tests {
    use super::{may_send_credentials, power};

    #[test]
    fn credentials_go_over_tls_or_to_this_host_only() {
        assert!(may_send_credentials(
            "https://bmc-7.example/redfish/v1/Chassis/1/Power"
        ));
        assert!(may_send_credentials(
            "http://127.0.0.1:8443/redfish/v1/Chassis/1/Power"
        ));
        assert!(may_send_credentials("http://[::1]:80/x"));
        assert!(may_send_credentials("http://localhost/x"));
        assert!(!may_send_credentials(
            "http://10.0.0.7/redfish/v1/Chassis/1/Power"
        ));
        assert!(!may_send_credentials("not a url"));
    }

    #[test]
    fn reads_both_shapes_and_refuses_the_rest() {
        let classic = r#"{"@odata.id": "/redfish/v1/Chassis/1/Power",
            "PowerControl": [{"Name": "System Power Control", "PowerConsumedWatts": 4350.5},
                             {"Name": "CPU Sub-system", "PowerConsumedWatts": 800}]}"#;
        assert_eq!(power(classic), Some(4350.5));
        let absent_first = r#"{"PowerControl": [{"Name": "x"}, {"PowerConsumedWatts": 12}]}"#;
        assert_eq!(power(absent_first), Some(12.0));
        let env = r#"{"PowerWatts": {"Reading": 6120.0, "DataSourceUri": "/x"}}"#;
        assert_eq!(power(env), Some(6120.0));
        assert_eq!(power(r#"{"PowerWatts": {"Reading": -3}}"#), None);
        assert_eq!(power(r#"{"PowerControl": []}"#), None);
        assert_eq!(power("DCGM_FI_DEV_POWER_USAGE 3"), None);
    }
}
