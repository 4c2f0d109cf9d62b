//! Which protocol (and Thrift variant) a server or client speaks.

use std::fmt;
use std::str::FromStr;

/// Thrift protocol (message encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThriftProtocol {
    /// TBinaryProtocol, strict (versioned) message headers.
    #[default]
    Binary,
    /// TCompactProtocol.
    Compact,
}

/// Thrift transport (message delimiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThriftTransport {
    /// TFramedTransport: a 4-byte length before each message.
    #[default]
    Framed,
    /// TBufferedTransport: bare messages.
    Buffered,
    /// THeader: framed with a header carrying info key/values.
    Header,
}

/// A Thrift transport × protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ThriftVariant {
    /// Message encoding.
    pub protocol: ThriftProtocol,
    /// Message delimiting.
    pub transport: ThriftTransport,
}

/// A protocol the sample servers and clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// dubbo2 framing, hessian2 serialization.
    Dubbo,
    /// Thrift in one variant.
    Thrift(ThriftVariant),
}

impl ThriftVariant {
    /// Every transport × protocol, transport-major.
    pub fn all() -> impl Iterator<Item = ThriftVariant> {
        [
            ThriftTransport::Framed,
            ThriftTransport::Buffered,
            ThriftTransport::Header,
        ]
        .into_iter()
        .flat_map(|transport| {
            [ThriftProtocol::Binary, ThriftProtocol::Compact]
                .into_iter()
                .map(move |protocol| ThriftVariant {
                    protocol,
                    transport,
                })
        })
    }
}

impl Protocol {
    /// Dubbo, then every Thrift variant ([`ThriftVariant::all`]).
    pub fn all() -> Vec<Protocol> {
        std::iter::once(Protocol::Dubbo)
            .chain(ThriftVariant::all().map(Protocol::Thrift))
            .collect()
    }

    /// Framed binary Thrift, the default Thrift variant.
    pub const THRIFT: Protocol = Protocol::Thrift(ThriftVariant {
        protocol: ThriftProtocol::Binary,
        transport: ThriftTransport::Framed,
    });
}

/// Error of [`Protocol::from_str`] and friends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct ParseError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl FromStr for ThriftProtocol {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "binary" => Ok(Self::Binary),
            "compact" => Ok(Self::Compact),
            _ => Err(ParseError {
                what: "thrift protocol",
                value: s.into(),
                expected: "binary, compact",
            }),
        }
    }
}

impl FromStr for ThriftTransport {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "framed" => Ok(Self::Framed),
            "buffered" | "unframed" => Ok(Self::Buffered),
            "header" | "theader" => Ok(Self::Header),
            _ => Err(ParseError {
                what: "thrift transport",
                value: s.into(),
                expected: "framed, buffered, header",
            }),
        }
    }
}

/// `dubbo`, `thrift` (framed binary), or `thrift-` followed by `-`-separated variant words in any
/// order: `binary`/`compact` and `framed`/`buffered`/`header` (e.g. `thrift-compact`,
/// `thrift-header-compact`).
impl FromStr for Protocol {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let lower = s.to_ascii_lowercase();
        if lower == "dubbo" {
            return Ok(Protocol::Dubbo);
        }
        let mut words = lower.split('-');
        if words.next() != Some("thrift") {
            return Err(ParseError {
                what: "protocol",
                value: s.into(),
                expected: "dubbo, thrift, thrift-compact, thrift-buffered, thrift-header, ...",
            });
        }
        let mut v = ThriftVariant::default();
        for w in words {
            if let Ok(p) = w.parse::<ThriftProtocol>() {
                v.protocol = p;
            } else {
                v.transport = w.parse::<ThriftTransport>().map_err(|_| ParseError {
                    what: "thrift variant word",
                    value: w.into(),
                    expected: "binary, compact, framed, buffered, header",
                })?;
            }
        }
        Ok(Protocol::Thrift(v))
    }
}

impl fmt::Display for ThriftProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Binary => "binary",
            Self::Compact => "compact",
        })
    }
}

impl fmt::Display for ThriftTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Framed => "framed",
            Self::Buffered => "buffered",
            Self::Header => "header",
        })
    }
}

/// The canonical form `from_str` accepts: `dubbo` or `thrift-<transport>-<protocol>`.
impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Dubbo => f.write_str("dubbo"),
            Protocol::Thrift(v) => write!(f, "thrift-{}-{}", v.transport, v.protocol),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_variant_once() {
        let all = Protocol::all();
        assert_eq!(all.len(), 7, "dubbo + 3 transports x 2 protocols");
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 7);
        assert_eq!(all[0], Protocol::Dubbo);
        assert_eq!(all[1], Protocol::THRIFT);
    }

    #[test]
    fn parses_every_spelling() {
        let t = |transport, protocol| {
            Protocol::Thrift(ThriftVariant {
                protocol,
                transport,
            })
        };
        use ThriftProtocol::*;
        use ThriftTransport::*;
        assert_eq!("dubbo".parse(), Ok(Protocol::Dubbo));
        assert_eq!("thrift".parse(), Ok(t(Framed, Binary)));
        assert_eq!("thrift-compact".parse(), Ok(t(Framed, Compact)));
        assert_eq!("thrift-buffered".parse(), Ok(t(Buffered, Binary)));
        assert_eq!("Thrift-Header".parse(), Ok(t(Header, Binary)));
        assert_eq!("thrift-header-compact".parse(), Ok(t(Header, Compact)));
        assert_eq!("thrift-compact-buffered".parse(), Ok(t(Buffered, Compact)));
        for p in [
            t(Header, Compact),
            t(Buffered, Binary),
            t(Framed, Binary),
            Protocol::Dubbo,
        ] {
            assert_eq!(p.to_string().parse(), Ok(p));
        }
        let e = "thrift-zlib".parse::<Protocol>().unwrap_err().to_string();
        assert!(e.contains("\"zlib\""), "{e}");
        assert!("grpc".parse::<Protocol>().is_err());
    }
}
