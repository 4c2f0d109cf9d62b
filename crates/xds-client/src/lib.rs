//! meta-proxy's xDS client: subscribes over ADS (LDS, CDS, RDS, EDS), converts resources to the
//! protobuf-free config model and applies them live to the engine; NACKs what it cannot honour.
