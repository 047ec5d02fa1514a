//! The selected ICE candidate pair of a connection, in words: what `flnode
//! status` shows as the path (host, srflx, relay) and its round-trip time.

use std::time::Instant;

use webrtc::peer_connection::{PeerConnection, RTCStatsReport, RTCStatsReportEntry, StatsSelector};

/// One direction of the selected pair and how fast it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathInfo {
    /// `local_type local_addr -> remote_type remote_addr`.
    pub path: String,
    /// The pair's current round-trip time, from ICE consent checks.
    pub rtt_ms: f64,
}

/// Reads the selected pair from the connection's statistics.
pub async fn selected_path(connection: &dyn PeerConnection) -> Option<PathInfo> {
    let report = connection.get_stats(Instant::now(), StatsSelector::None).await;
    from_report(&report)
}

fn from_report(report: &RTCStatsReport) -> Option<PathInfo> {
    let pair_id = report.iter().find_map(|entry| match entry {
        RTCStatsReportEntry::Transport(transport) if !transport.selected_candidate_pair_id.is_empty() => {
            Some(transport.selected_candidate_pair_id.clone())
        }
        _ => None,
    })?;
    let RTCStatsReportEntry::IceCandidatePair(pair) = report.get(&pair_id)? else {
        return None;
    };
    // Candidate entries are keyed by the pair's candidate IDs with a prefix
    // (`RTCLocalIceCandidate_…`, `RTCRemoteIceCandidate_…`) in webrtc 0.21.
    let describe = |prefix: &str, id: &str| match report.get(&format!("{prefix}{id}")).or_else(|| report.get(id)) {
        Some(RTCStatsReportEntry::LocalCandidate(c) | RTCStatsReportEntry::RemoteCandidate(c)) => format!(
            "{} {}:{}",
            c.candidate_type,
            c.address.as_deref().unwrap_or("?"),
            c.port
        ),
        // The one kind of candidate never signalled, so never listed: a
        // peer-reflexive one, learnt from the peer's connectivity check
        // before its trickled candidate arrived.
        _ if prefix.starts_with("RTCRemote") => "prflx ?".to_owned(),
        _ => "?".to_owned(),
    };
    Some(PathInfo {
        path: format!(
            "{} -> {}",
            describe("RTCLocalIceCandidate_", &pair.local_candidate_id),
            describe("RTCRemoteIceCandidate_", &pair.remote_candidate_id)
        ),
        rtt_ms: pair.current_round_trip_time * 1000.0,
    })
}
