// Drives Debian's chromium (headless, through playwright-core) against a
// running flsignal: two pages with different keys join, connect to each
// other over WebRTC, exchange messages both ways, measure RTT and
// throughput, and check the page's setup signing against the Rust vector.
//
// Run by tests/tests/browser.rs, which starts the server. Environment:
//   FLSIGNAL_URL              http://127.0.0.1:PORT/ (required)
//   EXPECTED_SETUP_SIGNATURE  the vector's signature as flproto computes it
//   CHROMIUM                  browser binary (default /usr/bin/chromium)
//   ARTIFACTS                 where screenshots go (default ./artifacts)
// Exits 0 when everything held, 1 with the reason otherwise.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch, nodeId, open, say, text } from './lib.mjs';

const base = process.env.FLSIGNAL_URL;
const expectedSignature = process.env.EXPECTED_SETUP_SIGNATURE || '';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = process.env.ARTIFACTS || join(import.meta.dirname, 'artifacts');
const STEP_TIMEOUT_MS = 30000;

if (!base) {
  console.error('FLSIGNAL_URL is not set');
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const browser = await launch(executablePath, STEP_TIMEOUT_MS);

const step = (text) => console.log(`• ${text}`);
let pages = [];

try {
  // One profile, two keys: ?key= keeps two nodes apart in one IndexedDB.
  const context = await browser.newContext({ viewport: { width: 1200, height: 820 } });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const a = await open(context, base, 'a');
  const b = await open(context, base, 'b');
  pages = [a, b];

  const idA = await nodeId(a);
  const idB = await nodeId(b);
  if (idA === idB) throw new Error('both pages have the same node ID');
  step(`page a is ${idA.slice(0, 12)}…, page b is ${idB.slice(0, 12)}…`);

  const selfTest = await a.page.evaluate(() => window.flpeer.selfTest);
  if (!selfTest.ok) throw new Error(`setup-signing self-test failed: ${JSON.stringify(selfTest)}`);
  if (expectedSignature && selfTest.signature !== expectedSignature) {
    throw new Error(`page signs ${selfTest.signature}, flproto signs ${expectedSignature}`);
  }
  step(`WebCrypto reproduces flproto's setup signature ${selfTest.signature.slice(0, 16)}…; tampering and replay refused`);
  await a.page.locator('#selftest[data-state="good"]').waitFor();

  // Each page lists the other (join news or the initial list).
  await a.page.locator(`#node-list li[data-id="${idB}"]`).waitFor();
  await b.page.locator(`#node-list li[data-id="${idA}"]`).waitFor();
  step('each page lists the other');

  // Page a picks b and connects; b did not choose a, so it asks first and
  // answers only once the user accepts.
  await a.page.locator(`#node-list li[data-id="${idB}"] button`).click();
  await a.page.locator('#connect').click();
  const request = b.page.locator(`#request-list li[data-id="${idA}"]`);
  await request.waitFor();
  if ((await a.page.locator('#peer-state').getAttribute('data-state')) === 'connected') {
    throw new Error('a connected before b accepted');
  }
  step('b asks before answering a node it did not choose');
  await request.locator('button.accept').click();
  await request.waitFor({ state: 'detached' });
  await a.page.locator('#peer-state[data-state="connected"]').waitFor();
  await b.page.locator('#peer-state[data-state="connected"]').waitFor();
  await a.page.locator('#chat-input:enabled').waitFor();
  await b.page.locator('#chat-input:enabled').waitFor();
  step('connected over WebRTC; ctl channel open on both sides');

  await say(a, 'hello from a');
  await b.page.locator('#chat li.peer', { hasText: 'hello from a' }).waitFor();
  await say(b, 'hello back from b');
  await a.page.locator('#chat li.peer', { hasText: 'hello back from b' }).waitFor();
  step('messages went both ways');

  await a.page.locator('#peer-rtt', { hasText: 'ms' }).waitFor();
  await a.page.locator('#peer-path', { hasText: 'host' }).waitFor();
  step(`RTT ${await text(a, '#peer-rtt')}, path ${await text(a, '#peer-path')}`);

  await a.page.locator('#throughput').click();
  await a.page.locator('#peer-throughput', { hasText: 'Mbit/s' }).waitFor();
  step(`throughput ${await text(a, '#peer-throughput')}`);
  step(`RTT right after the test ${await text(a, '#peer-rtt')}`);
  // Settings that would never end the test (a message of 0 bytes) are refused.
  const refused = await a.page.evaluate(
    (id) => window.flpeer.peers.get(id).runThroughput({ message: 0 }).then(() => '', (error) => error.message),
    idB,
  );
  if (!refused.includes('positive integers')) throw new Error(`a throughput test with 0-byte messages: "${refused}"`);
  step('the throughput test refuses 0-byte messages');

  // b hangs up: a says so in words, not just in colour.
  await b.page.locator('#disconnect').click();
  await a.page.locator('#peer-state[data-state="closed"]').waitFor();
  await a.page.locator('#peer-error', { hasText: 'the peer closed the connection' }).waitFor();
  step(`after b hung up, a shows "${await text(a, '#peer-state')}: ${await text(a, '#peer-error')}"`);

  // And a connects again, from the other side this time (b's Init).
  await b.page.locator('#connect').click();
  await a.page.locator('#peer-state[data-state="connected"]').waitFor();
  await b.page.locator('#peer-state[data-state="connected"]').waitFor();
  await say(b, 'again');
  await a.page.locator('#chat li.peer', { hasText: 'again' }).waitFor();
  step('b reconnected; messages flow again');

  // A third node, made inside page a, sends b setup frames that are
  // unsigned, altered after signing, and replayed: b refuses each, says
  // why, and its connection to a stays up.
  const mallory = await a.page.evaluate(forgeSetupFrames, idB);
  for (const reason of ['unsigned setup message', 'does not verify', 'replayed setup message']) {
    await b.page.locator('#log li.error', { hasText: reason }).waitFor();
  }
  await b.page.locator('#peer-state[data-state="connected"]').waitFor();
  step('b refused unsigned, altered and replayed setup frames from a third node');
  // Its one good frame is a setup b did not ask for: b asks, the user
  // declines.
  const malloryRequest = b.page.locator(`#request-list li[data-id="${mallory}"]`);
  await malloryRequest.locator('button.decline').click();
  await malloryRequest.waitFor({ state: 'detached' });
  await b.page.locator('#log li', { hasText: 'connection declined' }).waitFor();
  step('b declined the third node at the prompt');

  // More strangers than b keeps peers: b asks about as many as fit beside
  // a, and declines the rest without asking.
  const maxPeers = await b.page.evaluate(() => window.flpeer.maxPeers);
  await a.page.evaluate(strangersAsk, { target: idB, count: maxPeers });
  await b.page.locator('#log li', { hasText: 'declined automatically' }).waitFor();
  const asking = await b.page.locator('#request-list li').count();
  if (asking !== maxPeers - 1) throw new Error(`b asks about ${asking} strangers, expected ${maxPeers - 1}`);
  await b.page.locator('#peer-state[data-state="connected"]').waitFor();
  step(`b asks about ${asking} strangers beside a and declined the ${maxPeers}th on its own`);

  // Sealing rules. A node whose signed session says it opens sealed
  // setups sends b a plain one: b refuses it as a downgrade.
  await a.page.evaluate(plainSetupTo, { target: idB, tagged: true });
  await b.page.locator('#log li.error', { hasText: 'refused as a downgrade' }).waitFor();
  step('b refused a plain setup signed under a sealing session as a downgrade');
  // A page with "Sealed setups only" refuses a plain setup outright.
  const c = await open(context, base, 'c', '&sealed=require');
  pages.push(c);
  if (!(await c.page.locator('#require-sealed').isChecked())) throw new Error('?sealed=require did not set the setting');
  await a.page.evaluate(plainSetupTo, { target: await nodeId(c), tagged: false });
  await c.page.locator('#log li.error', { hasText: 'this page requires sealed setups' }).waitFor();
  step('a page with "Sealed setups only" refused a plain setup');
  // A key made before sealed setups (a non-extractable key pair) still
  // works, plain: the page says so and does not advertise sealing.
  await a.page.evaluate(storeOldKey, 'old');
  const old = await open(context, base, 'old');
  pages.push(old);
  await old.page.locator('#log li.error', { hasText: 'was made before sealed setups' }).waitFor();
  if (!(await old.page.locator('#require-sealed').isDisabled())) throw new Error('an old key can require sealed setups');
  const oldOpens = await old.page.evaluate(() => window.flpeer.identity.opensSealed);
  if (oldOpens) throw new Error('an old key claims to open sealed setups');
  await old.page.locator('#selftest[data-state="good"]').waitFor();
  step('a page with an old key says it cannot seal and keeps working plain');

  const errors = pages.flatMap((p) => p.errors);
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);

  await screenshots('browser-peer');
  console.log('browser test passed');
} catch (error) {
  console.error(`browser test FAILED: ${error.message}`);
  for (const { key, log } of pages) console.error(`--- console of page ${key} ---\n${log.join('\n')}`);
  await screenshots('browser-peer-failed').catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}

