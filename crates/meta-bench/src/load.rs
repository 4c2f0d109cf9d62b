//! The load generator behind `meta-bench run`.
//!
//! Each connection has a sending task and a receiving task (a [`Client`] split in two); the
//! sender tells the receiver each request's id and *intended* send time before writing it.
//!
//! - **Closed loop** (default): each connection keeps `pipeline` requests in flight; latency is
//!   measured from the actual send.
//! - **Open loop** (`rate`): the total rate is spread evenly over the connections, each on a
//!   fixed schedule (staggered so the sends interleave), whatever the responses do. A request
//!   that came due while its sender was blocked writing (the system under test not reading) is
//!   timed from when the schedule says it should have been sent, so such stalls show up in the
//!   latency (coordinated-omission correction), and all overdue requests are then written at
//!   once. A request that came due while the sender slept is timed from its actual send: the
//!   only delay there is the timer's ~1 ms resolution, which is not the server's.
//!
//! Only requests *intended* within the measured window (after `warmup`, before the end) are
//! counted. Successful responses go into an HDR histogram (microseconds, 3 significant digits);
//! failures are counted by [`CallError::kind`]. A request without a response `timeout` after
//! being sent counts as `timeout`; one lost with its connection counts as that error's kind.
//! A connection that fails is not reopened.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::{
    CallError, Client, ClientOptions, ClientReader, ClientWriter, Protocol, RequestBatch,
    padded_name,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Protocol spoken.
    pub protocol: Protocol,
    /// `host:port` of the server or proxy.
    pub target: String,
    /// Connections opened.
    pub connections: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it (same load).
    pub warmup: Duration,
    /// Open loop at this many requests per second in total; `None`: closed loop.
    pub rate: Option<f64>,
    /// Request name argument padded to this many bytes (`"world"` when smaller).
    pub payload: usize,
    /// Closed loop: requests in flight per connection (at least 1).
    pub pipeline: usize,
    /// Method, Dubbo interface and version, and the per-request timeout.
    pub client: ClientOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            protocol: Protocol::THRIFT,
            target: "127.0.0.1:9090".into(),
            connections: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            rate: None,
            payload: 0,
            pipeline: 1,
            client: ClientOptions::default(),
        }
    }
}

/// Live counters, for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Responses received so far (measured or not, success or error).
    pub responses: AtomicU64,
    /// Failures so far.
    pub errors: AtomicU64,
}

/// The result of a run; `--json` prints it as one object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Protocol spoken (`dubbo`, `thrift-framed-binary`, ...).
    pub protocol: String,
    /// Target address.
    pub target: String,
    /// Connections requested.
    pub connections: usize,
    /// Requests in flight per connection (closed loop).
    pub pipeline: usize,
    /// Requested total rate (open loop), `null` for closed loop.
    pub rate: Option<f64>,
    /// Request payload size asked for.
    pub payload: usize,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Successful requests in the window.
    pub requests: u64,
    /// Failed requests in the window.
    pub errors: u64,
    /// Failures by kind (`timeout`, `transport`, `dubbo_status_70`, `thrift_app_1`, ...).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Successful requests per second.
    pub rps: f64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Latency percentiles, µs.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest latency.
    pub max_us: u64,
}

impl Report {
    /// A human-readable summary (several lines).
    pub fn summary(&self) -> String {
        let mode = match self.rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => format!("closed loop, {} in flight per connection", self.pipeline),
        };
        let mut s = format!(
            "{} -> {}: {} connections, {mode}, payload {} B, {:.1} s\n\
             requests {}  errors {}  throughput {:.0} req/s\n\
             latency us: mean {:.0}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
            self.protocol,
            self.target,
            self.connections,
            self.payload,
            self.duration_s,
            self.requests,
            self.errors,
            self.rps,
            self.mean_us,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
        );
        for (k, n) in &self.errors_by_kind {
            s.push_str(&format!("errors {k}: {n}\n"));
        }
        s
    }
}

