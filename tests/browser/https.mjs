// Opens the page over https from an flsignal that serves TLS itself
// (`--tls-cert`, a self-signed certificate made by the test, which chromium
// is told to accept) and checks that it registers over wss:// on the same
// port.
//
// Run by tests/tests/browser.rs, which starts the server. Environment:
//   FLSIGNAL_URL  https://127.0.0.1:PORT/ (required)
//   CHROMIUM      browser binary (default /usr/bin/chromium)
// Exits 0 when the page came online over wss://, 1 with the reason otherwise.

import { launch, nodeId, open } from './lib.mjs';

const base = process.env.FLSIGNAL_URL;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT_MS = 30000;

if (!base) {
  console.error('FLSIGNAL_URL is not set');
  process.exit(2);
}

const browser = await launch(executablePath, STEP_TIMEOUT_MS, { args: ['--ignore-certificate-errors'] });
let entry = null;
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  entry = await open(context, base, 'tls');
  const { protocol, signalUrl } = await entry.page.evaluate(() => ({
    protocol: location.protocol,
    signalUrl: window.flpeer.signalling.url,
  }));
  if (protocol !== 'https:') throw new Error(`the page is on ${protocol}`);
  if (!signalUrl.startsWith('wss://')) throw new Error(`the page signals on ${signalUrl}`);
  const id = await nodeId(entry);
  console.log(`• page ${id.slice(0, 12)}… loaded over https and registered over ${signalUrl}`);
} catch (error) {
  console.error(`FAILED: ${error.message}`);
  if (entry) console.error(entry.log.concat(entry.errors).join('\n'));
  await browser.close();
  process.exit(1);
}
await browser.close();
