// The node key: Ed25519, kept in IndexedDB so the node ID survives
// reloads. `?key=NAME` picks another stored key, so two tabs of one browser
// profile can be two nodes.
//
// A key is stored as its 32-byte seed: the X25519 key that opens sealed
// setups is derived from the seed (flproto::x25519), which a WebCrypto key
// made non-extractable would never give back. Keys made before sealed
// setups are stored as such non-extractable key pairs: they still sign,
// but cannot open sealed setups, so the page neither advertises nor uses
// them with such a key (`opensSealed` false) and says so in its log.

import { toHex } from './wire.js';
import { importX25519Secret, x25519PublicOf, x25519SecretOf } from './x25519.js';

const DB_NAME = 'flsignal';
const STORE = 'keys';
const PKCS8_ED25519 = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function openDb() {
  const open = indexedDB.open(DB_NAME, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE);
  return request(open);
}

export class Identity {
  // `x25519` is {privateKey, publicBytes}, or null for an old key.
  constructor(name, signingKey, publicKey, x25519) {
    this.name = name;
    this.signingKey = signingKey;
    this.id = publicKey; // 32 bytes
    this.idHex = toHex(publicKey);
    this.x25519 = x25519;
    this.opensSealed = x25519 !== null;
  }

  // The stored key called `name`, made on first use.
  static async load(name) {
    if (!globalThis.crypto || !crypto.subtle) {
      throw new Error('WebCrypto is not available: open this page over https:// or on localhost');
    }
    const db = await openDb();
    try {
      let stored = await request(db.transaction(STORE).objectStore(STORE).get(name));
      if (!stored) {
        stored = { seed: crypto.getRandomValues(new Uint8Array(32)) };
        await request(db.transaction(STORE, 'readwrite').objectStore(STORE).put(stored, name));
      }
      if (stored.seed) return Identity.fromSeed(stored.seed, name);
      // A key pair from before sealed setups.
      const raw = new Uint8Array(await crypto.subtle.exportKey('raw', stored.publicKey));
      return new Identity(name, stored.privateKey, raw, null);
    } finally {
      db.close();
    }
  }

  // The key of a 32-byte seed (RFC 8032 secret key).
  static async fromSeed(seed, name = 'seed') {
    const pkcs8 = new Uint8Array([...PKCS8_ED25519, ...seed]);
    // Extractable only to read the public key from it; the seed is stored
    // next to it anyway.
    const signingKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
    const jwk = await crypto.subtle.exportKey('jwk', signingKey);
    const publicKey = Uint8Array.from(atob(jwk.x.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
    const x25519 = {
      privateKey: await importX25519Secret(await x25519SecretOf(seed)),
      publicBytes: x25519PublicOf(publicKey),
    };
    return new Identity(name, signingKey, publicKey, x25519);
  }

  async sign(bytes) {
    return new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, this.signingKey, bytes));
  }
}

// Whether `signature` over `bytes` is valid for the node ID `publicKey`.
export async function verifySignature(publicKey, bytes, signature) {
  try {
    const key = await crypto.subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
    return await crypto.subtle.verify({ name: 'Ed25519' }, key, signature, bytes);
  } catch {
    return false; // not a valid public key
  }
}
