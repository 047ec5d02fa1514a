// A node's X25519 key, as flproto::x25519 computes it (libsodium's
// crypto_sign_ed25519_pk_to_curve25519 and …_sk_to_curve25519): the public
// key is the Montgomery form u = (1 + y) / (1 - y) mod 2^255 - 19 of the
// node ID's Edwards point, the secret key the clamped first half of
// SHA-512 of the Ed25519 seed. So a page can seal to any node knowing only
// its ID (docs/protocol.md, "One key per node").

const P = 2n ** 255n - 19n;
// The Edwards curve constant d = -121665 / 121666.
const D = mod(-121665n * inverse(121666n));

function mod(n) {
  const r = n % P;
  return r < 0n ? r + P : r;
}

function power(base, exponent) {
  let result = 1n;
  let b = mod(base);
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

function inverse(n) {
  return power(n, P - 2n);
}

function littleEndianToBigInt(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

function bigIntToLittleEndian(n) {
  const bytes = new Uint8Array(32);
  let rest = n;
  for (let i = 0; i < 32; i++) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytes;
}

// The X25519 public key (32 bytes) of the node ID `id` (32 bytes). Throws
// for what flproto refuses: an encoding that is not a curve point, and the
// identity point. Other small-order keys give an all-zero Diffie-Hellman
// result, which WebCrypto refuses when sealing.
export function x25519PublicOf(id) {
  if (!(id instanceof Uint8Array) || id.length !== 32) throw new Error('a node ID is 32 bytes');
  const encoded = littleEndianToBigInt(id);
  const y = encoded & ((1n << 255n) - 1n);
  const sign = encoded >> 255n;
  if (y >= P) throw new Error('node ID is not a valid Ed25519 public key');
  const y2 = (y * y) % P;
  const x2 = mod((y2 - 1n) * inverse(D * y2 + 1n));
  // x² must be a square (Euler's criterion), and x = 0 has no negative.
  const square = x2 === 0n || power(x2, (P - 1n) / 2n) === 1n;
  if (!square || (x2 === 0n && sign === 1n)) throw new Error('node ID is not a valid Ed25519 public key');
  if (y === 1n) throw new Error('node ID is not a valid Ed25519 public key');
  return bigIntToLittleEndian(mod((1n + y) * inverse(1n - y)));
}

// The X25519 secret scalar (32 bytes, clamped) of an Ed25519 seed.
export async function x25519SecretOf(seed) {
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-512', seed));
  const scalar = hash.slice(0, 32);
  scalar[0] &= 248;
  scalar[31] &= 127;
  scalar[31] |= 64;
  return scalar;
}

const PKCS8_X25519 = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20];

// A WebCrypto X25519 private key from its raw 32-byte scalar.
export function importX25519Secret(scalar) {
  const pkcs8 = new Uint8Array([...PKCS8_X25519, ...scalar]);
  return crypto.subtle.importKey('pkcs8', pkcs8, { name: 'X25519' }, false, ['deriveBits']);
}

export function importX25519Public(bytes) {
  return crypto.subtle.importKey('raw', bytes, { name: 'X25519' }, true, []);
}