async function screenshots(prefix) {
  for (const { key, page } of pages) {
    const path = join(artifacts, `${prefix}-${key}.png`);
    await page.screenshot({ path, fullPage: true });
    console.log(`screenshot: ${path}`);
  }
}

// Runs in page a: joins as another node and sends `target` bad frames.
async function forgeSetupFrames(target) {
  const wire = await import('/web/wire.js');
  const { Identity } = await import('/web/identity.js');
  const { signSetup } = await import('/web/setup.js');
  const mallory = await Identity.fromSeed(crypto.getRandomValues(new Uint8Array(32)));
  const socket = new WebSocket(`ws://${location.host}/`);
  const frames = [];
  let wake = null;
  socket.onmessage = (event) => {
    frames.push(JSON.parse(event.data));
    if (wake) wake();
  };
  const next = async (kind) => {
    for (;;) {
      const index = frames.findIndex((frame) => typeof frame === 'object' && kind in frame);
      if (index >= 0) return frames.splice(index, 1)[0][kind];
      await new Promise((resolve) => (wake = resolve));
    }
  };
  const [, challengeHex] = await next('Challenge');
  const server = wire.normalizeAuthority(location.host, 'ws');
  const signature = await mallory.sign(wire.boundAnnounceBytes(server, wire.fromHex(challengeHex, 32), mallory.id));
  socket.send(
    wire.announceFrame({ server, challengeHex, nodeIdHex: mallory.idHex, name: 'mallory', signatureHex: wire.toHex(signature) }),
  );
  await next('SystemConfig');
  const targetId = wire.fromHex(target, 32);
  const [idInit, idFollow] = mallory.idHex < target ? [mallory.id, targetId] : [targetId, mallory.id];
  const signer = new wire.SetupSigner();
  const attempt = signer.nextAttempt();
  const send = (body) => socket.send(JSON.stringify({ PeerSetup: body }));
  const sign = (message) => signSetup({ identity: mallory, session: signer.session, attempt, idInit, idFollow, message });

  const unsigned = await sign({ kind: 'Offer', payload: 'v=0\r\n' });
  delete unsigned.auth;
  send(unsigned);
  const altered = await sign({ kind: 'Offer', payload: 'v=0\r\na=fingerprint:sha-256 AA\r\n' });
  altered.message = { Offer: 'v=0\r\na=fingerprint:sha-256 BB\r\n' };
  send(altered);
  const candidate = await sign({ kind: 'IceCandidate', payload: 'candidate:1 1 udp 1 192.0.2.9 9 typ host' });
  send(candidate);
  send(candidate);
  // Let the server relay before this node leaves.
  await new Promise((resolve) => setTimeout(resolve, 500));
  socket.close();
  return mallory.idHex;
}

