//! `decode_frame`: arbitrary bytes into every decoder a peer's bytes reach.

use tandem_core::protocol::{
    decode_awareness, decode_event, decode_frame as decode_ws, decode_state_vector, decode_update,
};
use tandem_core::{hocuspocus, preflight};

/// Feeds `data` to the y-websocket frame decoder, the Hocuspocus frame decoder, the custom
/// event decoder, and the update, state vector and awareness decoders on their own. None may
/// panic; libFuzzer's `-malloc_limit_mb` catches one that allocates beyond its limit.
/// What `decode_update` accepts, the preflight walk accepted.
pub fn decode_frame(data: &[u8]) {
    let _ = decode_ws(data);
    let _ = hocuspocus::decode_client_frame(data);
    if let Ok(json) = std::str::from_utf8(data) {
        let _ = decode_event(json);
    }
    let _ = decode_awareness(data);
    let _ = decode_state_vector(data);
    if decode_update(data).is_ok() {
        assert!(preflight::check_update(data).is_ok());
        // The nesting walk reads any update the preflight walk accepts, cycles and dangling
        // placements included.
        assert!(tandem_core::nesting::deepest_in(data).is_ok());
        assert!(tandem_core::protocol::ReceivedUpdate::decode(data).is_ok());
    }
}
