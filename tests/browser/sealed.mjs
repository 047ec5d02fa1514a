// Sealed setups from Debian's chromium, through a recording relay in front
// of flsignal (tests/tests/browser.rs starts both and serves the page
// through the relay). MODE=pages: two pages connect and chat, and page b
// refuses the relay's tampered, re-addressed and replayed copies of a
// sealed setup, each with its reason. MODE=flnode: a page connects to an
// flnode (a test peer) and gets its echo. Either way the pages' self-test
// must pass with the sealed vector, and the script prints the pages' key
// seeds (`SEEDS {"name": hex}`) so that the test can open what the relay
// recorded and look for what the server must not see.
//
// Environment:
//   FLSIGNAL_URL  the page, through the relay: http://127.0.0.1:PORT/ (required)
//   MODE          pages | flnode (required)
//   FLNODE_ID     the node to connect to (MODE=flnode)
//   HOLD_UNTIL    MODE=flnode: a file; the page stays connected until it exists
//   CHROMIUM      browser binary (default /usr/bin/chromium)
// Exits 0 when everything held, 1 with the reason otherwise.

import { existsSync } from 'node:fs';
import { launch, nodeId, open, say } from './lib.mjs';

const base = process.env.FLSIGNAL_URL;
const mode = process.env.MODE;
const target = process.env.FLNODE_ID;
const holdUntil = process.env.HOLD_UNTIL;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT_MS = 30000;
const HOLD_LIMIT_MS = 90000;

if (!base || !['pages', 'flnode'].includes(mode) || (mode === 'flnode' && (!target || !holdUntil))) {
  console.error('FLSIGNAL_URL and MODE (pages, or flnode with FLNODE_ID and HOLD_UNTIL) must be set');
  process.exit(2);
}

// Pages find each other by plain host candidates; a page and an flnode as
// users run chromium (mDNS names).
const browser = await launch(executablePath, STEP_TIMEOUT_MS, { hideLocalIps: mode === 'flnode' });
const step = (line) => console.log(`• ${line}`);
let pages = [];

// The seed of the page's stored key, as hex.
async function seedOf({ page, key }) {
  return page.evaluate(async (name) => {
    const db = await new Promise((resolve, reject) => {
      const open = indexedDB.open('flsignal', 1);
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    const stored = await new Promise((resolve, reject) => {
      const get = db.transaction('keys').objectStore('keys').get(name);
      get.onsuccess = () => resolve(get.result);
      get.onerror = () => reject(get.error);
    });
    db.close();
    return Array.from(stored.seed, (b) => b.toString(16).padStart(2, '0')).join('');
  }, key);
}

async function selfTestPasses(entry) {
  const result = await entry.page.evaluate(() => window.flpeer.selfTest);
  if (!result.ok || !result.sealed.ok) throw new Error(`self-test failed: ${JSON.stringify(result)}`);
  await entry.page.locator('#selftest', { hasText: 'setup signatures and sealing match flproto' }).waitFor();
}

// Waits until the page's log has `count` error lines containing any of `texts`.
async function logged({ page }, texts, count) {
  await page.waitForFunction(
    ({ texts, count }) =>
      [...document.querySelectorAll('#log li.error')].filter((li) => texts.some((t) => li.textContent.includes(t))).length >= count,
    { texts, count },
    { timeout: STEP_TIMEOUT_MS },
  );
}

async function pagesRun(context) {
  const a = await open(context, base, 'a');
  const b = await open(context, base, 'b');
  pages = [a, b];
  await selfTestPasses(a);
  step('WebCrypto reproduces and opens flproto\'s sealed vector');
  const [idA, idB] = [await nodeId(a), await nodeId(b)];
  await a.page.locator(`#node-list li[data-id="${idB}"] button`).click();
  await a.page.locator('#connect').click();
  const request = b.page.locator(`#request-list li[data-id="${idA}"]`);
  await request.locator('button.accept').click();
  await a.page.locator('#peer-state[data-state="connected"]').waitFor();
  await b.page.locator('#peer-state[data-state="connected"]').waitFor();
  await a.page.locator('#chat-input:enabled').waitFor();
  await b.page.locator('#chat-input:enabled').waitFor();
  await say(a, 'sealed hello from a');
  await b.page.locator('#chat li.peer', { hasText: 'sealed hello from a' }).waitFor();
  await say(b, 'sealed hello from b');
  await a.page.locator('#chat li.peer', { hasText: 'sealed hello from b' }).waitFor();
  step('two pages connected with sealed setups; messages went both ways');
  await logged(b, ['does not verify (forged or altered in transit)'], 2);
  await logged(b, ['replayed setup message', 'stale setup message'], 1);
  await b.page.locator('#peer-state[data-state="connected"]').waitFor();
  step('page b refused the tampered, re-addressed and replayed sealed setups and stayed connected');
  console.log(`SEEDS ${JSON.stringify({ a: await seedOf(a), b: await seedOf(b) })}`);
}

async function flnodeRun(context) {
  const entry = await open(context, base, 'tester');
  pages = [entry];
  await selfTestPasses(entry);
  const { page } = entry;
  await page.locator(`#node-list li[data-id="${target}"] button`).click();
  await page.locator('#connect').click();
  await page.locator('#peer-state[data-state="connected"]').waitFor();
  await page.locator('#chat-input:enabled').waitFor();
  await say(entry, 'sealed hello flnode');
  await page.locator('#chat li.peer', { hasText: 'echo: sealed hello flnode' }).waitFor();
  step('a page and an flnode connected with sealed setups; the flnode echoed');
  console.log(`SEEDS ${JSON.stringify({ tester: await seedOf(entry) })}`);
  console.log('HOLDING');
  const deadline = Date.now() + HOLD_LIMIT_MS;
  while (!existsSync(holdUntil)) {
    if (Date.now() > deadline) throw new Error('the test never said it was done');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 820 } });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  await (mode === 'pages' ? pagesRun(context) : flnodeRun(context));
  const errors = pages.flatMap((p) => p.errors);
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  console.log(`sealed ${mode} test passed`);
} catch (error) {
  console.error(`sealed ${mode} test FAILED: ${error.message}`);
  for (const { key, log } of pages) console.error(`--- console of page ${key} ---\n${log.join('\n')}`);
  for (const { key, page } of pages) {
    const lines = await page.locator('#log li').allTextContents().catch(() => []);
    console.error(`--- log of page ${key} ---\n${lines.join('\n')}`);
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