/// Per-connection results.
struct Stats {
    hist: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

/// The schedule shared by all connections.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

impl Window {
    fn measured(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// Runs the load and returns the report. `progress` is updated as responses arrive. All
/// connections are opened before the clock starts; one that cannot be opened counts as an
/// error of kind `connect_<kind>`.
pub async fn run(opts: LoadOptions, progress: Arc<Progress>) -> anyhow::Result<Report> {
    // 1 µs .. 1 h at 3 significant digits.
    let template = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let opts = Arc::new(opts);
    let mut connects = Vec::new();
    for _ in 0..opts.connections.max(1) {
        let opts = Arc::clone(&opts);
        connects.push(tokio::spawn(async move {
            Client::connect_with(opts.protocol, opts.target.as_str(), opts.client.clone()).await
        }));
    }
    let mut clients = Vec::new();
    for c in connects {
        clients.push(c.await?);
    }
    let start = Instant::now();
    let w = Window {
        start,
        measure_from: start + opts.warmup,
        end: start + opts.warmup + opts.duration,
    };
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let stats = Stats {
            hist: Histogram::new_from(&template),
            errors: BTreeMap::new(),
        };
        tasks.push(tokio::spawn(connection(
            c,
            client,
            stats,
            Arc::clone(&opts),
            w,
            Arc::clone(&progress),
        )));
    }
    let mut hist = Histogram::new_from(&template);
    let mut errors = BTreeMap::new();
    for t in tasks {
        match t.await {
            Ok(s) => {
                let _ = hist.add(&s.hist);
                for (k, n) in s.errors {
                    *errors.entry(k).or_insert(0) += n;
                }
            }
            Err(e) => *errors.entry(format!("task: {e}")).or_insert(0) += 1,
        }
    }
    let duration_s = opts.duration.as_secs_f64();
    let requests = hist.len();
    Ok(Report {
        protocol: opts.protocol.to_string(),
        target: opts.target.clone(),
        connections: opts.connections,
        pipeline: opts.pipeline.max(1),
        rate: opts.rate,
        payload: opts.payload,
        duration_s,
        requests,
        errors: errors.values().sum(),
        errors_by_kind: errors,
        rps: if duration_s > 0.0 {
            requests as f64 / duration_s
        } else {
            0.0
        },
        mean_us: if requests > 0 { hist.mean() } else { 0.0 },
        p50_us: hist.value_at_quantile(0.5),
        p90_us: hist.value_at_quantile(0.9),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        max_us: hist.max(),
    })
}

async fn connection(
    c: usize,
    client: Result<Client, CallError>,
    mut stats: Stats,
    opts: Arc<LoadOptions>,
    w: Window,
    progress: Arc<Progress>,
) -> Stats {
    let client = match client {
        Ok(cl) => cl,
        Err(e) => {
            *stats
                .errors
                .entry(format!("connect_{}", e.kind()))
                .or_insert(0) += 1;
            progress.errors.fetch_add(1, Ordering::Relaxed);
            return stats;
        }
    };
    let (writer, reader) = client.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(opts.pipeline.max(1)));
    let sender = tokio::spawn(send_loop(
        c,
        Arc::clone(&opts),
        w,
        writer,
        tx,
        Arc::clone(&permits),
    ));
    receive_loop(&opts, w, reader, rx, &permits, &progress, &mut stats).await;
    // Only now may the write half close (it lives in the sender task's output).
    sender.abort();
    drop(sender);
    stats
}

/// Writes requests (see [`send_requests`]), then hands the write half back so it stays open
/// until the receive loop is done: closing it (FIN) with answers in flight would lose them at a
/// proxy that closes on a downstream FIN (Envoy, meta-proxy).
async fn send_loop(
    c: usize,
    opts: Arc<LoadOptions>,
    w: Window,
    mut writer: ClientWriter,
    tx: mpsc::UnboundedSender<(u64, Instant)>,
    permits: Arc<Semaphore>,
) -> ClientWriter {
    send_requests(c, opts, w, &mut writer, tx, permits).await;
    writer
}

/// Writes requests on schedule (open loop) or as permits free up (closed loop).
async fn send_requests(
    c: usize,
    opts: Arc<LoadOptions>,
    w: Window,
    writer: &mut ClientWriter,
    tx: mpsc::UnboundedSender<(u64, Instant)>,
    permits: Arc<Semaphore>,
) {
    // The request is encoded once; each send only rewrites its id (see `RequestTemplate`).
    let Ok(template) = writer.template(&padded_name("world", opts.payload), &[], false) else {
        return;
    };
    let mut batch = RequestBatch::default();
    let push = |writer: &mut ClientWriter, batch: &mut RequestBatch, at: Instant| -> bool {
        match writer.push(&template, batch) {
            Ok(id) => tx.send((id, at)).is_ok(),
            Err(_) => false,
        }
    };
    match opts.rate.filter(|r| *r > 0.0) {
        Some(rate) => {
            let n = opts.connections.max(1) as f64;
            let interval = Duration::from_secs_f64(n / rate);
            let mut next = w.start + Duration::from_secs_f64(c as f64 / rate);
            // Since when the sender has been idle, waiting for its timer.
            let mut idle_since = w.start;
            while next < w.end {
                tokio::time::sleep_until(next).await;
                let now = Instant::now();
                batch.clear();
                while next <= now && next < w.end {
                    // Due while we slept: late only by the timer's resolution (~1 ms), not by
                    // the system under test, so timed from now. Due while a write was blocked:
                    // timed from the schedule (coordinated-omission correction).
                    let at = if next >= idle_since { now } else { next };
                    if !push(&mut *writer, &mut batch, at) {
                        return;
                    }
                    next += interval;
                }
                if writer.write_batch(&batch).await.is_err() {
                    return;
                }
                idle_since = Instant::now();
            }
        }
        None => loop {
            let permit = tokio::select! {
                p = permits.acquire() => p,
                _ = tokio::time::sleep_until(w.end) => return,
            };
            let Ok(permit) = permit else { return };
            permit.forget();
            let now = Instant::now();
            if now >= w.end {
                return;
            }
            batch.clear();
            if !push(&mut *writer, &mut batch, now) {
                return;
            }
            while let Ok(p) = permits.try_acquire() {
                p.forget();
                if !push(&mut *writer, &mut batch, now) {
                    return;
                }
            }
            if writer.write_batch(&batch).await.is_err() {
                return;
            }
        },
    }
}

/// Reads responses until every request sent has an outcome (or the grace period ends).
async fn receive_loop(
    opts: &LoadOptions,
    w: Window,
    mut reader: ClientReader,
    mut rx: mpsc::UnboundedReceiver<(u64, Instant)>,
    permits: &Semaphore,
    progress: &Progress,
    stats: &mut Stats,
) {
    let timeout = opts.client.timeout.unwrap_or(Duration::from_secs(5));
    let grace_end = w.end + timeout;
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut sender_done = false;
    let mut sweep = tokio::time::interval(Duration::from_millis(100));
    let fail = |stats: &mut Stats, kind: String, at: Instant| {
        progress.errors.fetch_add(1, Ordering::Relaxed);
        if w.measured(at) {
            *stats.errors.entry(kind).or_insert(0) += 1;
        }
    };
    loop {
        if sender_done && pending.is_empty() {
            return;
        }
        tokio::select! {
            got = rx.recv(), if !sender_done => match got {
                Some((id, at)) => { pending.insert(id, at); }
                None => sender_done = true,
            },
            resp = reader.recv() => {
                while let Ok((id, at)) = rx.try_recv() {
                    pending.insert(id, at);
                }
                match resp {
                    Ok(resp) => {
                        let Some(at) = pending.remove(&resp.id) else { continue };
                        permits.add_permits(1);
                        progress.responses.fetch_add(1, Ordering::Relaxed);
                        match resp.result {
                            Ok(_) if w.measured(at) => {
                                let us = at.elapsed().as_micros().max(1);
                                stats.hist.saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
                            }
                            Ok(_) => {}
                            Err(e) => fail(stats, e.kind(), at),
                        }
                    }
                    Err(e) => {
                        let kind = e.kind();
                        for (_, at) in pending.drain() {
                            fail(stats, kind.clone(), at);
                        }
                        return;
                    }
                }
            },
            _ = sweep.tick() => {
                let now = Instant::now();
                let expired: Vec<u64> = pending
                    .iter()
                    .filter(|(_, at)| now.saturating_duration_since(**at) > timeout)
                    .map(|(id, _)| *id)
                    .collect();
                for id in expired {
                    if let Some(at) = pending.remove(&id) {
                        permits.add_permits(1);
                        fail(stats, CallError::Timeout(timeout).kind(), at);
                    }
                }
                if now >= grace_end {
                    for (_, at) in pending.drain() {
                        fail(stats, "timeout".into(), at);
                    }
                    return;
                }
            }
        }
    }
}
