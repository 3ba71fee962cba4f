//! The process's open-file limit: a worker holds one socket per concurrent stream, so it
//! raises its soft limit to the hard one at start, and refuses a plan that could not fit.

/// Sockets kept free for everything besides the streams (gRPC, logs, resolver, files).
pub(crate) const SPARE_FILES: u64 = 64;

#[allow(unsafe_code)]
fn get() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// The current soft limit on open files (None where it cannot be read).
pub(crate) fn open_files() -> Option<u64> {
    get().map(|l| l.rlim_cur)
}

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
#[allow(unsafe_code)]
pub fn raise_open_files() -> Option<u64> {
    let lim = get()?;
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads only the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return Some(want.rlim_cur);
        }
    }
    Some(lim.rlim_cur)
}

/// Why `streams` concurrent streams cannot fit under the open-file limit, if they cannot.
pub(crate) fn check_streams(streams: u64) -> Result<(), String> {
    match open_files() {
        Some(limit) if streams + SPARE_FILES > limit => Err(format!(
            "plan asks for {streams} concurrent streams; this worker may open only {limit} files \
             (raise `ulimit -n`, or use more workers)"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_raised_to_the_hard_one_and_checked() {
        let raised = raise_open_files().expect("Linux has RLIMIT_NOFILE");
        assert_eq!(Some(raised), open_files());
        assert!(check_streams(1).is_ok());
        let e = check_streams(raised).expect_err("no room for the spare files");
        assert!(e.contains("ulimit -n"), "{e}");
    }
}
