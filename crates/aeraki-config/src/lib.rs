//! Reads the YAML users already write (Istio ServiceEntry/DestinationRule/VirtualService/
//! WorkloadEntry, Aeraki MetaRouter/ApplicationProtocol, Redis CRDs, Kubernetes Service and
//! EndpointSlice), validates it as strictly as Aeraki's webhook, resolves it into the
//! [`aeraki_model::MeshView`], and watches config sources for changes.
