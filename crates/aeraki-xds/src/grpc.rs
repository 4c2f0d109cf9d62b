//! The SotW streams as served by [`XdsServer::serve`](crate::XdsServer::serve): gRPC framing
//! written here instead of by tonic's generated service, so that a response's shared resource
//! bytes ([`crate::encoded`]) go to HTTP/2 as they are. Tonic's encoder would copy every
//! response into a per-stream buffer that keeps the capacity of the largest response (the
//! whole CDS of a large mesh) for the life of the stream. Requests are still decoded by
//! tonic; every other method (delta, RDS fetch) goes to the generated service unchanged.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use http_body::Frame;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, Streaming};
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

use crate::encoded::Outgoing;
use crate::status::StreamKind;
use crate::stream::{self, Conn};
use crate::{MAX_REQUEST_BYTES, Shared, service::QUEUE, sotw};

/// Wraps a generated service and takes over its SotW streaming method (`method`, the full
/// gRPC path).
#[derive(Debug, Clone)]
pub(crate) struct SotwFast<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) kind: StreamKind,
    pub(crate) method: &'static str,
}

impl<S: NamedService> NamedService for SotwFast<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for SotwFast<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != self.method {
            let mut inner = self.inner.clone();
            return Box::pin(async move {
                std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                inner.call(request).await
            });
        }
        let response = self.start(request);
        Box::pin(std::future::ready(Ok(response)))
    }
}

impl<S> SotwFast<S> {
    fn start(&self, request: http::Request<Body>) -> http::Response<Body> {
        let encoding = request
            .headers()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap_or("?"));
        if let Some(encoding) = encoding.filter(|e| *e != "identity") {
            let status = Status::unimplemented(format!(
                "grpc-encoding: compressed requests ({encoding}) are not accepted"
            ));
            return status.into_http();
        }
        let peer = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|i| i.remote_addr());
        let mut codec = tonic_prost::ProstCodec::<DiscoveryResponse, DiscoveryRequest>::default();
        let requests = Streaming::new_request(
            codec.decoder(),
            request.into_body(),
            None,
            Some(MAX_REQUEST_BYTES),
        );
        let conn = Conn::new(self.shared.clone(), self.kind, peer);
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(stream::run::<sotw::Sotw>(conn, requests, tx));
        let body = Body::new(Frames {
            rx,
            next: None,
            done: false,
        });
        let mut response = http::Response::new(body);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response
    }
}

/// The response body: each response as its head and its shared resources, then the trailers
/// (`grpc-status` 0 when the stream task ends, the error's status when it refuses a request).
struct Frames {
    rx: mpsc::Receiver<Result<Outgoing, Status>>,
    next: Option<Bytes>,
    done: bool,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(bytes) = self.next.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let status = match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(Ok(out)) => {
                if !out.resources.is_empty() {
                    self.next = Some(out.resources);
                }
                return Poll::Ready(Some(Ok(Frame::data(out.head))));
            }
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        if status.add_header(&mut trailers).is_err() {
            trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.next.is_none()
    }
}
