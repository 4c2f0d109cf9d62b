//! A small in-test ADS server (state of the world): holds a snapshot per type, pushes it to
//! every stream that subscribed when its version or the subscribed names change, and records
//! every request (ACKs and NACKs included). Each server runs on its own thread and runtime,
//! so `kill` is a real process-like death: every socket closes at once.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

type Snapshot = HashMap<String, (String, Vec<(String, Any)>)>;

#[derive(Default)]
struct Inner {
    snapshot: Mutex<Snapshot>,
    requests: Mutex<Vec<DiscoveryRequest>>,
    nonce: Mutex<u64>,
}

/// The control plane's data; survives server restarts.
#[derive(Clone)]
pub struct Ads {
    inner: Arc<Inner>,
    changed: watch::Sender<u64>,
}

impl Default for Ads {
    fn default() -> Self {
        Self::new()
    }
}

impl Ads {
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            changed: watch::channel(0).0,
        }
    }

    /// Replaces the resources of `type_url` (named) under `version` and pushes them.
    pub fn set(&self, type_url: &str, version: &str, resources: Vec<(String, Any)>) {
        self.inner
            .snapshot
            .lock()
            .unwrap()
            .insert(type_url.to_owned(), (version.to_owned(), resources));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<DiscoveryRequest> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Waits (bounded: 10 s) for a request matching `pred` and returns it.
    pub async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&DiscoveryRequest) -> bool,
    ) -> DiscoveryRequest {
        for _ in 0..1000 {
            if let Some(r) = self.requests().into_iter().find(|r| pred(r)) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no request {what}; got {:#?}", self.requests());
    }

    /// Serves on `addr` (port 0 allowed) on a thread of its own.
    pub fn start(&self, addr: SocketAddr) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let svc = Svc { ads: self.clone() };
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = bind_retrying(addr).await;
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let serve = tonic::transport::Server::builder()
                    .add_service(AggregatedDiscoveryServiceServer::new(svc))
                    .serve_with_incoming(TcpListenerStream::new(listener));
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime aborts every connection task: the peer sees the sockets close.
            rt.shutdown_background();
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

async fn bind_retrying(addr: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr}");
}

/// A running server; [`Server::kill`] or drop stops it.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn kill(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

struct Svc {
    ads: Ads,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Svc {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let ads = self.ads.clone();
        tokio::spawn(async move {
            let mut changed = ads.changed.subscribe();
            // type → names subscribed; type → (version, names) last sent.
            let mut subscribed: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut sent: HashMap<String, (String, Vec<String>)> = HashMap::new();
            loop {
                tokio::select! {
                    req = inbound.message() => match req {
                        Ok(Some(r)) => {
                            ads.inner.requests.lock().unwrap().push(r.clone());
                            subscribed.insert(r.type_url.clone(), r.resource_names.clone());
                        }
                        _ => return,
                    },
                    r = changed.changed() => if r.is_err() { return },
                }
                let snapshot = ads.inner.snapshot.lock().unwrap().clone();
                for (t, names) in &subscribed {
                    let Some((version, resources)) = snapshot.get(t) else {
                        continue;
                    };
                    let key = (version.clone(), names.clone());
                    if sent.get(t) == Some(&key) {
                        continue;
                    }
                    sent.insert(t.clone(), key);
                    let resources = resources
                        .iter()
                        .filter(|(n, _)| names.is_empty() || names.contains(n))
                        .map(|(_, a)| a.clone())
                        .collect();
                    let nonce = {
                        let mut n = ads.inner.nonce.lock().unwrap();
                        *n += 1;
                        n.to_string()
                    };
                    let resp = DiscoveryResponse {
                        version_info: version.clone(),
                        resources,
                        type_url: t.clone(),
                        nonce,
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("delta"))
    }
}
