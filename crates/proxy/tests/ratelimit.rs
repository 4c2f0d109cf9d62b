//! Rate-limit filters built from the listener config: enforced on real connections, kept
//! (with their bucket state) across RDS and unchanged-filter LDS updates, rebuilt when their
//! config changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use meta_config::{FilterConfig, Listener, LocalRateLimit, LocalRateLimitCondition, RouteConfig};
use meta_proxy_engine::ListenerChange;

fn bucket(max: u32) -> meta_config::TokenBucket {
    meta_config::TokenBucket {
        max_tokens: max,
        tokens_per_fill: max,
        fill_interval: Duration::from_secs(3600),
    }
}

/// cmd 10: its own bucket of 2; anything else: the listener-wide bucket of 5.
fn local(stat_prefix: &str) -> FilterConfig {
    FilterConfig::LocalRateLimit(LocalRateLimit {
        stat_prefix: stat_prefix.into(),
        token_bucket: Some(bucket(5)),
        conditions: vec![LocalRateLimitCondition {
            matchers: vec![cmd_is("10")],
            token_bucket: bucket(2),
        }],
    })
}

fn limited_proxy(stat_prefix: &str) -> meta_config::MetaProtocolProxy {
    let mut p = proxy(vec![route("all", vec![], to("a"))]);
    p.filters = vec![local(stat_prefix), FilterConfig::Router];
    p
}

async fn successes(c: &mut Client, cmd: u16, n: u32) -> usize {
    let mut ok = 0;
    for i in 0..n {
        let (err, body) = c.call(1000 + i, cmd, b"x").await;
        if err {
            assert!(
                body.contains("meta protocol local rate limit: request"),
                "{body}"
            );
        } else {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_from_config_survives_unrelated_updates() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (engine, addr) = start(bootstrap(limited_proxy("svc"), vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        assert_eq!(successes(&mut c, 10, 10).await, 2);
        assert_eq!(successes(&mut c, 11, 3).await, 3);
        let m = |result: &str| {
            metric(
                &engine,
                &format!(
                    "meta_protocol_local_rate_limit_total{{listener=\"l\",stat_prefix=\"svc\",result=\"{result}\"}}"
                ),
            )
        };
        assert_eq!((m("ok"), m("rate_limited")), (5.0, 8.0));

        // RDS: the buckets keep their state.
        let routes = RouteConfig {
            name: "rc2".into(),
            routes: vec![route("moved", vec![], to("a"))],
        };
        assert!(engine.update_routes("l", routes.clone()));
        assert_eq!(successes(&mut c, 11, 3).await, 2, "3 + 2 = the 5 of the bucket");

        // LDS with the same filters but other routes: updated in place, buckets kept.
        let mut p = limited_proxy("svc");
        p.route_config = RouteConfig {
            name: "rc3".into(),
            routes: vec![route("again", vec![], to("a"))],
        };
        let l = Listener {
            name: "l".into(),
            address: "127.0.0.1:0".parse().unwrap(),
            proxy: p,
        };
        assert_eq!(
            engine.apply_listener(l).await.unwrap(),
            ListenerChange::UpdatedInPlace
        );
        assert_eq!(successes(&mut c, 10, 3).await, 0);
        assert_eq!(successes(&mut c, 11, 3).await, 0);

        // LDS with a changed filter config: new, full buckets.
        let l = Listener {
            name: "l".into(),
            address: "127.0.0.1:0".parse().unwrap(),
            proxy: limited_proxy("svc2"),
        };
        assert_eq!(
            engine.apply_listener(l).await.unwrap(),
            ListenerChange::UpdatedInPlace
        );
        assert_eq!(successes(&mut c, 10, 10).await, 2);
    })
    .await;
}
