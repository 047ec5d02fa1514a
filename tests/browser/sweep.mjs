// Measures the page's throughput test with its message size and in-flight
// amount varied, browser ↔ browser (two pages) or browser ↔ flnode (one
// page and the node FLNODE_ID), each setting ROUNDS times, the order of
// the settings reversed every other round. After each run it reads the
// WebRTC stats of both ends it can see (the sender's `wg` channel and SCTP
// transport; the receiving page's `wg` channel) to show where data is lost.
//
// Run by tests/src/bin/flbench_page.rs. Environment:
//   FLSIGNAL_URL  http://127.0.0.1:PORT/ (required)
//   FLNODE_ID     the node to measure against; two pages if unset
//   MESSAGES      message sizes in bytes, comma-separated
//   IN_FLIGHT     in-flight amounts in bytes, comma-separated
//   ROUNDS        runs per setting (default 3)
//   BYTES         bytes per run (default the page's own)
//   IDLE_MS       wait this long after connecting before the first run
//   WARMUP        bytes sent uncounted before each run (default the page's)
//   SPLIT         browser ↔ browser only: `tabs` (default; both pages in
//                 one Chromium and one profile, as run.mjs has them, where
//                 they share one renderer process) or `browsers` (each
//                 page in a Chromium of its own, as two users are)
//   CHROMIUM      browser binary (default /usr/bin/chromium)
// Prints one `run …` line per run and one `setting …` line per setting
// (median, min–max); exits 1 if any run failed.

import { readFileSync } from 'node:fs';
import { launch, nodeId, open } from './lib.mjs';

const base = process.env.FLSIGNAL_URL;
const target = process.env.FLNODE_ID || '';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const list = (name, fallback) => (process.env[name] || fallback).split(',').map(Number);
const messages = list('MESSAGES', '1200,16384,65536,262144');
// 15 MiB, not 16: Chromium's send throws past 16 MiB queued.
const inFlights = list('IN_FLIGHT', '1048576,4194304,15728640');
const rounds = Number(process.env.ROUNDS || 3);
const STEP_TIMEOUT_MS = 30000;

if (!base) {
  console.error('FLSIGNAL_URL is not set');
  process.exit(2);
}

