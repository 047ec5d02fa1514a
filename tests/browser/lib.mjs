// Helpers shared by the browser runs (run.mjs: two pages; flnode.mjs: a
// page and an flnode): launching Debian's chromium the same way, opening
// the page as a node, and reading and typing into it.

import { chromium } from 'playwright-core';

// Headless chromium as the tests need it: no sandbox (root in CI), no
// background traffic. With `hideLocalIps` false, plain host candidates
// instead of mDNS-hidden ones (`name.local`), which two pages need to find
// each other on a machine without multicast DNS; with it true, chromium as
// users run it. `args` are further chromium flags.
export async function launch(executablePath, timeout, { hideLocalIps = false, args = [] } = {}) {
  const features = hideLocalIps ? [] : ['--disable-features=WebRtcHideLocalIpsWithMdns'];
  return chromium.launch({
    executablePath,
    headless: true,
    timeout,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-default-apps',
      '--disable-sync',
      '--no-first-run',
      '--no-default-browser-check',
      '--metrics-recording-only',
      ...features,
      ...args,
    ],
  });
}

// Opens the page as node `key` (`query`: more of the query string, such
// as '&sealed=require') and waits until it is online.
export async function open(context, base, key, query = '') {
  const page = await context.newPage();
  const entry = { key, page, log: [], errors: [] };
  page.on('console', (message) => entry.log.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => entry.errors.push(`${key}: ${error.message}`));
  const response = await page.goto(new URL(`/?key=${key}${query}`, base).href);
  if (!response.ok()) throw new Error(`GET / answered ${response.status()}`);
  await page.locator('#server-state[data-state="online"]').waitFor();
  return entry;
}

export async function nodeId({ page }) {
  return page.evaluate(() => window.flpeer.identity.idHex);
}

export async function text({ page }, selector) {
  return (await page.locator(selector).textContent()).trim();
}

export async function say({ page }, message) {
  await page.locator('#chat-input').fill(message);
  await page.locator('#chat-send').click();
}
