// The signalling connection: WebSocket to the server that served this page,
// a bound version-4 Announce, the live node list, and signed PeerSetup
// frames in both directions. Received frames are handled one at a time, in
// order, so the replay guard sees them as the server sent them.

import { signSetup, verifySetup } from './setup.js';
import { ReplayGuard, announceFrame, boundAnnounceBytes, fromHex, normalizeAuthority, toHex } from './wire.js';

// Reconnect delays after the connection to the server is lost.
const MIN_RECONNECT_MS = 1000;
const MAX_RECONNECT_MS = 30000;
// Close code the server uses when the same key connected again elsewhere.
const CLOSE_REPLACED = 4002;

export class Signalling extends EventTarget {
  constructor(identity) {
    super();
    this.identity = identity;
    const secure = location.protocol === 'https:';
    this.url = `${secure ? 'wss' : 'ws'}://${location.host}/`;
    // The authority the announce is bound to, as the server normalises it.
    this.server = normalizeAuthority(location.host, secure ? 'wss' : 'ws');
    this.state = 'connecting';
    this.reason = '';
    this.nodes = new Map(); // idHex -> {idHex, name, client}
    this.guards = new Map(); // sender idHex -> ReplayGuard
    this.socket = null;
    this.reconnectMs = MIN_RECONNECT_MS;
    this.turn = null; // {username, password, ttl, port} once the server sent one
    this.inbound = Promise.resolve();
    this.outbound = Promise.resolve();
  }

  start() {
    this.setState('connecting', '');
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onmessage = (event) => {
      this.inbound = this.inbound.then(() => this.onFrame(event.data)).catch((error) => this.notice(String(error), 'error'));
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.nodes.clear();
      this.emit('nodes');
      if (event.code === CLOSE_REPLACED) {
        this.setState('offline', 'this key connected again elsewhere (another tab?); open the page with ?key=OTHER-NAME');
        return;
      }
      const seconds = Math.round(this.reconnectMs / 1000);
      this.setState('offline', `lost the server (code ${event.code}); retrying in ${seconds} s`);
      setTimeout(() => this.start(), this.reconnectMs);
      this.reconnectMs = Math.min(this.reconnectMs * 2, MAX_RECONNECT_MS);
    };
  }

  setState(state, reason) {
    this.state = state;
    this.reason = reason;
    this.emit('state');
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  notice(text, level = 'info') {
    this.emit('notice', { text, level });
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(frame);
  }

  requestList() {
    this.send('"ListIDsRequest"');
  }

  // Signs and sends `message` to `peerHex` as the next message of `attempt`.
  // Sends are chained so that frames leave in the order of their seq.
  sendSetup(peerHex, attempt, signer, message) {
    const peer = fromHex(peerHex, 32);
    const [idInit, idFollow] = this.identity.idHex < peerHex ? [this.identity.id, peer] : [peer, this.identity.id];
    const signed = signSetup({ identity: this.identity, session: signer.session, attempt, idInit, idFollow, message });
    this.outbound = this.outbound.then(async () => this.send(JSON.stringify({ PeerSetup: await signed })));
    return this.outbound;
  }

  async onFrame(text) {
    const frame = JSON.parse(text);
    const [kind, body] = typeof frame === 'string' ? [frame, null] : Object.entries(frame)[0];
    switch (kind) {
      case 'Challenge':
        return this.announce(body[1]);
      case 'SystemConfig':
        this.reconnectMs = MIN_RECONNECT_MS;
        return this.setState('online', '');
      case 'ListIDsReply':
        this.nodes.clear();
        body.forEach((info) => this.addNode(info));
        return this.emit('nodes');
      case 'PresenceNews':
        body.joined.forEach((info) => this.addNode(info));
        body.left.forEach((id) => this.nodes.delete(id.toLowerCase()));
        return this.emit('nodes');
      case 'PeerSetup':
        return this.onSetup(body);
      case 'NotConnected':
        return this.emit('not-connected', { idHex: body.toLowerCase() });
      case 'TurnCredentials':
        // flsignal's TURN service and a short-lived credential for it,
        // renewed before it expires; new connections use the newest.
        this.turn = body;
        return undefined;
      case 'Error':
        return this.notice(`server: ${body}`, 'error');
      default:
        return this.notice(`unknown frame from the server: ${kind}`);
    }
  }

  async announce(challengeHex) {
    const challenge = fromHex(challengeHex, 32);
    const bytes = boundAnnounceBytes(this.server, challenge, this.identity.id);
    const signature = await this.identity.sign(bytes);
    this.send(
      announceFrame({
        server: this.server,
        challengeHex,
        nodeIdHex: this.identity.idHex,
        // 64 characters stay well inside the server's 256-byte limit.
        name: `browser ${this.identity.name}`.slice(0, 64),
        signatureHex: toHex(signature),
      }),
    );
  }

  addNode(info) {
    const v3 = info && info.NodeInfoV3;
    if (!v3 || typeof v3.pubkey !== 'string') return;
    const idHex = v3.pubkey.toLowerCase();
    if (idHex === this.identity.idHex) return;
    this.nodes.set(idHex, { idHex, name: String(v3.name), client: String(v3.client) });
  }

  // A relayed setup frame: signature first, then freshness. Only frames
  // that pass both reach the peer.
  async onSetup(info) {
    let verified;
    try {
      verified = await verifySetup(info, this.identity.id);
    } catch (error) {
      return this.notice(`refused a setup message: ${error.message}`, 'error');
    }
    const { senderHex, auth, message } = verified;
    if (!this.guards.has(senderHex)) this.guards.set(senderHex, new ReplayGuard());
    let freshness;
    try {
      freshness = this.guards.get(senderHex).accept({ session: auth.sessionHex, generation: auth.generation, seq: auth.seq });
    } catch (error) {
      return this.notice(`refused a setup message from ${senderHex.slice(0, 12)}…: ${error.message}`, 'error');
    }
    this.emit('setup', { from: senderHex, message, freshness });
  }
}