// Runs in page a: a new node joins and sends `target` one correctly
// signed plain Init, under a session tagged as opening sealed setups if
// `tagged`.
async function plainSetupTo({ target, tagged }) {
  const wire = await import('/web/wire.js');
  const { Identity } = await import('/web/identity.js');
  const { signSetup } = await import('/web/setup.js');
  const node = await Identity.fromSeed(crypto.getRandomValues(new Uint8Array(32)));
  const socket = new WebSocket(`ws://${location.host}/`);
  const frames = [];
  let wake = null;
  socket.onmessage = (event) => {
    frames.push(JSON.parse(event.data));
    if (wake) wake();
  };
  const next = async (kind) => {
    for (;;) {
      const index = frames.findIndex((frame) => typeof frame === 'object' && kind in frame);
      if (index >= 0) return frames.splice(index, 1)[0][kind];
      await new Promise((resolve) => (wake = resolve));
    }
  };
  const [, challengeHex] = await next('Challenge');
  const server = wire.normalizeAuthority(location.host, 'ws');
  const signature = await node.sign(wire.boundAnnounceBytes(server, wire.fromHex(challengeHex, 32), node.id));
  socket.send(wire.announceFrame({ server, challengeHex, nodeIdHex: node.idHex, name: 'plain', signatureHex: wire.toHex(signature) }));
  await next('SystemConfig');
  const targetId = wire.fromHex(target, 32);
  const [idInit, idFollow] = node.idHex < target ? [node.id, targetId] : [targetId, node.id];
  const signer = new wire.SetupSigner(wire.newSession(tagged));
  const attempt = signer.nextAttempt();
  const init = await signSetup({ identity: node, session: signer.session, attempt, idInit, idFollow, message: { kind: 'Init', payload: '' } });
  socket.send(JSON.stringify({ PeerSetup: init }));
  setTimeout(() => socket.close(), 5000);
}

