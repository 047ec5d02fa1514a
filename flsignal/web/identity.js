// The node key: Ed25519 from WebCrypto, kept in IndexedDB so the node ID
// survives reloads. The private key is not extractable; the public key is
// the node ID. `?key=NAME` picks another stored key, so two tabs of one
// browser profile can be two nodes.

import { toHex } from './wire.js';

const DB_NAME = 'flsignal';
const STORE = 'keys';

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
  constructor(name, keyPair, publicKey) {
    this.name = name;
    this.keyPair = keyPair;
    this.id = publicKey; // 32 bytes
    this.idHex = toHex(publicKey);
  }

  // The stored key called `name`, made on first use.
  static async load(name) {
    if (!globalThis.crypto || !crypto.subtle) {
      throw new Error('WebCrypto is not available: open this page over https:// or on localhost');
    }
    const db = await openDb();
    try {
      let keyPair = await request(db.transaction(STORE).objectStore(STORE).get(name));
      if (!keyPair) {
        keyPair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
        await request(db.transaction(STORE, 'readwrite').objectStore(STORE).put(keyPair, name));
      }
      return Identity.fromKeyPair(name, keyPair);
    } finally {
      db.close();
    }
  }

  static async fromKeyPair(name, keyPair) {
    const raw = new Uint8Array(await crypto.subtle.exportKey('raw', keyPair.publicKey));
    return new Identity(name, keyPair, raw);
  }

  // A key from a 32-byte seed (RFC 8032), for test vectors only.
  static async fromSeed(seed) {
    const pkcs8 = new Uint8Array([
      0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...seed,
    ]);
    const privateKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
    const jwk = await crypto.subtle.exportKey('jwk', privateKey);
    delete jwk.d;
    jwk.key_ops = ['verify'];
    const publicKey = await crypto.subtle.importKey('jwk', jwk, { name: 'Ed25519' }, true, ['verify']);
    return Identity.fromKeyPair('seed', { privateKey, publicKey });
  }

  async sign(bytes) {
    return new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, this.keyPair.privateKey, bytes));
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
