//! Sample Dubbo and Thrift servers and clients, and a protocol load generator.
//!
//! This crate owns everything `meta-bench` (the binary) and `aeraki demo` need to put real
//! protocol traffic through a proxy without outside tools:
//!
//! - [`serve`]: a sayHello server on a [`tokio::net::TcpListener`]. Dubbo: interface
//!   `org.apache.dubbo.samples.basic.api.DemoService` (any interface is accepted), method
//!   `sayHello(String)`; Thrift: `HelloService.sayHello(1: string name)` (see
//!   `tests/peers/hello.thrift`). It answers `"hello <name> from <server name>"`, answers Dubbo
//!   heartbeats, never answers one-way requests, and answers an unknown method with a native
//!   error (Dubbo status 70 SERVICE_ERROR, Thrift `TApplicationException` UNKNOWN_METHOD).
//!   Requests on one connection are answered as they come (pipelining).
//! - [`Client`]: one connection; [`Client::call`] for one request at a time, or
//!   [`Client::send`] / [`Client::recv`] (and [`Client::into_split`]) to pipeline.
//! - [`load`]: the closed-/open-loop load generator behind `meta-bench run`; it sends requests
//!   from a [`RequestTemplate`] (encoded once, only the id rewritten per request).
//!
//! Framing and decoding use the project's codecs (`codec-dubbo`, `codec-thrift` through the
//! [`meta_protocol::Codec`] trait); this crate only writes the messages (Dubbo requests and
//! responses in hessian2, Thrift binary/compact messages in framed, buffered or THeader
//! transports) and reads the few values it needs out of decoded frames.
//!
//! # Decisions
//!
//! - The reply echoes at most the first [`ECHO_LIMIT`] bytes of the name, so a 120 KB request
//!   does not produce a 120 KB reply; reply size is chosen by the server's `payload` option
//!   (the text is padded with `' '` and `'x'` up to that many bytes).
//! - A Thrift server answers each request in the transport and protocol it arrived in (the codec
//!   detects them per connection), whatever variant it was started with.
//! - Attachments on a Thrift call need the THeader transport (they become info headers);
//!   elsewhere the call fails with [`CallError::Unsupported`] rather than dropping them.

mod client;
mod dubbo;
mod error;
pub mod load;
mod protocol;
mod server;
mod template;
mod thrift;

pub use client::{
    CallError, Client, ClientOptions, ClientReader, ClientWriter, Reply, Response, reply_bytes,
    request_bytes,
};
pub use protocol::{ParseError, Protocol, ThriftProtocol, ThriftTransport, ThriftVariant};
pub use server::{ServerOptions, serve};
pub use template::{RequestBatch, RequestTemplate};

/// Dubbo interface the sample server and the client use by default.
pub const DUBBO_INTERFACE: &str = "org.apache.dubbo.samples.basic.api.DemoService";
/// Dubbo service version the client sends by default (what the sofa-rpc-node peers register).
pub const DUBBO_VERSION: &str = "1.0.0";
/// The method every sample server implements.
pub const METHOD: &str = "sayHello";
/// Most bytes of the request's name echoed in a reply.
pub const ECHO_LIMIT: usize = 64;

/// `base` padded with `'x'` to `bytes` bytes (unchanged when it is already that long): the
/// request argument of a load test with `--payload BYTES`.
pub fn padded_name(base: &str, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes.max(base.len()));
    s.push_str(base);
    while s.len() < bytes {
        s.push('x');
    }
    s
}

/// The reply text of the sample servers: `"hello <name> from <server>"`, the name cut to
/// [`ECHO_LIMIT`] bytes, padded to `payload` bytes with one space and `'x'`s when `payload` is
/// larger.
pub fn hello_text(name: &str, server: &str, payload: usize) -> String {
    let mut cut = name.len().min(ECHO_LIMIT);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut s = format!("hello {} from {server}", &name[..cut]);
    if payload > s.len() {
        s.push(' ');
        while s.len() < payload {
            s.push('x');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_and_hello_text() {
        assert_eq!(padded_name("ab", 1), "ab");
        assert_eq!(padded_name("ab", 5), "abxxx");
        assert_eq!(hello_text("world", "v1", 0), "hello world from v1");
        let long = padded_name("w", 1000);
        let t = hello_text(&long, "v2", 0);
        assert_eq!(t.len(), "hello  from v2".len() + ECHO_LIMIT);
        let padded = hello_text("world", "v1", 40);
        assert_eq!(padded.len(), 40);
        assert!(padded.starts_with("hello world from v1 x"));
        let r = Reply {
            text: padded,
            headers: Vec::new(),
        };
        assert_eq!(r.server(), Some("v1"));
        // multi-byte characters are never split
        let t = hello_text(&"é".repeat(40), "v1", 0);
        assert!(t.ends_with(" from v1"));
    }
}
