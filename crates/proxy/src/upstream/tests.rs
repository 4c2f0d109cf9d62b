//! A connection that used up its request budget hands a racing request back intact and
//! counts `upstream_cx_max_requests`.

use std::time::Duration;

use custom_codec_example::{CustomCodecFactory, request};
use meta_config::Cluster;
use meta_protocol::{CodecFactory, CodecOptions, Side};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;
use crate::cluster::ClusterState;
use crate::metrics::Metrics;

fn config() -> Cluster {
    Cluster {
        max_requests_per_connection: Some(1),
        idle_timeout: None,
        ..Cluster::fixed("c", [])
    }
}

fn frame(id: u32, body: &[u8]) -> Frame {
    let mut codec = CustomCodecFactory.new_codec(Side::Downstream, CodecOptions::default());
    let mut wire = request(id, 1, body);
    codec.decode(&mut wire).unwrap().unwrap()
}

fn waiter(original_id: u64) -> (Waiter, oneshot::Receiver<Outcome>) {
    let (tx, rx) = oneshot::channel();
    let w = Waiter {
        original_id,
        tx,
        response_mutation: None,
    };
    (w, rx)
}

#[tokio::test]
async fn a_request_racing_a_drained_connection_is_handed_back() {
    // A provider that accepts and never answers.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = Metrics::new();
    let cluster = ClusterState::new(config(), &metrics).unwrap();
    let spec = UpstreamSpec {
        addr: server.local_addr().unwrap(),
        connect_timeout: Duration::from_secs(1),
        codec: CustomCodecFactory.new_codec(Side::Upstream, CodecOptions::default()),
        correlation: Correlation::RequestId,
        cluster: cluster.metrics.clone(),
        listener: metrics.listener("l", "custom"),
        slot: cluster.reserve_connection().unwrap(),
        max_requests: cluster.config.max_requests_per_connection,
        idle_timeout: cluster.config.idle_timeout,
        generation: cluster.generation,
    };
    let conn = UpstreamConn::spawn(spec);
    let mut set_id = |f: &mut Frame, id: u64| {
        CustomCodecFactory
            .new_codec(Side::Upstream, CodecOptions::default())
            .set_request_id(f, id)
    };
    let (w1, _rx1) = waiter(7);
    assert!(
        conn.forward(frame(7, b"one"), Some(w1), &mut set_id)
            .is_ok()
    );
    assert!(conn.is_closed(), "the only request of its budget drains it");
    assert_eq!(conn.load().requests, 1);
    assert_eq!(cluster.metrics.cx_max_requests.get(), 1);

    let second = frame(8, b"two");
    let bytes = second.bytes.clone();
    let (w2, _rx2) = waiter(8);
    match conn.forward(second, Some(w2), &mut set_id) {
        Err(ForwardError::Closed(back)) => {
            let (f, w) = *back;
            assert_eq!(f.bytes, bytes, "the request comes back untouched");
            assert_eq!(w.map(|w| w.original_id), Some(8));
        }
        _ => panic!("a draining connection must hand the request back"),
    }
    assert_eq!(
        conn.load().requests,
        1,
        "the second request was not registered"
    );
    assert_eq!(cluster.metrics.cx_max_requests.get(), 1);
}
