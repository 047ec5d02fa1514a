// Checks this browser's WebCrypto against the Rust test vectors: the
// signed setup (`test_vector` in shared/src/setup_auth_tests.rs: same key,
// same fields, same JSON and the same signature, byte for byte) and the
// sealed one (`test_vector` in shared/src/seal_tests.rs: the same
// candidate sealed to key 2 with a fixed ephemeral key gives the same
// bytes, and key 2 opens flproto's). Also run by Node's WebCrypto
// (tests/browser/vector.mjs).

import { Identity } from './identity.js';
import { openSealed, signSetup, verifySetup } from './setup.js';
import { ReplayGuard, fromHex, toHex } from './wire.js';
import { importX25519Secret, x25519PublicOf } from './x25519.js';

const EXPECTED_SIGNATURE =
  '2ab8219cbc45ff0862ec0fde91fddeda4070adfc6e1e047682c560de934f9111fc3f299060783a8f92e17bdfcc4daa72b24390d8d1914e8ece752a3b9c54450c';
const CANDIDATE = 'candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host';

// The sealed vector: the ephemeral key HPKE derives from the seed 03×32,
// the sealed text and the signature of the frame that carries it.
const EPHEMERAL_SECRET = 'a8b1202142bd84505f6760a671df6aaaeaab9303adbfead3ed330a7797330049';
const EPHEMERAL_PUBLIC = '90ab790ecbf0704232ffe9436faeccc913b66a60e99c688a40bba4d5e2e61450';
export const EXPECTED_SEALED =
  'kKt5DsvwcEIy/+lDb67MyRO2amDpnGiKQLuk1eLmFFAd8jwUOZ5sb5HBiMfl5GTwccjctcepjL1ZTSUueNX8mXwrYvN70tpA9vITnUdJ88ZavV6Iu7Gks3tcKQBma/PyHdAdG7Q8wGTY6FRH2hvvIhTy8XMF3O9t3xrols+wD9mKII3KYLrOQgv9L0bzwDrfWLeOzz4Fc0G1fi3orvQeMB7MCL+6ppelgbYn9QmLvluir0OMQlHeibrZxktElsLw8EbHd6Me3Ox/Wzhkbdpc3m3zfsT4KkIPwelJIVUwM2tj6QvcELhJaeWV0gx6u0/osl2EAkvbVRA8OC+v0j2y/81nGkcPjHeqEQA7lciuP4jRMwVVeYAWUrEKQSAdQSWmtcqS951jbMdb3CIxy5hQ1od/pfGN5JfQ78F71ujZKTwdFuMGpLGzyXWMrpmIUcRFo049wIF704q5tU4nroyovW26zxAIehl0xgBT61+NSWW3HIffp3WFkjd5JKw7mHMTQ4AyBddPilvxBdm2RXwrvGmtcQYd6SK5UTaNwT8HFbpbb6vasYsjM6vY/NWE14hm4UAkoHJe8+JlWJNMTd+W3Lopduswd+hKFGop/kWkMpQujgV2Tz+p1u/70qBODpKxPI23gM4ux+t8+OIgUOXWIl6vN3zyOEYfY4EBAI9G1vw9w2nibw3ZmfTESPRQr0VM/C5Y2dSjS8CsgXiX5VmMz3ozs/oUwXgfNV+GWQ5a4q59Gnx2QVcZSfAANhQRSWK6hWr1WlaJM/xiIwurFVzyb/rrZk+O/jT8pKotjUyk7mVku3K95NHqLTZm6go+/MiZWRwoalsqZlvUqOOeQZlYdDqLLXAOpjQO7UrTppd8KH1oJQ0AFTbeGttRKoxoqcWN6tuVekEoYO87GCtqiuwUr0hxlnQHaCvQ9dwB4+j1bwgBMzFPVp92FK2QzZrkWnKgqmYtKISBrQTqp6NCxuSdFhbTmWzvPE+U5IXwY5FjOgQujoak5j+55gyNfcquWXHG+AQ7tOSltQRzAjotppuU8bitjc4Sy68yU/coPNsl4pAwvok8myWj/DCIJg0Mk/63mP1guuFouDJBsvxcEX/A+DDPfAvXK0Xd5Ys205dWzBv++Xcxdm4pWGBEjovobVQIeBwFqQ/cy9meCRZVglyxm4r4j2crGvjikIAn+NG2KcNDPFD38jUnJv9hclZxVRdyEyCxTj8BqO3Ci+nZTzcQVusjPrQLw6b0muagWfMhbKpXo2Bzuuse4DKl5GeufsYoAatYC1dbZq1dpCJNAzZulscz0amt0oTt8sF3UeEyB+YABR89Q6U6mt6TXEHhC0idR8zqbA2eXuTORvidQdQNpOWhkx0ALcELuhAsOms1LEFq6dh6KhsPpe20lCP8gGe3Z7zBH/zNFwxOqWSxbwKQNA==';
