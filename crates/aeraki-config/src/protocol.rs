//! Protocol detection from a port name, as Aeraki does it: split on `-`, token 1
//! lowercased; `tcp-metaprotocol-<app>[-…]` names an application protocol whose codec comes
//! from the ApplicationProtocol registry.

use std::collections::BTreeMap;

use aeraki_model::Protocol;

/// Application protocol → codec name. `dubbo` and `thrift` are built in; ApplicationProtocol
/// objects add more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    codecs: BTreeMap<String, String>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut codecs = BTreeMap::new();
        for app in ["dubbo", "thrift"] {
            codecs.insert(app.to_owned(), format!("aeraki.meta_protocol.codec.{app}"));
        }
        Registry { codecs }
    }
}

impl Registry {
    /// Adds (or replaces) an application protocol.
    pub fn register(&mut self, protocol: &str, codec: &str) {
        self.codecs
            .insert(protocol.to_ascii_lowercase(), codec.to_owned());
    }

    /// The codec of an application protocol.
    pub fn codec(&self, protocol: &str) -> Option<&str> {
        self.codecs.get(protocol).map(String::as_str)
    }

    fn known(&self) -> String {
        self.codecs.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// What a port name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// A protocol we serve.
    Ours(Protocol),
    /// A protocol Aeraki handles with a native plugin we do not provide (kafka, zookeeper,
    /// mongo, mysql): the port is left alone, with a warning.
    Unsupported(String),
    /// Anything else (http, tcp, grpc…): not ours, silently left to Istio.
    NotOurs,
}

/// Detects the protocol of a port from its name.
pub fn detect(port_name: &str, registry: &Registry) -> Result<Detected, String> {
    let tokens: Vec<&str> = port_name.split('-').collect();
    let Some(token) = tokens.get(1) else {
        return Ok(Detected::NotOurs);
    };
    Ok(match token.to_ascii_lowercase().as_str() {
        "dubbo" => Detected::Ours(Protocol::Dubbo),
        "thrift" => Detected::Ours(Protocol::Thrift),
        "redis" => Detected::Ours(Protocol::Redis),
        "metaprotocol" => {
            let app = tokens
                .get(2)
                .map(|t| t.to_ascii_lowercase())
                .unwrap_or_default();
            if app.is_empty() {
                return Err(format!(
                    "port name {port_name:?} names no application protocol: expected tcp-metaprotocol-<protocol>[-suffix], e.g. tcp-metaprotocol-dubbo"
                ));
            }
            let Some(codec) = registry.codec(&app) else {
                return Err(format!(
                    "port name {port_name:?}: unknown application protocol {app:?} (known: {}); declare it with an ApplicationProtocol",
                    registry.known()
                ));
            };
            Detected::Ours(Protocol::MetaProtocol {
                application: app,
                codec: codec.to_owned(),
            })
        }
        t @ ("mongo" | "mysql" | "kafka" | "zookeeper") => Detected::Unsupported(t.to_owned()),
        _ => Detected::NotOurs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str) -> Result<Detected, String> {
        detect(name, &Registry::default())
    }

    #[test]
    fn aeraki_unit_cases() {
        for name in ["tcp-dubbo", "tcp-Dubbo", "tcp-Dubbo-28001"] {
            assert_eq!(d(name), Ok(Detected::Ours(Protocol::Dubbo)), "{name}");
        }
        for name in [
            "Dubbo",
            "tcp",
            "http",
            "tcp-unknown",
            "",
            "http-web",
            "grpc-x",
        ] {
            assert_eq!(d(name), Ok(Detected::NotOurs), "{name}");
        }
        assert_eq!(
            d("tcp-thrift-hello-server"),
            Ok(Detected::Ours(Protocol::Thrift))
        );
        assert_eq!(d("tcp-redis"), Ok(Detected::Ours(Protocol::Redis)));
        assert_eq!(d("tcp-kafka"), Ok(Detected::Unsupported("kafka".into())));
        assert_eq!(
            d("tcp-zookeeper-2181"),
            Ok(Detected::Unsupported("zookeeper".into()))
        );
    }

    #[test]
    fn metaprotocol_ports() {
        assert_eq!(
            d("tcp-metaprotocol-thrift-hello-server"),
            Ok(Detected::Ours(Protocol::MetaProtocol {
                application: "thrift".into(),
                codec: "aeraki.meta_protocol.codec.thrift".into()
            }))
        );
        assert_eq!(
            d("tcp-metaprotocol-Dubbo"),
            Ok(Detected::Ours(Protocol::MetaProtocol {
                application: "dubbo".into(),
                codec: "aeraki.meta_protocol.codec.dubbo".into()
            }))
        );
        assert_eq!(
            d("tcp-metaprotocol-brpc"),
            Err("port name \"tcp-metaprotocol-brpc\": unknown application protocol \"brpc\" (known: dubbo, thrift); declare it with an ApplicationProtocol".into())
        );
        for bare in ["tcp-metaprotocol", "tcp-metaprotocol-"] {
            assert!(
                d(bare).is_err_and(|e| e.contains("names no application protocol")),
                "{bare}"
            );
        }
    }

    #[test]
    fn registered_protocols_parse() {
        let mut r = Registry::default();
        r.register("brpc", "aeraki.meta_protocol.codec.brpc");
        assert_eq!(
            detect("tcp-metaprotocol-brpc-8000", &r),
            Ok(Detected::Ours(Protocol::MetaProtocol {
                application: "brpc".into(),
                codec: "aeraki.meta_protocol.codec.brpc".into()
            }))
        );
    }
}
