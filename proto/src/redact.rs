//! URLs as they may be shown: a base URL can carry a secret (`?api-key=…`, a signed
//! query, `https://TOKEN@host`), and a URL is echoed by logs, spans, errors, run.json,
//! point files and the report. Everything that shows a target URL shows it through
//! [`url`]; only the request itself is sent to the real one. Errors are shown on one line
//! with their causes ([`error_chain`]).

/// What stands in for a secret.
pub const REDACTED: &str = "REDACTED";

/// `value` with its user info and every query value replaced by [`REDACTED`] (the
/// query's keys are kept: they say what was given) and its fragment dropped. A value that
/// does not parse as a URL is cut at its first `?` or `#`, and anything before an `@`
/// that follows `://` is hidden, so that even a mistyped URL never shows its secret.
pub fn url(value: &str) -> String {
    let Ok(mut u) = url::Url::parse(value) else {
        return unparsed(value);
    };
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_password(None);
        let _ = u.set_username(REDACTED);
    }
    if u.query().is_some() {
        // A part without `=` may be the secret itself (`?sk-live-abc`): hidden whole.
        let keys: Vec<String> = u
            .query_pairs()
            .map(|(k, v)| {
                if v.is_empty() {
                    REDACTED.to_owned()
                } else {
                    k.into_owned()
                }
            })
            .collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), REDACTED)));
    }
    u.set_fragment(None);
    let shown = u.to_string();
    // `url` adds a `/` path to a bare host; shown as typed.
    if !value.ends_with('/') && u.path() == "/" && u.query().is_none() {
        return shown.trim_end_matches('/').to_owned();
    }
    shown
}

fn unparsed(value: &str) -> String {
    let mut shown = value
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let cut = shown.len() < value.len();
    let after_scheme = shown.find("://").map_or(0, |k| k + 3);
    if let Some(at) = shown[after_scheme..].rfind('@') {
        shown.replace_range(after_scheme..after_scheme + at, REDACTED);
    }
    if cut {
        shown.push_str("?…");
    }
    shown
}

/// Does `value` carry user info (which rackload does not send: credentials go in
/// `--api-key` or a header)?
pub fn has_user_info(value: &str) -> bool {
    url::Url::parse(value).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// `err: cause: cause` on one line (hyper's and tonic's own say only "client error"),
/// a cause already in the text not repeated.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let next = e.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_never_shown() {
        assert_eq!(url("http://127.0.0.1:8000"), "http://127.0.0.1:8000");
        assert_eq!(url("http://h:8000/v1/"), "http://h:8000/v1/");
        assert_eq!(
            url("https://user:s3cret@h/v1?api-version=2024&api-key=s3cret#frag"),
            "https://REDACTED@h/v1?api-version=REDACTED&api-key=REDACTED"
        );
        assert_eq!(url("https://tok3n@h"), "https://REDACTED@h");
        assert_eq!(
            url("http://h/v1?sk-live-abc"),
            "http://h/v1?REDACTED=REDACTED"
        );
        for mistyped in [
            "http//user:s3cret@h?k=s3cret",
            "ht tp://u:s3cret@h",
            "s3cret@",
        ] {
            let shown = url(mistyped);
            assert!(!shown.contains("s3cret"), "{mistyped} → {shown}");
        }
        assert!(has_user_info("http://u:p@h") && has_user_info("http://u@h"));
        assert!(!has_user_info("http://h/?u=p@x"));
    }
}
