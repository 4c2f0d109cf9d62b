//! The ADS stream and its reconnect loop.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::state::State;

/// First reconnect delay.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Largest reconnect delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Largest response accepted (xDS snapshots of big meshes exceed gRPC's 4 MiB default).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// What the admin side sees.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) connected: bool,
    pub(crate) status: serde_json::Value,
    pub(crate) last_error: Option<String>,
}

/// Runs forever: connect, stream, and on any failure reconnect after an exponential backoff
/// with jitter (250 ms doubling to 5 s; reset once a stream delivered a response).
pub(crate) async fn run(
    mut state: State,
    servers: Vec<(String, u16)>,
    connect_timeout: Duration,
    shared: Arc<Mutex<Shared>>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut attempt = 0usize;
    publish(&shared, &state, None);
    loop {
        let Some((host, port)) = servers.get(attempt % servers.len().max(1)).cloned() else {
            tracing::error!("no xDS server address");
            return;
        };
        attempt += 1;
        let mut got_response = false;
        let err = stream_once(
            &mut state,
            &host,
            port,
            connect_timeout,
            &shared,
            &mut got_response,
        )
        .await;
        state.metrics().set_connected(false);
        if got_response {
            backoff = BACKOFF_MIN;
        }
        tracing::warn!(server = %format!("{host}:{port}"), "xDS stream ended: {err}; retrying in ~{backoff:?}");
        set(&shared, |s| {
            s.connected = false;
            s.last_error = Some(err);
        });
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A delay in `[d/2, d]`.
fn jitter(d: Duration) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

fn set(shared: &Mutex<Shared>, f: impl FnOnce(&mut Shared)) {
    f(&mut shared.lock().unwrap_or_else(|e| e.into_inner()));
}

fn publish(shared: &Mutex<Shared>, state: &State, connected: Option<bool>) {
    let status = state.status();
    set(shared, |s| {
        s.status = status;
        if let Some(c) = connected {
            s.connected = c;
            if c {
                s.last_error = None;
            }
        }
    });
}

/// One connection and stream; returns why it ended.
async fn stream_once(
    state: &mut State,
    host: &str,
    port: u16,
    connect_timeout: Duration,
    shared: &Mutex<Shared>,
    got_response: &mut bool,
) -> String {
    let authority = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{authority}")) {
        Ok(e) => e
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10)),
        Err(e) => return format!("bad server address '{authority}': {e}"),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return format!("cannot connect: {e}"),
    };
    let (tx, rx) = mpsc::channel(64);
    for r in state.initial_requests() {
        if tx.send(r).await.is_err() {
            return "request channel closed".into();
        }
    }
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut inbound = match client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return format!("stream refused: {status}"),
    };
    tracing::info!(server = %authority, "xDS stream open");
    state.metrics().set_connected(true);
    publish(shared, state, Some(true));
    loop {
        match inbound.message().await {
            Ok(Some(resp)) => {
                *got_response = true;
                for req in state.handle(resp).await {
                    if tx.send(req).await.is_err() {
                        return "request channel closed".into();
                    }
                }
                publish(shared, state, None);
            }
            Ok(None) => return "closed by the server".into(),
            Err(status) => return format!("stream error: {status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full() {
        for _ in 0..200 {
            let j = jitter(Duration::from_millis(400));
            assert!(j >= Duration::from_millis(200) && j <= Duration::from_millis(400));
        }
    }
}
