//! The library's server and client against each other, in every protocol variant.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test helpers outside #[test] fns"
)]

use std::time::Duration;

use meta_bench::{CallError, Client, ClientOptions, Protocol, ServerOptions, serve};
use tokio::net::TcpListener;

async fn start(
    proto: Protocol,
    opts: ServerOptions,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = serve(proto, l, opts).await;
    });
    (addr, task)
}

#[tokio::test]
async fn every_protocol_answers_hello_and_refuses_unknown_methods() {
    for proto in Protocol::all() {
        let opts = ServerOptions {
            name: "v7".into(),
            ..ServerOptions::default()
        };
        let (addr, server) = start(proto, opts).await;
        let mut c = Client::connect(proto, addr).await.unwrap();
        let r = c.call("world", &[]).await.unwrap();
        assert_eq!(r.text, "hello world from v7", "{proto}");
        assert_eq!(r.server(), Some("v7"));

        // a one-way request is not answered: the next answer is the next call's
        c.send_oneway("ignored").await.unwrap();
        let r = c.call("again", &[]).await.unwrap();
        assert_eq!(r.text, "hello again from v7", "{proto}");

        let other = ClientOptions {
            method: "nope".into(),
            ..ClientOptions::default()
        };
        let mut c2 = Client::connect_with(proto, addr, other).await.unwrap();
        let err = c2.call("x", &[]).await.unwrap_err();
        match (&proto, &err) {
            (
                Protocol::Dubbo,
                CallError::DubboStatus {
                    status: 70,
                    message,
                },
            ) => {
                assert!(message.contains("unknown method nope"), "{message}");
            }
            (Protocol::Thrift(_), CallError::ThriftApplication { kind: 1, message }) => {
                assert!(message.contains("nope"), "{message}");
            }
            _ => panic!("{proto}: unexpected {err:?}"),
        }
        assert!(!err.is_transport());
        server.abort();
    }
}

#[tokio::test]
async fn pipelined_requests_come_back_with_their_ids() {
    for proto in Protocol::all() {
        let (addr, server) = start(proto, ServerOptions::default()).await;
        let mut c = Client::connect(proto, addr).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..50 {
            ids.push((c.send(&format!("n{i}"), &[]).await.unwrap(), i));
        }
        for (id, i) in ids {
            let resp = c.recv().await.unwrap();
            assert_eq!(resp.id, id, "{proto}");
            assert_eq!(resp.result.unwrap().text, format!("hello n{i} from v1"));
        }
        server.abort();
    }
}

#[tokio::test]
async fn payloads_pad_requests_and_replies() {
    for proto in [Protocol::Dubbo, Protocol::THRIFT] {
        let opts = ServerOptions {
            payload: 4096,
            ..ServerOptions::default()
        };
        let (addr, server) = start(proto, opts).await;
        let mut c = Client::connect(proto, addr).await.unwrap();
        let big = meta_bench::padded_name("w", 120 * 1024);
        let r = c.call(&big, &[]).await.unwrap();
        assert_eq!(r.text.len(), 4096, "{proto}");
        assert_eq!(r.server(), Some("v1"));
        server.abort();
    }
}

#[tokio::test]
async fn delayed_server_overlaps_requests_and_client_times_out() {
    let opts = ServerOptions {
        delay: Some(Duration::from_millis(300)),
        ..ServerOptions::default()
    };
    let (addr, server) = start(Protocol::THRIFT, opts).await;
    let mut c = Client::connect(Protocol::THRIFT, addr).await.unwrap();
    let t0 = std::time::Instant::now();
    for i in 0..10 {
        c.send(&format!("{i}"), &[]).await.unwrap();
    }
    for _ in 0..10 {
        c.recv().await.unwrap().result.unwrap();
    }
    assert!(
        t0.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t0.elapsed()
    );

    let quick = ClientOptions {
        timeout: Some(Duration::from_millis(50)),
        ..ClientOptions::default()
    };
    let mut c = Client::connect_with(Protocol::THRIFT, addr, quick)
        .await
        .unwrap();
    let err = c.call("slow", &[]).await.unwrap_err();
    assert!(matches!(err, CallError::Timeout(_)), "{err:?}");
    assert_eq!(err.kind(), "timeout");
    server.abort();
}

#[tokio::test]
async fn attachments_need_theader_and_heartbeats_are_answered() {
    let (addr, server) = start(Protocol::THRIFT, ServerOptions::default()).await;
    let mut c = Client::connect(Protocol::THRIFT, addr).await.unwrap();
    let err = c.call("x", &[("k", "v")]).await.unwrap_err();
    assert_eq!(err.kind(), "unsupported", "{err}");
    server.abort();

    let header = "thrift-header".parse().unwrap();
    let (addr, server) = start(header, ServerOptions::default()).await;
    let mut c = Client::connect(header, addr).await.unwrap();
    assert_eq!(
        c.call("x", &[("k", "v")]).await.unwrap().text,
        "hello x from v1"
    );
    server.abort();

    let (addr, server) = start(Protocol::Dubbo, ServerOptions::default()).await;
    let (mut w, mut r) = Client::connect(Protocol::Dubbo, addr)
        .await
        .unwrap()
        .into_split();
    w.send_heartbeat().await.unwrap();
    let id = w.send("after-heartbeat", &[("k", "v")]).await.unwrap();
    // the heartbeat answer is consumed; the first response is the call's
    let resp = tokio::time::timeout(Duration::from_secs(5), r.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.id, id);
    server.abort();
}

#[tokio::test]
async fn connection_refused_and_closed_are_transport_errors() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let err = Client::connect(Protocol::Dubbo, addr).await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");

    // a server that accepts and closes at once
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let closer = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
    let mut c = Client::connect(Protocol::THRIFT, addr).await.unwrap();
    let err = c.call("x", &[]).await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    closer.abort();
}
