// Drives Debian's chromium against a running flsignal and an flnode: one
// page joins, finds the node in its list, connects to it over WebRTC (the
// node, started with --test-peers, takes it as a test peer: `ctl` only,
// never the WireGuard path), and gets its messages echoed, pings answered
// and a throughput test counted, until a second one runs out the byte
// budget the node gives a test peer.
//
// Run by tests/tests/browser.rs inside a network namespace. Environment:
//   FLSIGNAL_URL  http://127.0.0.1:PORT/ (required)
//   FLNODE_ID     the node to connect to (required)
//   CHROMIUM      browser binary (default /usr/bin/chromium)
//   ARTIFACTS     where the screenshot goes (default ./artifacts)
// Exits 0 when everything held, 1 with the reason otherwise.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch, nodeId, open, say, text } from './lib.mjs';

const base = process.env.FLSIGNAL_URL;
const target = process.env.FLNODE_ID;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = process.env.ARTIFACTS || join(import.meta.dirname, 'artifacts');
const STEP_TIMEOUT_MS = 30000;

if (!base || !target) {
  console.error('FLSIGNAL_URL and FLNODE_ID must be set');
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

// Chromium as users run it: its host candidates are mDNS names, which
// flnode does not resolve; the connection must come up anyway.
const browser = await launch(executablePath, STEP_TIMEOUT_MS, { hideLocalIps: true });
const step = (line) => console.log(`• ${line}`);
let entry = null;

try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 820 } });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  entry = await open(context, base, 'tester');
  const { page } = entry;
  step(`page is ${(await nodeId(entry)).slice(0, 12)}…; looking for flnode ${target.slice(0, 12)}…`);

  await page.locator(`#node-list li[data-id="${target}"] button`).click();
  await page.locator('#connect').click();
  await page.locator('#peer-state[data-state="connected"]').waitFor();
  await page.locator('#chat-input:enabled').waitFor();
  step('connected to the flnode');

  await say(entry, 'hello flnode');
  await page.locator('#chat li.peer', { hasText: 'echo: hello flnode' }).waitFor();
  step('the flnode echoed the message');

  // A test peer may have two data channels (the page's wg and ctl): the
  // node closes what the page opens beyond that.
  const closedExtra = await page.evaluate(async (id) => {
    const pc = window.flpeer.peers.get(id).pc;
    const extras = ['extra1', 'extra2'].map((label) => pc.createDataChannel(label));
    const closes = extras.map((channel) => new Promise((resolve) => (channel.onclose = () => resolve(channel.label))));
    return Promise.race([...closes, new Promise((resolve) => setTimeout(() => resolve(null), 10000))]);
  }, target);
  if (!closedExtra) throw new Error('the node kept more data channels than a test peer may have');
  step(`the node closed the extra data channel ${closedExtra}`);

  await page.locator('#peer-rtt', { hasText: 'ms' }).waitFor();
  step(`RTT ${await text(entry, '#peer-rtt')}, path ${await text(entry, '#peer-path')}`);

  await page.locator('#throughput').click();
  await page.locator('#peer-throughput', { hasText: 'Mbit/s' }).waitFor();
  step(`throughput ${await text(entry, '#peer-throughput')}`);
  step(`RTT right after the test ${await text(entry, '#peer-rtt')}`);

  // The node gives a test peer a byte budget (--test-peer-budget, set by
  // the test to fit one throughput test but not two): the second one
  // runs it out, and the node closes the connection.
  await page.locator('#throughput').click();
  await page.locator('#peer-state[data-state="closed"], #peer-state[data-state="failed"]').waitFor();
  step(`a second throughput test ran out the node's budget: ${await text(entry, '#peer-state')}`);

  if (entry.errors.length) throw new Error(`page errors: ${entry.errors.join('; ')}`);
  const path = join(artifacts, 'browser-flnode.png');
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
  console.log('browser-flnode test passed');
} catch (error) {
  console.error(`browser-flnode test FAILED: ${error.message}`);
  if (entry) {
    console.error(`--- console of the page ---\n${entry.log.join('\n')}`);
    await entry.page.screenshot({ path: join(artifacts, 'browser-flnode-failed.png'), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
