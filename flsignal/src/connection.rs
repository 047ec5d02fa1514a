//! The driver of one WebSocket: feeds what arrives into the session state
//! machine and carries out the actions it returns. Everything here is I/O;
//! the decisions are in `flproto::session`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use flproto::announce::AnnouncePolicy;
use flproto::close::CloseReason;
use flproto::message::ServerMessage;
use flproto::session::{Action, DatagramVerdict, Inbound, ServerSession};
use flproto::ChallengeNonce;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Bytes, Message, Utf8Bytes};
use tracing::Instrument;

use crate::datagram_queue::DatagramInbox;
use crate::hub::{Delivery, Hub, Outbound, PeerHandle, RelayOutcome};
use crate::metrics::Metrics;
use crate::outgoing::{next_datagram, Pending};
use crate::upgrade::ServerSocket;
use crate::Shared;

mod write;

pub use write::WRITE_BATCH;

/// Characters of a refused frame shown in its debug line: enough to tell
/// what it was, never a whole 64 KiB message in the log.
pub const LOGGED_FRAME_CHARS: usize = 120;

/// Why the driver stops.
enum Flow {
    Continue,
    Stop,
}

struct Connection {
    socket: ServerSocket,
    shared: Arc<Shared>,
    session: ServerSession,
    handle: PeerHandle,
    inbox: flume::Receiver<Outbound>,
    /// Relay frames for the node, once it was granted the datagram relay;
    /// written only when no signalling frame waits.
    datagrams: Option<DatagramInbox>,
    /// Where the connection comes from as limits see it, for the announce
    /// rate per source.
    client: IpAddr,
    actions: Vec<Action>,
}

/// Runs one WebSocket to its end. `client` is the client's address as
/// limits see it (the peer, or whom a trusted proxy named); it goes into
/// every log line of the connection.
pub async fn run(socket: ServerSocket, shared: Arc<Shared>, policy: AnnouncePolicy, client: IpAddr) {
    shared.hub.metrics.sessions.inc();
    let (outbox, inbox) = flume::bounded(shared.config.outbound_queue);
    let handle = PeerHandle::new(shared.hub.next_conn_id(), outbox);
    let mut actions = Vec::new();
    let session = ServerSession::new(
        shared.session_config(),
        policy,
        ChallengeNonce::random(),
        Instant::now(),
        &mut actions,
    );
    let mut connection = Connection {
        socket,
        shared: shared.clone(),
        session,
        handle,
        inbox,
        datagrams: None,
        client,
        actions,
    };
    connection
        .drive()
        .instrument(tracing::debug_span!("connection", %client))
        .await;
    if let Some(id) = connection.session.registered_node() {
        shared.hub.leave(&id, connection.handle.conn);
    }
    if connection.datagrams.is_some() {
        shared.hub.metrics.datagrams.nodes.dec();
    }
    shared.hub.metrics.sessions.dec();
}