const split = target ? 'none' : process.env.SPLIT || 'tabs';
const browser = await launch(executablePath, STEP_TIMEOUT_MS, { hideLocalIps: Boolean(target) });
const second = split === 'browsers' ? await launch(executablePath, STEP_TIMEOUT_MS) : null;
let failed = false;
try {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const sender = await open(context, base, 'sender');
  const receiverContext = second ? await second.newContext() : context;
  receiverContext.setDefaultTimeout(STEP_TIMEOUT_MS);
  const receiver = target ? null : await open(receiverContext, base, 'receiver');
  const peerId = target || (await nodeId(receiver));
  const senderId = await nodeId(sender);
  await sender.page.locator(`#node-list li[data-id="${peerId}"] button`).click();
  await sender.page.locator('#connect').click();
  if (receiver) {
    const request = receiver.page.locator(`#request-list li[data-id="${senderId}"]`);
    await request.locator('button.accept').click();
  }
  await sender.page.locator('#chat-input:enabled').waitFor();
  if (receiver) await receiver.page.locator('#chat-input:enabled').waitFor();
  // Both ends' `wg` channels open.
  await sender.page.waitForFunction((id) => window.flpeer.peers.get(id).wg?.readyState === 'open', peerId);
  console.log(`connected: ${target ? 'browser → flnode' : `browser → browser (${split})`}`);
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.IDLE_MS || 0)));

  const settings = messages.flatMap((message) => inFlights.map((inFlight) => ({ message, inFlight })));
  const results = new Map(settings.map((s) => [key(s), []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? settings : [...settings].reverse();
    for (const setting of order) {
      const options = { ...setting };
      if (process.env.BYTES) options.bytes = Number(process.env.BYTES);
      if (process.env.WARMUP) options.warmup = Number(process.env.WARMUP);
      const before = await counters(sender, peerId, receiver, senderId);
      const result = await sender.page.evaluate(({ id, options }) => window.flpeer.peers.get(id).runThroughput(options), {
        id: peerId,
        options,
      });
      // Chromium's stats lag a little behind.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const after = await counters(sender, peerId, receiver, senderId);
      if (result.error) {
        failed = true;
        console.log(`run ${key(setting)} round ${round + 1}: FAILED ${result.error}`);
        continue;
      }
      const lost = 100 * (1 - result.bytes / result.sent);
      const delta = (name) => (after[name] ?? 0) - (before[name] ?? 0);
      results.get(key(setting)).push({ mbps: result.mbps, lost, message: result.message });
      console.log(
        `run ${key(setting)} round ${round + 1}: ${result.mbps.toFixed(1)} Mbit/s, ${lost.toFixed(1)} % lost` +
          ` (message ${result.message} B; messages sent ${delta('messagesSent')}, delivered` +
          ` ${receiver ? delta('messagesReceived') : '?'}; UDP packets sent ${delta('packetsSent')},` +
          ` received ${receiver ? delta('packetsReceived') : '?'}, discarded on send ${delta('packetsDiscardedOnSend')};` +
          ` kernel UDP receive-buffer drops ${delta('rcvbufErrors')})`,
      );
    }
  }
  for (const setting of settings) {
    const runs = results.get(key(setting));
    if (!runs.length) continue;
    const spread = (values) => {
      const sorted = [...values].sort((a, b) => a - b);
      const median = sorted[Math.floor(sorted.length / 2)];
      return `${median.toFixed(1)} (${sorted[0].toFixed(1)}–${sorted[sorted.length - 1].toFixed(1)})`;
    };
    console.log(
      `setting ${key(setting)} (message used ${runs[0].message} B): ${spread(runs.map((r) => r.mbps))} Mbit/s,` +
        ` ${spread(runs.map((r) => r.lost))} % lost, ${runs.length} runs`,
    );
  }
} catch (error) {
  failed = true;
  console.error(`sweep FAILED: ${error.message}`);
} finally {
  await browser.close();
  if (second) await second.close();
}
process.exitCode = failed ? 1 : 0;

function key({ message, inFlight }) {
  return `message=${message} in_flight=${inFlight}`;
}

// The counters that show where data is lost: the sender's `wg` channel
// (messages sent), its ICE transport (UDP packets sent, and discarded on
// send), the receiving page's transport (UDP packets received) and `wg`
// channel (messages delivered), and this network namespace's kernel UDP
// receive-buffer drops (RcvbufErrors in /proc/net/snmp; in the host
// namespace they include everyone else's).
async function counters(sender, peerId, receiver, senderId) {
  const read = ({ page }, id) =>
    page.evaluate(async (id) => {
      const pc = window.flpeer.peers.get(id).pc;
      const out = {};
      (await pc.getStats()).forEach((report) => {
        if (report.type === 'data-channel' && report.label === 'wg') {
          out.messagesSent = report.messagesSent;
          out.messagesReceived = report.messagesReceived;
        }
        if (report.type === 'transport') {
          out.packetsSent = report.packetsSent;
          out.packetsReceived = report.packetsReceived;
        }
        if (report.type === 'candidate-pair' && report.nominated) out.packetsDiscardedOnSend = report.packetsDiscardedOnSend;
      });
      return out;
    }, id);
  const mine = await read(sender, peerId);
  if (receiver) {
    const theirs = await read(receiver, senderId);
    mine.messagesReceived = theirs.messagesReceived;
    mine.packetsReceived = theirs.packetsReceived;
  }
  mine.rcvbufErrors = udpRcvbufErrors();
  return mine;
}

function udpRcvbufErrors() {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((line) => line.startsWith('Udp:'));
  const [names, values] = lines.map((line) => line.split(/\s+/));
  return Number(values[names.indexOf('RcvbufErrors')]);
}
