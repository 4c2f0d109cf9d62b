//! The control plane's xDS server: Envoy v3 ADS (state-of-the-world and delta), Aeraki's plain
//! RDS service, per-node versions, ACK/NACK tracking and status.
