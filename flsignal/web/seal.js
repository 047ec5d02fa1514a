// Sealed setup messages, exactly as flproto::seal makes them: HPKE to the
// receiver's X25519 key (its node ID's Montgomery form), `info`
// "flnode/sealed-setup/v1", the signed header as associated data, and a
// plaintext of kind (1 byte), payload length (u32 big-endian), payload and
// zeros up to a size class. On the wire: {"Sealed": base64(enc ‖ ciphertext)}.

import { openBase, sealBase } from './hpke.js';
import { x25519PublicOf } from './x25519.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export const SEAL_INFO = encoder.encode('flnode/sealed-setup/v1');
// The sizes a sealed plaintext is padded to (flproto::seal::PADDED_SIZES).
export const PADDED_SIZES = [1024, 4 * 1024, 16 * 1024, 44 * 1024];
const INNER_HEADER_LEN = 5;
const ENC_LEN = 32;
const TAG_LEN = 16;
// The longest sealed text opened: the largest class in base64.
const MAX_SEALED_TEXT = Math.ceil((ENC_LEN + PADDED_SIZES[PADDED_SIZES.length - 1] + TAG_LEN) / 3) * 4;
const KIND_CODE = { Init: 0, Offer: 1, Answer: 2, IceCandidate: 3 };
const KINDS = ['Init', 'Offer', 'Answer', 'IceCandidate'];

function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function fromBase64(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new Error('sealed text is not base64');
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

// The plaintext of `message` ({kind, payload}), padded to its size class.
export function pad({ kind, payload }) {
  if (!(kind in KIND_CODE)) throw new Error(`a ${kind} message cannot be sealed`);
  const bytes = encoder.encode(payload);
  const size = PADDED_SIZES.find((s) => s >= bytes.length + INNER_HEADER_LEN);
  if (!size) throw new Error(`a ${bytes.length}-byte payload is too large to seal`);
  const plaintext = new Uint8Array(size);
  plaintext[0] = KIND_CODE[kind];
  new DataView(plaintext.buffer).setUint32(1, bytes.length);
  plaintext.set(bytes, INNER_HEADER_LEN);
  return plaintext;
}

export function unpad(plaintext) {
  if (plaintext.length < INNER_HEADER_LEN) throw new Error('sealed message opened but is malformed: too short');
  const kind = KINDS[plaintext[0]];
  const length = new DataView(plaintext.buffer, plaintext.byteOffset).getUint32(1);
  if (!kind) throw new Error('sealed message opened but is malformed: unknown kind');
  if (length > plaintext.length - INNER_HEADER_LEN) throw new Error('sealed message opened but is malformed: payload length beyond the message');
  if (plaintext.subarray(INNER_HEADER_LEN + length).some((byte) => byte !== 0)) {
    throw new Error('sealed message opened but is malformed: padding is not zeros');
  }
  const payload = decoder.decode(plaintext.subarray(INNER_HEADER_LEN, INNER_HEADER_LEN + length));
  if (kind === 'Init' && payload) throw new Error('sealed message opened but is malformed: Init with a payload');
  return { kind, payload };
}

// Seals `message` to the node `recipientId` (32 bytes) under `header` (the
// signed header's bytes): the text of a Sealed message.
export async function sealSetup({ recipientId, header, message, ephemeral = null }) {
  const { enc, ciphertext } = await sealBase({
    recipientPublic: x25519PublicOf(recipientId),
    info: SEAL_INFO,
    aad: header,
    plaintext: pad(message),
    ephemeral,
  });
  const sealed = new Uint8Array(enc.length + ciphertext.length);
  sealed.set(enc);
  sealed.set(ciphertext, enc.length);
  return toBase64(sealed);
}

// Opens the text of a Sealed message with this node's X25519 key pair
// (identity.x25519) under `header`: {kind, payload}. Throws why not.
export async function openSetup({ recipient, header, text }) {
  if (text.length > MAX_SEALED_TEXT) throw new Error('sealed text is longer than any padded message');
  const bytes = fromBase64(text);
  const padded = bytes.length - ENC_LEN - TAG_LEN;
  if (!PADDED_SIZES.includes(padded)) throw new Error(`sealed message of ${bytes.length} bytes is not the size of any padding class`);
  let plaintext;
  try {
    plaintext = await openBase({
      recipient,
      enc: bytes.subarray(0, ENC_LEN),
      info: SEAL_INFO,
      aad: header,
      ciphertext: bytes.subarray(ENC_LEN),
    });
  } catch {
    throw new Error("sealed message does not open with this node's key (sealed to another node, or under another header)");
  }
  return unpad(plaintext);
}
