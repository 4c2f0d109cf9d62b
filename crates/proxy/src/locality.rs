//! Locality priorities, computed client-side: in a locality-aware cluster
//! ([`meta_config::Cluster::locality_lb`]) each endpoint's priority comes from how close its
//! locality is to the proxy's own (`node.locality`), Istio's default order:
//!
//! | priority | endpoint locality                                   |
//! |----------|-----------------------------------------------------|
//! | 0        | same region, zone and sub-zone                      |
//! | 1        | same region and zone                                |
//! | 2        | same region                                         |
//! | 3 + i    | region `to` of the i-th failover entry whose `from` is the proxy's region |
//! | 3 + n    | anything else (n: failover entries for the proxy's region; no locality) |
//!
//! Without a proxy locality (or with an empty region), or in a cluster that is not
//! locality-aware, endpoint priorities stay as given (EDS `priority`). The existing priority
//! failover (`health::hosts`) then moves traffic to the next level when a level has no
//! non-ejected endpoint.

use meta_config::{Cluster, Endpoint, Locality, LocalityLb};

/// The priority of an endpoint at `ep` seen from a proxy at `node`.
pub(crate) fn priority(node: &Locality, lb: &LocalityLb, ep: Option<&Locality>) -> u32 {
    let failover = || lb.failover.iter().filter(|(from, _)| *from == node.region);
    let other = 3 + failover().count() as u32;
    let Some(ep) = ep else {
        return other;
    };
    if ep.region != node.region {
        return failover()
            .position(|(_, to)| *to == ep.region)
            .map_or(other, |i| 3 + i as u32);
    }
    match (ep.zone == node.zone, ep.sub_zone == node.sub_zone) {
        (true, true) => 0,
        (true, false) => 1,
        (false, _) => 2,
    }
}

/// Rewrites the priorities of `endpoints` when the cluster is locality-aware and the proxy
/// has a locality with a region; otherwise leaves them as given.
pub(crate) fn assign(node: Option<&Locality>, lb: Option<&LocalityLb>, endpoints: &mut [Endpoint]) {
    let (Some(node), Some(lb)) = (node.filter(|n| !n.region.is_empty()), lb) else {
        return;
    };
    for e in endpoints {
        e.priority = priority(node, lb, e.locality.as_ref());
    }
}

/// [`assign`] over every cluster.
pub(crate) fn assign_all(node: Option<&Locality>, clusters: &mut [Cluster]) {
    for c in clusters {
        assign(node, c.locality_lb.as_ref(), &mut c.endpoints);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> Locality {
        let mut p = s.split('/').map(str::to_owned);
        Locality {
            region: p.next().unwrap_or_default(),
            zone: p.next().unwrap_or_default(),
            sub_zone: p.next().unwrap_or_default(),
        }
    }

    fn ep(l: Option<&str>, priority: u32) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
            weight: 1,
            priority,
            locality: l.map(loc),
        }
    }

    fn failover(pairs: &[(&str, &str)]) -> LocalityLb {
        LocalityLb {
            failover: pairs
                .iter()
                .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn istio_default_order() {
        let node = loc("r1/z1/s1");
        let lb = LocalityLb::default();
        let p = |l: Option<&str>| priority(&node, &lb, l.map(loc).as_ref());
        assert_eq!(p(Some("r1/z1/s1")), 0);
        assert_eq!(p(Some("r1/z1/s2")), 1);
        assert_eq!(p(Some("r1/z1")), 1);
        assert_eq!(p(Some("r1/z2/s1")), 2);
        assert_eq!(p(Some("r2/z1/s1")), 3);
        assert_eq!(p(None), 3, "no locality: anything else");
    }

    #[test]
    fn failover_region_comes_after_the_own_region_before_others() {
        let node = loc("r1/z1");
        let lb = failover(&[("r2", "r9"), ("r1", "r3"), ("r1", "r4")]);
        let p = |l: &str| priority(&node, &lb, Some(&loc(l)));
        assert_eq!(p("r1/z1"), 0);
        assert_eq!(p("r1/z2"), 2);
        assert_eq!(p("r3/z1"), 3, "first failover target of r1");
        assert_eq!(p("r4/z7"), 4, "second failover target of r1");
        assert_eq!(p("r2/z1"), 5, "any other region after the targets");
        assert_eq!(p("r9/z1"), 5, "r2's target means nothing to a proxy in r1");
        assert_eq!(priority(&node, &lb, None), 5);
    }

    #[test]
    fn no_proxy_locality_or_no_marker_keeps_given_priorities() {
        let mut eps = vec![ep(Some("r1/z1"), 7), ep(Some("r2/z1"), 0)];
        assign(None, Some(&LocalityLb::default()), &mut eps);
        assert_eq!((eps[0].priority, eps[1].priority), (7, 0));
        assign(Some(&loc("")), Some(&LocalityLb::default()), &mut eps);
        assert_eq!((eps[0].priority, eps[1].priority), (7, 0), "empty region");
        assign(Some(&loc("r1/z1")), None, &mut eps);
        assert_eq!(
            (eps[0].priority, eps[1].priority),
            (7, 0),
            "not locality-aware"
        );
        assign(Some(&loc("r2/z1")), Some(&LocalityLb::default()), &mut eps);
        assert_eq!((eps[0].priority, eps[1].priority), (3, 0), "computed");
    }
}
