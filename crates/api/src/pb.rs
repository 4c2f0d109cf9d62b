//! Prost types generated from our Aeraki protos (`proto/`), and the embedded descriptor pool
//! (our protos + Envoy's bootstrap protos) used to read proto3 JSON.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// The serialized `FileDescriptorSet` built by `build.rs`.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));

/// The descriptor pool of every message we can read from JSON/YAML (decoded once).
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The set is produced by our own build script; failing to decode it is a build bug.
        DescriptorPool::decode(DESCRIPTOR_SET).unwrap_or_default()
    })
}

/// `aeraki.*` packages.
pub mod aeraki {
    /// `aeraki.meta_protocol_proxy.*`
    pub mod meta_protocol_proxy {
        /// `aeraki.meta_protocol_proxy.v1alpha`
        pub mod v1alpha {
            include!(concat!(
                env!("OUT_DIR"),
                "/prost/aeraki.meta_protocol_proxy.v1alpha.rs"
            ));
        }
        /// Route configuration.
        pub mod config {
            /// Route configuration.
            pub mod route {
                /// `aeraki.meta_protocol_proxy.config.route.v1alpha`
                pub mod v1alpha {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/prost/aeraki.meta_protocol_proxy.config.route.v1alpha.rs"
                    ));
                }
            }
        }
        /// L7 filter configs.
        pub mod filters {
            /// Router.
            pub mod router {
                /// `aeraki.meta_protocol_proxy.filters.router.v1alpha`
                pub mod v1alpha {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/prost/aeraki.meta_protocol_proxy.filters.router.v1alpha.rs"
                    ));
                }
            }
            /// Local rate limit.
            pub mod local_ratelimit {
                /// `aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha`
                pub mod v1alpha {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/prost/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.rs"
                    ));
                }
            }
            /// Global rate limit.
            pub mod ratelimit {
                /// `aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha`
                pub mod v1alpha {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/prost/aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha.rs"
                    ));
                }
            }
            /// Istio metadata exchange.
            pub mod metadata_exchange {
                /// `aeraki.meta_protocol_proxy.filters.metadata_exchange.v1alpha`
                pub mod v1alpha {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/prost/aeraki.meta_protocol_proxy.filters.metadata_exchange.v1alpha.rs"
                    ));
                }
            }
            /// Istio stats.
            pub mod istio_stats {
                /// `aeraki.meta_protocol_proxy.filters.istio_stats.v1alpha`
                pub mod v1alpha {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/prost/aeraki.meta_protocol_proxy.filters.istio_stats.v1alpha.rs"
                    ));
                }
            }
        }
    }
    /// `aeraki.meta_protocol.*`
    pub mod meta_protocol {
        /// `aeraki.meta_protocol.codec`: built-in codec configs.
        pub mod codec {
            include!(concat!(
                env!("OUT_DIR"),
                "/prost/aeraki.meta_protocol.codec.rs"
            ));
        }
    }
}
