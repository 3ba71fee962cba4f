//! The names users type for the wire's enums (`--endpoint /v1/chat/completions`,
//! `--http http2`, `--lb p2c`, `--on-worker-loss abort`): parsed and printed here once,
//! for flags, scenario files, `run.json` and error messages alike.

use std::fmt;
use std::str::FromStr;

use crate::v1::{Endpoint, HttpVersion, LoadBalance, OnWorkerLoss};

/// A name that is none of an enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{got:?} is not one of {}", expected.join(", "))]
pub struct UnknownName {
    pub got: String,
    pub expected: &'static [&'static str],
}

macro_rules! names {
    ($ty:ident, $ser:ident, $unset:ident, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// Every name, in the order of the variants.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The name users type; `"unset"` for the zero value no receiver accepts.
            pub fn name(self) -> &'static str {
                match self {
                    $ty::$unset => "unset",
                    $($ty::$variant => $name),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<$ty, UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName { got: s.to_owned(), expected: $ty::NAMES }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                ser.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        /// Serializes the wire's `i32` as the name (for `run.json`).
        pub fn $ser<S: serde::Serializer>(v: &i32, ser: S) -> Result<S::Ok, S::Error> {
            ser.serialize_str($ty::try_from(*v).unwrap_or($ty::$unset).name())
        }
    };
}

names!(Endpoint, endpoint, Unspecified, [
    Completions => "/v1/completions",
    ChatCompletions => "/v1/chat/completions",
]);
names!(HttpVersion, http, Unspecified, [
    Auto => "auto",
    Http1 => "http1",
    Http2 => "http2",
]);
names!(LoadBalance, lb, Unspecified, [
    RoundRobin => "round-robin",
    LeastOutstanding => "least-outstanding",
    P2c => "p2c",
]);
names!(OnWorkerLoss, on_worker_loss, Unspecified, [
    Continue => "continue",
    Abort => "abort",
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_choices() {
        for e in [Endpoint::Completions, Endpoint::ChatCompletions] {
            assert_eq!(e.name().parse::<Endpoint>(), Ok(e));
        }
        assert_eq!("p2c".parse::<LoadBalance>(), Ok(LoadBalance::P2c));
        let e = "random".parse::<LoadBalance>().unwrap_err().to_string();
        assert_eq!(
            e,
            "\"random\" is not one of round-robin, least-outstanding, p2c"
        );
        assert!("unset".parse::<HttpVersion>().is_err());
    }
}
