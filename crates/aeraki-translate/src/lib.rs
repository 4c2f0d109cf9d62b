//! Translates the resolved [`aeraki_model::MeshView`] into Envoy v3 xDS resources: MetaProtocol
//! listeners, RDS routes and EDS clusters for meta-proxy, and native dubbo_proxy/thrift_proxy
//! listeners for stock Envoy.
