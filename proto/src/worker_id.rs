//! What a worker id may be: it names the worker in logs, `rackload workers`, run.json and
//! per-request records, so it is short and printable — no empty id, no 100 KB one, no
//! newline or terminal escape that could forge rows in a listing. Checked by the worker's
//! flag and again by the coordinator on every hello.

/// The longest worker id.
pub const MAX_WORKER_ID: usize = 128;

/// The characters a worker id is made of.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')
}

/// Ok, or why `id` is not a worker id.
pub fn check_worker_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a worker id cannot be empty".into());
    }
    if id.len() > MAX_WORKER_ID {
        return Err(format!(
            "a worker id has at most {MAX_WORKER_ID} characters ({} given)",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "a worker id is letters, digits and - _ . : @ only; {:?} is not one",
            c
        ));
    }
    Ok(())
}

/// `raw` made into a worker id: other characters become `-`, and it is cut to length
/// (for ids made from a host name).
pub fn sanitized(raw: &str) -> String {
    let id: String = raw
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(MAX_WORKER_ID)
        .collect();
    if id.is_empty() { "worker".into() } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_printable() {
        for ok in ["w1", "rackload-worker-0", "node07:1234", "gpu.rack-3_a@dc"] {
            assert_eq!(check_worker_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a\nw9 idle", "\u{1b}[2J", "a b", &"x".repeat(129)] {
            assert!(check_worker_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sanitized("my host\n"), "my-host-");
        assert_eq!(check_worker_id(&sanitized(&"é".repeat(300))), Ok(()));
    }
}
