//! Classes of failed requests, found by walking an error's `source()` chain rather than
//! matching strings: each failed request is counted in exactly one class.

use std::error::Error as StdError;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Could not open a connection (refused, unreachable, DNS).
    Connect,
    /// TLS handshake or certificate failure.
    Tls,
    /// A configured timeout fired.
    Timeout,
    /// The server answered 4xx (429 included).
    Http4xx,
    /// The server answered 5xx.
    Http5xx,
    /// The stream broke or ended before `[DONE]`.
    StreamReset,
    /// The server sent something that is not valid OpenAI SSE/JSON, or an error event.
    Malformed,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::Connect,
        ErrorClass::Tls,
        ErrorClass::Timeout,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::StreamReset,
        ErrorClass::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Tls => "tls",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::StreamReset => "stream_reset",
            ErrorClass::Malformed => "malformed",
        }
    }

    pub(crate) fn from_status(status: u16) -> ErrorClass {
        if status >= 500 {
            ErrorClass::Http5xx
        } else {
            ErrorClass::Http4xx
        }
    }

    /// Classifies a transport error by the first cause in its chain that says what it
    /// was; `fallback` when none does.
    pub(crate) fn classify(err: &(dyn StdError + 'static), fallback: ErrorClass) -> ErrorClass {
        // A TLS failure surfaces as a connect error wrapping an io error wrapping a
        // rustls error: the deepest cause decides.
        let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = cur {
            if e.is::<rustls::Error>() {
                return ErrorClass::Tls;
            }
            // io errors may nest (hyper-rustls wraps tokio-rustls' io error in another).
            let mut io = e.downcast_ref::<std::io::Error>();
            while let Some(inner) = io.and_then(std::io::Error::get_ref) {
                if inner.is::<rustls::Error>() {
                    return ErrorClass::Tls;
                }
                io = inner.downcast_ref::<std::io::Error>();
            }
            cur = e.source();
        }
        let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_timeout() {
                    return ErrorClass::Timeout;
                }
                if h.is_parse() || h.is_parse_status() {
                    return ErrorClass::Malformed;
                }
                if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                    return ErrorClass::StreamReset;
                }
            }
            if let Some(c) = e.downcast_ref::<hyper_util::client::legacy::Error>()
                && c.is_connect()
            {
                return ErrorClass::Connect;
            }
            if e.is::<tokio::time::error::Elapsed>() {
                return ErrorClass::Timeout;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                match io.kind() {
                    ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable => {
                        return ErrorClass::Connect;
                    }
                    TimedOut => return ErrorClass::Timeout,
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                        return ErrorClass::StreamReset;
                    }
                    _ => {}
                }
            }
            cur = e.source();
        }
        fallback
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
