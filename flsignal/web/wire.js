// The bytes this page signs and the frames it sends, exactly as flproto
// defines them (shared/src/announce.rs, shared/src/setup_auth.rs,
// docs/protocol.md). Pure functions: no sockets, no WebCrypto.

const encoder = new TextEncoder();

export const BOUND_PROTOCOL_VERSION = 4;
export const BOUND_ANNOUNCE_CONTEXT = encoder.encode('flsignal/announce/v4\0');
export const SETUP_CONTEXT = encoder.encode('flnode/setup/v1\0');
export const MAX_SERVER_NAME_LEN = 270;

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function fromHex(text, length) {
  if (typeof text !== 'string' || text.length !== length * 2 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new Error(`expected ${length * 2} hex characters`);
  }
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function u16(n) {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, n);
  return b;
}

function u32(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

function u64(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

// `host:port` in lower case with the scheme's default port filled in, as
// flproto::announce::normalize_authority does.
export function normalizeAuthority(authority, scheme) {
  const a = authority.trim().toLowerCase();
  const colon = a.lastIndexOf(':');
  const port = colon >= 0 ? a.slice(colon + 1) : '';
  const hasPort = colon >= 0 && /^[0-9]+$/.test(port) && !a.endsWith(']');
  if (hasPort) return a;
  return `${a}:${scheme === 'wss' || scheme === 'https' ? 443 : 80}`;
}

// The bytes a version-4 announce signs.
export function boundAnnounceBytes(server, challenge, nodeId) {
  const name = encoder.encode(server).slice(0, MAX_SERVER_NAME_LEN);
  return concat([BOUND_ANNOUNCE_CONTEXT, u16(name.length), name, challenge, nodeId]);
}

// The sealed-setup scheme a node that opens sealed setups advertises in its
// node info (flproto::node_info::SEALED_SETUP_SCHEME).
export const SEALED_SETUP_SCHEME = 1;

export function announceFrame({ server, challengeHex, nodeIdHex, name, signatureHex, opensSealed = false }) {
  const info = { name, client: 'browser', pubkey: nodeIdHex, modules: '' };
  if (opensSealed) info.sealed_setup = SEALED_SETUP_SCHEME;
  return JSON.stringify({
    Announce: {
      version: BOUND_PROTOCOL_VERSION,
      challenge: challengeHex,
      node_info: { NodeInfoV3: info },
      signature: signatureHex,
      server,
    },
  });
}

// A setup message as {kind, payload}: kind is 'Init', 'Offer', 'Answer',
// 'IceCandidate' or 'Sealed'; payload the SDP, candidate or sealed
// (base64) text ('' for Init).
const KIND_CODE = { Init: 0, Offer: 1, Answer: 2, IceCandidate: 3, Sealed: 4 };

export function encodeSetupMessage({ kind, payload }) {
  return kind === 'Init' ? 'Init' : { [kind]: payload };
}

export function decodeSetupMessage(message) {
  if (message === 'Init') return { kind: 'Init', payload: '' };
  if (message && typeof message === 'object') {
    const keys = Object.keys(message);
    if (keys.length === 1 && keys[0] in KIND_CODE && typeof message[keys[0]] === 'string') {
      return { kind: keys[0], payload: message[keys[0]] };
    }
  }
  throw new Error('not a setup message');
}

// The signed header: context, id_init, id_follow, sender, session,
// generation (u64 BE), seq (u32 BE). A sealed message's associated data.
export function setupHeaderBytes({ idInit, idFollow, sender, session, generation, seq }) {
  return concat([SETUP_CONTEXT, idInit, idFollow, sender, session, u64(generation), u32(seq)]);
}

// The bytes a setup signature covers: the header, kind (u8), payload
// length (u32 BE), payload (UTF-8).
export function setupSignedBytes({ idInit, idFollow, sender, session, generation, seq, message }) {
  const payload = encoder.encode(message.payload);
  return concat([
    setupHeaderBytes({ idInit, idFollow, sender, session, generation, seq }),
    new Uint8Array([KIND_CODE[message.kind]]),
    u32(payload.length),
    payload,
  ]);
}

// A node that opens sealed setups starts its session with these 4 bytes
// (flproto::setup_message::SEALING_SESSION_TAG); the signature covers them.
export const SEALING_SESSION_TAG = encoder.encode('seal');

export function sessionOpensSealed(session) {
  return SEALING_SESSION_TAG.every((byte, i) => session[i] === byte);
}

// A random session, tagged if this node opens sealed setups and never
// tagged otherwise (flproto::setup_message::SessionId::from_entropy).
export function newSession(opensSealed, entropy = crypto.getRandomValues(new Uint8Array(8))) {
  const session = Uint8Array.from(entropy);
  if (opensSealed) session.set(SEALING_SESSION_TAG);
  else if (sessionOpensSealed(session)) session[0] ^= 0xff;
  return session;
}

// The sending side, one per page load: a random session and clock-based
// generations that grow across reloads (flproto::setup_auth::SetupSigner).
export class SetupSigner {
  constructor(session = newSession(false)) {
    this.session = session;
    this.newestGeneration = 0;
  }

  // A new connection attempt: {generation, nextSeq}.
  nextAttempt(unixMillis = Date.now()) {
    this.newestGeneration = Math.max(unixMillis, this.newestGeneration + 1);
    return { generation: this.newestGeneration, nextSeq: 0 };
  }
}

// The receiving side, one per peer (flproto::setup_auth::ReplayGuard).
// Returns 'new-session', 'new-attempt' or 'same-attempt', or throws.
export class ReplayGuard {
  constructor() {
    this.newest = null;
  }

  accept({ session, generation, seq }) {
    let freshness;
    if (this.newest === null) {
      freshness = 'new-session';
    } else if (generation < this.newest.generation) {
      throw new Error(`stale setup message: generation ${generation} is older than ${this.newest.generation}`);
    } else if (generation === this.newest.generation) {
      if (session !== this.newest.session || seq <= this.newest.seq) {
        throw new Error(`replayed setup message: generation ${generation} seq ${seq} is not after seq ${this.newest.seq}`);
      }
      freshness = 'same-attempt';
    } else {
      freshness = session === this.newest.session ? 'new-attempt' : 'new-session';
    }
    this.newest = { session, generation, seq };
    return freshness;
  }
}

// The `auth` object of a received PeerSetup, checked for shape. Generations
// beyond 2^53 cannot be represented exactly here and are refused.
export function parseAuth(auth) {
  if (!auth || typeof auth !== 'object') throw new Error('unsigned setup message (no auth field)');
  const { session, generation, seq, signature } = auth;
  if (!Number.isSafeInteger(generation) || generation < 0) throw new Error('bad generation');
  if (!Number.isInteger(seq) || seq < 0 || seq > 0xffffffff) throw new Error('bad seq');
  return { session: fromHex(session, 8), sessionHex: session.toLowerCase(), generation, seq, signature: fromHex(signature, 64) };
}
