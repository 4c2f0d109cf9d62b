//! A stand-alone rate-limit service for tests, until `aeraki ratelimit` exists:
//!
//! ```text
//! cargo run -p aeraki-ratelimit --example rls -- --config FILE_OR_DIR --listen 127.0.0.1:8081 \
//!     [--redis 127.0.0.1:6379]
//! ```
//!
//! Serves Envoy's RLS v3 gRPC API with envoyproxy/ratelimit's YAML config; counters in Redis
//! when `--redis` is given, else in memory. Prints `listening on ADDR` once it accepts.

use std::sync::Arc;

use aeraki_ratelimit::{Config, RedisBackend, RedisOptions, Service};

struct Args {
    config: String,
    listen: String,
    redis: Option<String>,
}

fn args() -> Result<Args, String> {
    let (mut config, mut listen, mut redis) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--config" => config = Some(value),
            "--listen" => listen = Some(value),
            "--redis" => redis = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config is required")?,
        listen: listen.unwrap_or_else(|| "127.0.0.1:8081".into()),
        redis,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let mut builder = Service::builder(config);
    if let Some(url) = &args.redis {
        builder = builder.backend(Arc::new(RedisBackend::new(RedisOptions::new(url.clone()))?));
    }
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    aeraki_ratelimit::serve(listener, builder.build()).await?;
    Ok(())
}