// Runs in page a: stores a key as pages made them before sealed setups (a
// non-extractable WebCrypto key pair) under `name`.
async function storeOldKey(name) {
  const keyPair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  const db = await new Promise((resolve, reject) => {
    const open = indexedDB.open('flsignal', 1);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  await new Promise((resolve, reject) => {
    const put = db.transaction('keys', 'readwrite').objectStore('keys').put(keyPair, name);
    put.onsuccess = () => resolve();
    put.onerror = () => reject(put.error);
  });
  db.close();
}

// Runs in page a: `count` new nodes join and each sends `target` one
// correctly signed Init; they stay online until b has seen them.
async function strangersAsk({ target, count }) {
  const wire = await import('/web/wire.js');
  const { Identity } = await import('/web/identity.js');
  const { signSetup } = await import('/web/setup.js');
  const ask = async () => {
    const stranger = await Identity.fromSeed(crypto.getRandomValues(new Uint8Array(32)));
    const socket = new WebSocket(`ws://${location.host}/`);
    const frames = [];
    let wake = null;
    socket.onmessage = (event) => {
      frames.push(JSON.parse(event.data));
      if (wake) wake();
    };
    const next = async (kind) => {
      for (;;) {
        const index = frames.findIndex((frame) => typeof frame === 'object' && kind in frame);
        if (index >= 0) return frames.splice(index, 1)[0][kind];
        await new Promise((resolve) => (wake = resolve));
      }
    };
    const [, challengeHex] = await next('Challenge');
    const server = wire.normalizeAuthority(location.host, 'ws');
    const signature = await stranger.sign(wire.boundAnnounceBytes(server, wire.fromHex(challengeHex, 32), stranger.id));
    socket.send(
      wire.announceFrame({ server, challengeHex, nodeIdHex: stranger.idHex, name: 'stranger', signatureHex: wire.toHex(signature) }),
    );
    await next('SystemConfig');
    const targetId = wire.fromHex(target, 32);
    const [idInit, idFollow] = stranger.idHex < target ? [stranger.id, targetId] : [targetId, stranger.id];
    const signer = new wire.SetupSigner();
    const attempt = signer.nextAttempt();
    const init = await signSetup({ identity: stranger, session: signer.session, attempt, idInit, idFollow, message: { kind: 'Init', payload: '' } });
    socket.send(JSON.stringify({ PeerSetup: init }));
    return socket;
  };
  const sockets = [];
  for (let i = 0; i < count; i++) sockets.push(await ask());
  setTimeout(() => sockets.forEach((socket) => socket.close()), 5000);
}
