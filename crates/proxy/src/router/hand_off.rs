//! Handing a request to a shared upstream connection, trying another when the one picked
//! stops taking requests at that moment.

use std::net::SocketAddr;

use meta_protocol::{Codec, Frame, LocalReply};

use super::Exchange;
use crate::upstream::{ForwardError, Waiter};

/// Times one attempt may get its request back from a connection that stopped taking requests
/// (and try another) before it fails as a reset.
const MAX_HAND_BACKS: u32 = 8;

/// Why a request could not be handed to an upstream connection.
pub(super) enum HandOff {
    /// The cluster's `max_connections` allows no new connection and none is open to share.
    Overflow(LocalReply),
    /// The connection refused or lost it.
    Forward(ForwardError),
}

impl Exchange {
    /// Hands the request to a shared connection to `addr`. When the connection picked stops
    /// taking requests at that very moment (another request used up its
    /// `max_requests_per_connection`, it went idle or closed), the request comes back and goes
    /// to another one, opened if needed under `max_connections`.
    pub(super) fn hand_off(
        &self,
        addr: SocketAddr,
        mut frame: Frame,
        mut waiter: Option<Waiter>,
        codec: &mut dyn Codec,
    ) -> Result<(), HandOff> {
        let l = &self.conn.l;
        let options = self.rt.codec_options();
        let mut handed_back = 0;
        loop {
            let up = l
                .upstream(&self.cluster, addr, self.variant, options)
                .map_err(|o| HandOff::Overflow(o.reply(&self.cluster.config.name)))?;
            match up.forward(frame, waiter, &mut |f, id| codec.set_request_id(f, id)) {
                Err(ForwardError::Closed(back)) if handed_back < MAX_HAND_BACKS => {
                    (frame, waiter) = *back;
                    handed_back += 1;
                }
                other => return other.map_err(HandOff::Forward),
            }
        }
    }
}
