//! Reading what users hand rackload — scenario files, datasets, traces, tokenizers, sim
//! profiles, catalogs, `--extra-body @FILE` — under a documented cap each ([`caps`]), so
//! that a wrong path (`/dev/zero`, a 40 GB log) is a clear error and not a machine out of
//! memory; and errors that say where in the file they are ([`located`]).

pub mod located;

use std::io::Read;
use std::path::Path;

pub use located::located;

/// The caps, in bytes, on each kind of file rackload reads.
pub mod caps {
    /// Scenario files, sim profiles, system catalogs: hand-written tables.
    pub const CONFIG: u64 = 1 << 20;
    /// `--extra-body @FILE`: a JSON object merged into every request.
    pub const EXTRA_BODY: u64 = 1 << 20;
    /// A tokenizer.json (Qwen2.5's is 7 MB; the largest in use are under 40 MB).
    pub const TOKENIZER: u64 = 256 << 20;
    /// A dataset (ShareGPT's full split is 670 MB) or a trace.
    pub const DATASET: u64 = 2 << 30;
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The OS's own words (not repeated: the message is the error's only line).
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path} is over the {cap_mib} MiB cap for {what}")]
    TooLarge {
        path: String,
        what: &'static str,
        cap_mib: u64,
    },
    #[error("{path} is not UTF-8 text: {reason}")]
    NotText { path: String, reason: String },
    #[error("{path} is a device, not a file")]
    Device { path: String },
}

/// The whole of `path`, if it is at most `cap` bytes; `what` names the kind of file in
/// the error ("a dataset"). Devices are refused; a pipe (`<(zcat x.gz)`) is read, but at
/// most `cap + 1` bytes of it whatever it holds, so nothing makes it read without end.
pub fn read_capped(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    let io = |e: std::io::Error| ReadError::Io {
        path: path.display().to_string(),
        reason: io_reason(&e),
    };
    let too_large = || ReadError::TooLarge {
        path: path.display().to_string(),
        what,
        cap_mib: cap >> 20,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    {
        use std::os::unix::fs::FileTypeExt as _;
        let kind = meta.file_type();
        if kind.is_char_device() || kind.is_block_device() {
            return Err(ReadError::Device {
                path: path.display().to_string(),
            });
        }
    }
    let claimed = meta.len();
    if claimed > cap {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(claimed).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(bytes)
}

/// [`read_capped`], as UTF-8 text.
pub fn read_text_capped(path: &Path, cap: u64, what: &'static str) -> Result<String, ReadError> {
    let bytes = read_capped(path, cap, what)?;
    String::from_utf8(bytes).map_err(|e| ReadError::NotText {
        path: path.display().to_string(),
        reason: e.utf8_error().to_string(),
    })
}

/// At most `max` characters of `text`, with `…` where it was cut: what an error echoes
/// of a user's value (a 100 KB string in a scenario file is named, not repeated).
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// `text` with every run of more than `max` non-space characters cut to `max` and `…`:
/// a huge value echoed inside a message is cut where it stands, so that what follows it
/// (clap names the flag after the value) is still read.
pub fn clip_words(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut run = 0;
    for c in text.chars() {
        if c == ' ' {
            run = 0;
        } else {
            run += 1;
            if run == max + 1 {
                out.push('…');
            }
            if run > max {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// `text` with its control characters (newlines, terminal escapes) shown escaped, so that
/// a value echoed in an error stays on one line and cannot drive the terminal.
pub fn printable(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        text.to_owned()
    }
}

/// An OS error in its own words, once: `No such file or directory`, without the
/// `(os error 2)` that would make it read like two errors.
pub fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(k) if text.ends_with(')') => text[..k].to_owned(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_over_the_cap_are_refused_and_devices_are_not_read_without_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = dir.path().join("small.json");
        std::fs::write(&small, b"{\"a\": 1}").expect("write");
        assert_eq!(
            read_text_capped(&small, 8, "a test").expect("fits"),
            "{\"a\": 1}"
        );
        let e = read_capped(&small, 7, "a test").expect_err("over");
        assert!(
            e.to_string().contains("over the 0 MiB cap for a test"),
            "{e}"
        );
        // /dev/zero claims 0 bytes and never ends; a pipe that never ends stops at the cap.
        let e = read_capped(Path::new("/dev/zero"), 1 << 20, "a dataset").expect_err("zero");
        assert!(matches!(e, ReadError::Device { .. }), "{e}");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let writer = {
                let fifo = fifo.clone();
                std::thread::spawn(move || {
                    use std::io::Write as _;
                    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) {
                        let block = [b'x'; 4096];
                        while f.write_all(&block).is_ok() {}
                    }
                })
            };
            let e = read_capped(&fifo, 1 << 20, "a dataset").expect_err("endless pipe");
            assert!(matches!(e, ReadError::TooLarge { .. }), "{e}");
            writer.join().expect("writer");
        }
        let e = read_capped(&dir.path().join("none"), 1, "x").expect_err("missing");
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read {}: No such file or directory",
                dir.path().join("none").display()
            )
        );
        assert_eq!(clip("abcdé", 4), "abcd…");
        assert_eq!(clip_words("a 'xxxxxx' for --f", 4), "a 'xxx… for --f");
        assert_eq!(printable("a\nb\u{1b}[2Jé"), "a\\nb\\u{1b}[2Jé");
        assert_eq!(clip("abcdé", 5), "abcdé");
        std::fs::write(&small, [0xff, 0xfe]).expect("write");
        assert!(matches!(
            read_text_capped(&small, 8, "x"),
            Err(ReadError::NotText { .. })
        ));
    }
}
