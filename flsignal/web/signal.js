// The signalling connection: WebSocket to the server that served this page,
// a bound version-4 Announce, the live node list, and signed (and, to
// nodes that open them, sealed) PeerSetup frames in both directions.
// Received frames are handled one at a time, in order, so the replay guard
// sees them as the server sent them.
//
// Sealing follows flproto::peer_setup's rules: seal to every node unless
// its node info lacks the advertisement or its signed session says it
// opens plain setups only; refuse a plain setup signed under a sealing
// session (a server hiding this page's advertisement: a downgrade); with
// "Sealed setups only", seal to everyone and refuse every plain setup.

import { openSealed, signSetup, verifySetup } from './setup.js';
import {
  ReplayGuard,
  SEALED_SETUP_SCHEME,
  announceFrame,
  boundAnnounceBytes,
  fromHex,
  normalizeAuthority,
  sessionOpensSealed,
  toHex,
} from './wire.js';

// Reconnect delays after the connection to the server is lost.
const MIN_RECONNECT_MS = 1000;
const MAX_RECONNECT_MS = 30000;
// Close code the server uses when the same key connected again elsewhere.
const CLOSE_REPLACED = 4002;

export class Signalling extends EventTarget {
  constructor(identity, { requireSealed = false } = {}) {
    super();
    this.identity = identity;
    // The page setting "Sealed setups only".
    this.requireSealed = requireSealed;
    // What each node is known to open: 'plain', 'listed' (its node info
    // says sealed) or 'signed' (its signed session says sealed); nothing
    // known yet is no entry.
    this.peerOpens = new Map();
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

  // 'plain' (this page's key cannot open sealed setups), 'require' or
  // 'prefer'.
  get policy() {
    if (!this.identity.opensSealed) return 'plain';
    return this.requireSealed ? 'require' : 'prefer';
  }

  // Whether what this page sends `peerHex` now is sealed.
  seals(peerHex) {
    if (this.policy === 'plain') return false;
    return this.policy === 'require' || this.peerOpens.get(peerHex) !== 'plain';
  }

  // Signs (and seals, see `seals`) and sends `message` to `peerHex` as the
  // next message of `attempt`. Sends are chained so that frames leave in
  // the order of their seq.
  sendSetup(peerHex, attempt, signer, message) {
    const peer = fromHex(peerHex, 32);
    const [idInit, idFollow] = this.identity.idHex < peerHex ? [this.identity.id, peer] : [peer, this.identity.id];
    const sealTo = this.seals(peerHex) ? peer : null;
    const signed = signSetup({ identity: this.identity, session: signer.session, attempt, idInit, idFollow, message, sealTo });
    this.outbound = this.outbound
      .then(async () => this.send(JSON.stringify({ PeerSetup: await signed })))
      .catch((error) => this.notice(`a setup message was not sent: ${error.message}`, 'error'));
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
        opensSealed: this.identity.opensSealed,
      }),
    );
  }

  addNode(info) {
    const v3 = info && info.NodeInfoV3;
    if (!v3 || typeof v3.pubkey !== 'string') return;
    const idHex = v3.pubkey.toLowerCase();
    if (idHex === this.identity.idHex) return;
    const sealed = v3.sealed_setup === SEALED_SETUP_SCHEME;
    this.nodes.set(idHex, { idHex, name: String(v3.name), client: String(v3.client), sealed });
    // A signed session outweighs what a server's list says.
    if (this.peerOpens.get(idHex) !== 'signed') this.peerOpens.set(idHex, sealed ? 'listed' : 'plain');
  }

  // A relayed setup frame: signature first, then freshness, then what it
  // carries: opened if sealed, refused if plain where sealed ones are due.
  // Only frames that pass all of it reach the peer.
  async onSetup(info) {
    let verified;
    try {
      verified = await verifySetup(info, this.identity.id);
    } catch (error) {
      return this.notice(`refused a setup message: ${error.message}`, 'error');
    }
    const { senderHex, auth } = verified;
    const refuse = (why) => this.notice(`refused a setup message from ${senderHex.slice(0, 12)}…: ${why}`, 'error');
    if (!this.guards.has(senderHex)) this.guards.set(senderHex, new ReplayGuard());
    let freshness;
    try {
      freshness = this.guards.get(senderHex).accept({ session: auth.sessionHex, generation: auth.generation, seq: auth.seq });
    } catch (error) {
      return refuse(error.message);
    }
    const peerSeals = sessionOpensSealed(auth.session);
    this.peerOpens.set(senderHex, peerSeals ? 'signed' : 'plain');
    let { message } = verified;
    if (message.kind === 'Sealed') {
      try {
        message = await openSealed(this.identity, verified);
      } catch (error) {
        return refuse(error.message);
      }
    } else if (this.policy === 'require') {
      return refuse('plain setup message refused: this page requires sealed setups ("Sealed setups only")');
    } else if (this.policy === 'prefer' && peerSeals) {
      refuse(
        'plain setup message from a peer whose signature says it opens sealed ones: refused as a downgrade ' +
          '(the signalling server may be hiding that this page opens them)',
      );
      return this.emit('downgraded', { from: senderHex });
    }
    this.emit('setup', { from: senderHex, message, freshness });
  }
}
