//! Request headers a user may not set: those that frame or route a request (its length,
//! transfer coding, connection handling, host), which the HTTP client decides per request
//! and connection. Checked where headers enter (flags and scenario files) and again by the
//! worker, whose plan may come from any client.

/// Header names (lower case) that frame or route a request.
const FRAMING: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "host",
];

/// Why `name` cannot be set by a user, or None when it may be.
pub fn framing_header(name: &str) -> Option<String> {
    FRAMING
        .contains(&name.trim().to_ascii_lowercase().as_str())
        .then(|| {
            format!(
                "{name:?} frames or routes the request, which the client decides; it cannot be set"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::framing_header;

    #[test]
    fn framing_headers_are_refused_in_any_case() {
        for h in [
            "Content-Length",
            "transfer-encoding",
            " Host ",
            "TE",
            "Connection",
        ] {
            assert!(framing_header(h).is_some(), "{h}");
        }
        for h in ["X-Request-Id", "Authorization", "x-session-id"] {
            assert!(framing_header(h).is_none(), "{h}");
        }
    }
}
