// Checks this browser's WebCrypto against the Rust test vector
// (`test_vector` in shared/src/setup_auth_tests.rs): same key, same fields,
// same JSON and the same signature, byte for byte.

import { Identity } from './identity.js';
import { signSetup, verifySetup } from './setup.js';
import { ReplayGuard } from './wire.js';

const EXPECTED_SIGNATURE =
  '2ab8219cbc45ff0862ec0fde91fddeda4070adfc6e1e047682c560de934f9111fc3f299060783a8f92e17bdfcc4daa72b24390d8d1914e8ece752a3b9c54450c';
const CANDIDATE = 'candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host';

// Resolves to {ok, signature, expected, json, refusesTampering, refusesReplay, reason}.
export async function run() {
  try {
    const a = await Identity.fromSeed(new Uint8Array(32).fill(1));
    const b = await Identity.fromSeed(new Uint8Array(32).fill(2));
    const [idInit, idFollow] = a.idHex < b.idHex ? [a.id, b.id] : [b.id, a.id];
    const body = await signSetup({
      identity: a,
      session: new Uint8Array(8).fill(0x11),
      attempt: { generation: 1_763_800_000_000, nextSeq: 2 },
      idInit,
      idFollow,
      message: { kind: 'IceCandidate', payload: CANDIDATE },
    });
    const json = JSON.stringify(body);
    const expectedJson =
      `{"id_init":"${body.id_init}","id_follow":"${body.id_follow}","message":{"IceCandidate":"${CANDIDATE}"},` +
      `"auth":{"session":"1111111111111111","generation":1763800000000,"seq":2,"signature":"${EXPECTED_SIGNATURE}"}}`;
    const verified = await verifySetup(JSON.parse(json), b.id);
    const refusesTampering = await refuses(() =>
      verifySetup({ ...body, message: { IceCandidate: CANDIDATE.replace('10.0.0.1', '10.6.6.6') } }, b.id),
    );
    const guard = new ReplayGuard();
    const counters = { session: body.auth.session, generation: body.auth.generation, seq: body.auth.seq };
    guard.accept(counters);
    const refusesReplay = await refuses(async () => guard.accept(counters));
    const ok =
      refusesTampering &&
      refusesReplay &&
      body.auth.signature === EXPECTED_SIGNATURE &&
      json === expectedJson &&
      verified.senderHex === a.idHex &&
      a.idHex === '8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c';
    return { ok, signature: body.auth.signature, expected: EXPECTED_SIGNATURE, json, refusesTampering, refusesReplay };
  } catch (error) {
    return { ok: false, reason: String(error) };
  }
}

async function refuses(action) {
  try {
    await action();
    return false;
  } catch {
    return true;
  }
}
