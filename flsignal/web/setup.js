// Signing, sealing and checking PeerSetup frames (flproto::setup_auth and
// flproto::seal): a frame the server relays can be neither forged nor
// replayed, a sealed one not read either, and the DTLS fingerprint inside
// a signed SDP ties the WebRTC connection to node keys.

import { verifySignature } from './identity.js';
import { openSetup, sealSetup } from './seal.js';
import { decodeSetupMessage, encodeSetupMessage, fromHex, parseAuth, setupHeaderBytes, setupSignedBytes, toHex } from './wire.js';

// The PeerSetup body (without the {"PeerSetup": …} wrapper) for `message`,
// signed by `identity` as the next message of `attempt`; sealed to
// `sealTo` (the receiver's node ID) if given. `ephemeral` is for test
// vectors.
export async function signSetup({ identity, session, attempt, idInit, idFollow, message, sealTo = null, ephemeral = null }) {
  const seq = attempt.nextSeq;
  attempt.nextSeq += 1;
  const header = { idInit, idFollow, sender: identity.id, session, generation: attempt.generation, seq };
  const sent = sealTo
    ? {
        kind: 'Sealed',
        payload: await sealSetup({ recipientId: sealTo, header: setupHeaderBytes(header), message, ephemeral }),
      }
    : message;
  const signature = await identity.sign(setupSignedBytes({ ...header, message: sent }));
  return {
    id_init: toHex(idInit),
    id_follow: toHex(idFollow),
    message: encodeSetupMessage(sent),
    auth: { session: toHex(session), generation: attempt.generation, seq, signature: toHex(signature) },
  };
}

// Checks that `info` (a received PeerSetup body) is addressed to `me` and
// signed by the other party. Returns {senderHex, auth, message, header}
// (the message as sent: a Sealed one is still sealed, see openSealed);
// throws with the reason otherwise. Freshness is the ReplayGuard's job.
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
  const header = { idInit, idFollow, sender, session: auth.session, generation: auth.generation, seq: auth.seq };
  const bytes = setupSignedBytes({ ...header, message });
  if (!(await verifySignature(sender, bytes, auth.signature))) {
    throw new Error(`setup signature by ${toHex(sender).slice(0, 12)}… does not verify (forged or altered in transit)`);
  }
  return { senderHex: toHex(sender), auth, message, header };
}

// The message a verified Sealed one carries, opened with `identity`'s
// X25519 key under the header it was signed with.
export async function openSealed(identity, { header, message }) {
  if (!identity.opensSealed) throw new Error("this page's key cannot open sealed setups");
  try {
    return await openSetup({ recipient: identity.x25519, header: setupHeaderBytes(header), text: message.payload });
  } catch (error) {
    throw new Error(`sealed setup message does not open: ${error.message}`);
  }
}
