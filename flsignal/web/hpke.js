// HPKE (RFC 9180) in base mode for one suite, on WebCrypto alone:
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM — the construction
// flproto::seal uses (the `hpke` crate). HKDF's Extract and Expand are
// written out with HMAC-SHA256, because WebCrypto's HKDF does both in one
// step and HPKE needs them apart. One message per context (sequence 0), so
// the nonce is the base nonce.

import { importX25519Public } from './x25519.js';

const encoder = new TextEncoder();
const KEM_SUITE = concat([encoder.encode('KEM'), i2osp(0x0020, 2)]);
const HPKE_SUITE = concat([encoder.encode('HPKE'), i2osp(0x0020, 2), i2osp(0x0001, 2), i2osp(0x0002, 2)]);
const VERSION_LABEL = encoder.encode('HPKE-v1');
const HASH_LEN = 32;
const KEY_LEN = 32;
const NONCE_LEN = 12;
const MODE_BASE = 0x00;

export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function i2osp(n, length) {
  const bytes = new Uint8Array(length);
  for (let i = length - 1, rest = n; i >= 0; i--, rest >>= 8) bytes[i] = rest & 0xff;
  return bytes;
}

async function hmac(key, data) {
  // HMAC pads a short key with zeros, so the empty salt HKDF starts from
  // is 32 zero bytes (WebCrypto refuses empty HMAC keys).
  const raw = key.length ? key : new Uint8Array(HASH_LEN);
  const imported = await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', imported, data));
}

function extract(salt, ikm) {
  return hmac(salt, ikm);
}

async function expand(prk, info, length) {
  const blocks = [];
  let previous = new Uint8Array(0);
  for (let i = 1; blocks.length * HASH_LEN < length; i++) {
    previous = await hmac(prk, concat([previous, info, new Uint8Array([i])]));
    blocks.push(previous);
  }
  return concat(blocks).slice(0, length);
}

function labeledExtract(suite, salt, label, ikm) {
  return extract(salt, concat([VERSION_LABEL, suite, encoder.encode(label), ikm]));
}

function labeledExpand(suite, prk, label, info, length) {
  return expand(prk, concat([i2osp(length, 2), VERSION_LABEL, suite, encoder.encode(label), info]), length);
}

async function sharedSecret(dh, enc, recipientPublic) {
  const prk = await labeledExtract(KEM_SUITE, new Uint8Array(0), 'eae_prk', dh);
  return labeledExpand(KEM_SUITE, prk, 'shared_secret', concat([enc, recipientPublic]), HASH_LEN);
}

async function keySchedule(shared, info) {
  const empty = new Uint8Array(0);
  const pskIdHash = await labeledExtract(HPKE_SUITE, empty, 'psk_id_hash', empty);
  const infoHash = await labeledExtract(HPKE_SUITE, empty, 'info_hash', info);
  const context = concat([new Uint8Array([MODE_BASE]), pskIdHash, infoHash]);
  const secret = await labeledExtract(HPKE_SUITE, shared, 'secret', empty);
  const key = await labeledExpand(HPKE_SUITE, secret, 'key', context, KEY_LEN);
  const nonce = await labeledExpand(HPKE_SUITE, secret, 'base_nonce', context, NONCE_LEN);
  return { key: await crypto.subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt', 'decrypt']), nonce };
}

async function diffieHellman(privateKey, publicBytes) {
  // WebCrypto refuses an all-zero result (a small-order public key), as
  // RFC 9180 requires.
  const publicKey = await importX25519Public(publicBytes);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: 'X25519', public: publicKey }, privateKey, 256));
}

// Seals `plaintext` to the X25519 public key `recipientPublic` (32 bytes):
// {enc, ciphertext}. `ephemeral` ({privateKey, publicBytes}) is for test
// vectors; normally a fresh key is made.
export async function sealBase({ recipientPublic, info, aad, plaintext, ephemeral = null }) {
  let eph = ephemeral;
  if (!eph) {
    const pair = await crypto.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']);
    eph = { privateKey: pair.privateKey, publicBytes: new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey)) };
  }
  const dh = await diffieHellman(eph.privateKey, recipientPublic);
  const { key, nonce } = await keySchedule(await sharedSecret(dh, eph.publicBytes, recipientPublic), info);
  const ciphertext = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad }, key, plaintext));
  return { enc: eph.publicBytes, ciphertext };
}

// Opens what was sealed to this key pair ({privateKey, publicBytes});
// throws if it does not open.
export async function openBase({ recipient, enc, info, aad, ciphertext }) {
  const dh = await diffieHellman(recipient.privateKey, enc);
  const { key, nonce } = await keySchedule(await sharedSecret(dh, enc, recipient.publicBytes), info);
  return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad }, key, ciphertext));
}