impl Connection {
    async fn drive(&mut self) {
        if let Flow::Stop = self.apply(None).await {
            return;
        }
        // The timer and the two waits live as long as the connection: made
        // afresh for every frame, each frame would register and drop a
        // timer, which a busy relay pays for on every message.
        let kill = self.handle.kill.clone();
        let killed = kill.killed();
        let cancelled = self.shared.shutdown.clone().cancelled_owned();
        let timer = tokio::time::sleep_until(self.deadline());
        tokio::pin!(killed, cancelled, timer);
        // Each wait ends once; a finished future is never polled again.
        let (mut kill_pending, mut shutdown_pending) = (true, true);
        loop {
            let deadline = self.deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            let flow = tokio::select! {
                inbound = self.socket.next() => self.on_socket(inbound).await,
                Ok(outbound) = self.inbox.recv_async() => self.write(Pending::Signal(outbound)).await,
                frame = next_datagram(&self.datagrams) => self.write(Pending::Datagram(frame)).await,
                reason = &mut killed, if kill_pending => {
                    kill_pending = false;
                    self.session.close(reason, &mut self.actions);
                    self.apply(None).await
                }
                () = &mut timer => {
                    self.session.on_timer(Instant::now(), &mut self.actions);
                    self.apply(None).await
                }
                () = &mut cancelled, if shutdown_pending => {
                    shutdown_pending = false;
                    self.session.close(CloseReason::Shutdown, &mut self.actions);
                    self.apply(None).await
                }
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    /// When the session wants its timer next.
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.session.next_deadline())
    }

    async fn on_socket(&mut self, inbound: Option<Result<Message, tungstenite::Error>>) -> Flow {
        let now = Instant::now();
        let text = match inbound {
            None | Some(Ok(Message::Close(_))) => return Flow::Stop,
            Some(Ok(Message::Text(text))) => {
                self.session
                    .on_inbound(Inbound::Text(text.as_str()), now, &mut self.actions);
                Some(text)
            }
            Some(Ok(Message::Binary(frame))) => {
                self.on_binary(frame, now);
                None
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                self.session.on_inbound(Inbound::Control, now, &mut self.actions);
                None
            }
            Some(Err(tungstenite::Error::Capacity(_))) => {
                self.session.on_inbound(Inbound::TooLarge, now, &mut self.actions);
                None
            }
            Some(Err(_)) => return Flow::Stop,
        };
        let partial = self.socket.get_ref().get_ref().partial_message_since();
        self.session.on_partial_message(partial);
        self.apply(text.map(|text| (text, now))).await
    }

    /// A binary frame: a relay frame from a node granted the relay (handed
    /// on, or dropped and counted), or the end of any other connection.
    fn on_binary(&mut self, frame: Bytes, now: Instant) {
        let verdict = self.session.on_binary(&frame, now, &mut self.actions);
        let (Some(verdict), Some(from)) = (verdict, self.session.node_id()) else {
            return;
        };
        match verdict {
            DatagramVerdict::Forward { to } => self.shared.datagrams.forward(&self.shared.hub, &from, &to, frame),
            DatagramVerdict::Drop(reason) => self.shared.hub.metrics.datagrams.drop(reason.label()),
        }
    }

    /// Carries out the session's pending actions. `frame` is the text that
    /// produced them, for a verbatim relay. Carrying out an action can
    /// produce more (a relay dropped over the sender's share is a strike,
    /// which may close the session): those are carried out in turn.
    ///
    /// The frames a round of several actions sends leave together, with
    /// one flush: the handshake reply (system configuration and first node
    /// list) is one write, not one per frame.
    async fn apply(&mut self, frame: Option<(Utf8Bytes, Instant)>) -> Flow {
        let mut actions = std::mem::take(&mut self.actions);
        let mut flow = Flow::Continue;
        while !actions.is_empty() {
            let several = actions.len() > 1;
            if several {
                self.socket.get_mut().cork();
            }
            for action in &mut actions {
                flow = self.apply_one(action, frame.as_ref()).await;
                if let Flow::Stop = flow {
                    break;
                }
            }
            actions.clear();
            if let (true, Flow::Continue) = (several, &flow) {
                flow = self.flush().await;
            }
            if let Flow::Stop = flow {
                break;
            }
            // Keep both allocations: what the last round produced is next.
            std::mem::swap(&mut actions, &mut self.actions);
        }
        self.actions = actions;
        self.actions.clear();
        flow
    }

    /// Carries out one action. It is lent, not given: the future of a
    /// connection's driver lives as long as the connection, and an action
    /// held by value in it would cost every idle connection its size.
    async fn apply_one(&mut self, action: &mut Action, frame: Option<&(Utf8Bytes, Instant)>) -> Flow {
        let hub: &Hub = &self.shared.hub;
        match action {
            Action::Send(message) => self.send_text(message.to_json().into()).await,
            // Taken out, not copied: a list is up to ~20 KB.
            Action::SendListing(list) => self.send_text(std::mem::take(list).into()).await,
            Action::Register(node) => {
                if !self.shared.admit_announce(self.client, Instant::now()) {
                    // Counted with the refusal this produces.
                    self.session.refuse_registration(&mut self.actions);
                    return Flow::Continue;
                }
                Metrics::count(&hub.metrics.handshakes, "ok");
                if self.session.relay_granted() {
                    let (outbox, inbox) = self.shared.datagrams.queue();
                    self.handle.datagrams = Some(outbox);
                    self.datagrams = Some(inbox);
                    hub.metrics.datagrams.nodes.inc();
                }
                let list = hub.register(node, self.handle.clone());
                tracing::debug!(node = %node.id(), bound = node.bound, "registered");
                self.session.on_registered(list, &mut self.actions);
                Flow::Continue
            }
            Action::SendTurnCredentials => match (self.session.node_id(), &self.shared.turn_issuer) {
                (Some(id), Some(issuer)) => self.send_text(issuer.message_for(&id).to_json().into()).await,
                _ => Flow::Continue,
            },
            Action::SendNodeList => match self.session.node_id().and_then(|id| hub.node_list(&id)) {
                Some(list) => self.send_text(list.into()).await,
                None => Flow::Continue,
            },
            Action::Relay { to, notify } => {
                let (Some((text, arrived)), Some(from)) = (frame, self.session.node_id()) else {
                    return Flow::Continue;
                };
                let share = self.shared.config.fairness.relay_share();
                match hub.relay(self.handle.conn, &from, to, text.clone(), *arrived, share) {
                    RelayOutcome::NotConnected if *notify => {
                        self.send_text(ServerMessage::NotConnected(*to).to_json().into()).await
                    }
                    RelayOutcome::Dropped(Delivery::OverShare) => {
                        self.session.on_relay_over_share(Instant::now(), &mut self.actions);
                        Flow::Continue
                    }
                    _ => Flow::Continue,
                }
            }
            Action::Refuse(refusal) => {
                let family = match refusal {
                    flproto::session::Refusal::Announce(_) | flproto::session::Refusal::SourceRateLimited => {
                        &hub.metrics.handshakes
                    }
                    _ => &hub.metrics.refusals,
                };
                Metrics::count(family, refusal.label());
                tracing::debug!(
                    reason = refusal.label(),
                    node = ?self.session.registered_node(),
                    frame = frame.map(|(text, _)| text.as_str().chars().take(LOGGED_FRAME_CHARS).collect::<String>()),
                    "refused"
                );
                self.send_text(ServerMessage::Error(refusal.to_string()).to_json().into())
                    .await
            }
            Action::Ping => self.send(Message::Ping(Default::default())).await,
            Action::Close(reason) => {
                Metrics::count(&hub.metrics.closes, reason.label());
                tracing::debug!(reason = reason.label(), node = ?self.session.registered_node(), "closing");
                let frame = CloseFrame {
                    code: CloseCode::from(reason.code()),
                    reason: reason.label().into(),
                };
                let _ = self.send(Message::Close(Some(frame))).await;
                Flow::Stop
            }
        }
    }
}
