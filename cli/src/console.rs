//! Printing that cannot panic: `println!` panics when its pipe is closed (`rackload run |
//! head` is closed after ten lines, long before the run ends, and a panic there would leave
//! run.json saying `running`). What the CLI prints is a courtesy; the run goes on, and its
//! files are the record.

/// `println!` that drops what a closed stdout cannot take.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that drops what a closed stderr cannot take.
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!`, likewise.
macro_rules! tell_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub(crate) use {say, tell, tell_raw};