const EXPECTED_SEALED_SIGNATURE =
  'bf717885546fb8c11ad87f06381e63c9ae628a86dd9c07bf512b233bd83a08a3fb024c2496b2bc4bb648e57c0ad4b2dfe622dd883b8d5137d7931fe3c104dc0c';

// Resolves to {ok, signature, expected, json, refusesTampering,
// refusesReplay, sealed: {ok, …}, reason}.
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
    const sealed = await sealedVector(a, b, idInit, idFollow);
    const ok =
      sealed.ok &&
      refusesTampering &&
      refusesReplay &&
      body.auth.signature === EXPECTED_SIGNATURE &&
      json === expectedJson &&
      verified.senderHex === a.idHex &&
      a.idHex === '8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c';
    return { ok, signature: body.auth.signature, expected: EXPECTED_SIGNATURE, json, refusesTampering, refusesReplay, sealed };
  } catch (error) {
    return { ok: false, reason: String(error) };
  }
}

// Seals the vector's candidate from `a` to `b` as flproto does, and opens
// flproto's: {ok, text, signature, opened, refusesWrongKey, refusesTampering}.
async function sealedVector(a, b, idInit, idFollow) {
  const ephemeral = {
    privateKey: await importX25519Secret(fromHex(EPHEMERAL_SECRET, 32)),
    publicBytes: fromHex(EPHEMERAL_PUBLIC, 32),
  };
  const body = await signSetup({
    identity: a,
    session: new Uint8Array(8).fill(0x11),
    attempt: { generation: 1_763_800_000_000, nextSeq: 2 },
    idInit,
    idFollow,
    message: { kind: 'IceCandidate', payload: CANDIDATE },
    sealTo: b.id,
    ephemeral,
  });
  const text = body.message.Sealed;
  const flprotos = { ...body, message: { Sealed: EXPECTED_SEALED }, auth: { ...body.auth, signature: EXPECTED_SEALED_SIGNATURE } };
  const verified = await verifySetup(flprotos, b.id);
  const opened = await openSealed(b, verified);
  const refusesWrongKey = await refuses(() => openSealed(a, verified));
  const altered = `${EXPECTED_SEALED.slice(0, 100)}${EXPECTED_SEALED[100] === 'A' ? 'B' : 'A'}${EXPECTED_SEALED.slice(101)}`;
  const refusesTampering = await refuses(() => openSealed(b, { ...verified, message: { kind: 'Sealed', payload: altered } }));
  // flproto::x25519's vector: node key 1's X25519 public key.
  const x25519 = toHex(x25519PublicOf(a.id)) === '1b1b58dd50ea14b60da17b790cd02754d970c9bab864ebb3c0f3016fe51d3f57';
  const ok =
    x25519 &&
    text === EXPECTED_SEALED &&
    body.auth.signature === EXPECTED_SEALED_SIGNATURE &&
    opened.kind === 'IceCandidate' &&
    opened.payload === CANDIDATE &&
    refusesWrongKey &&
    refusesTampering;
  return { ok, x25519, text, signature: body.auth.signature, opened, refusesWrongKey, refusesTampering };
}

async function refuses(action) {
  try {
    await action();
    return false;
  } catch {
    return true;
  }
}
