// Signing and checking PeerSetup frames (flproto::setup_auth): a frame the
// server relays can be neither forged nor replayed, and the DTLS
// fingerprint inside a signed SDP ties the WebRTC connection to node keys.

import { verifySignature } from './identity.js';
import { decodeSetupMessage, encodeSetupMessage, fromHex, parseAuth, setupSignedBytes, toHex } from './wire.js';

// The PeerSetup body (without the {"PeerSetup": …} wrapper) for `message`,
// signed by `identity` as the next message of `attempt`.
export async function signSetup({ identity, session, attempt, idInit, idFollow, message }) {
  const seq = attempt.nextSeq;
  attempt.nextSeq += 1;
  const bytes = setupSignedBytes({
    idInit,
    idFollow,
    sender: identity.id,
    session,
    generation: attempt.generation,
    seq,
    message,
  });
  const signature = await identity.sign(bytes);
  return {
    id_init: toHex(idInit),
    id_follow: toHex(idFollow),
    message: encodeSetupMessage(message),
    auth: { session: toHex(session), generation: attempt.generation, seq, signature: toHex(signature) },
  };
}

// Checks that `info` (a received PeerSetup body) is addressed to `me` and
// signed by the other party. Returns {senderHex, auth, message}; throws
// with the reason otherwise. Freshness is the ReplayGuard's job.
export async function verifySetup(info, me) {
  const idInit = fromHex(info.id_init, 32);
  const idFollow = fromHex(info.id_follow, 32);
  const meHex = toHex(me);
  const isInit = toHex(idInit) === meHex;
  const isFollow = toHex(idFollow) === meHex;
  if (isInit && isFollow) throw new Error('setup message names this node as its sender');
  if (!isInit && !isFollow) throw new Error('setup message is not addressed to this node');
  const sender = isInit ? idFollow : idInit;
  const message = decodeSetupMessage(info.message);
  const auth = parseAuth(info.auth);
  const bytes = setupSignedBytes({
    idInit,
    idFollow,
    sender,
    session: auth.session,
    generation: auth.generation,
    seq: auth.seq,
    message,
  });
  if (!(await verifySignature(sender, bytes, auth.signature))) {
    throw new Error(`setup signature by ${toHex(sender).slice(0, 12)}… does not verify (forged or altered in transit)`);
  }
  return { senderHex: toHex(sender), auth, message };
}
