// The page: loads the node key, checks WebCrypto against the Rust test
// vector, joins the server and wires peers to the view.

import { Identity } from './identity.js';
import { Peer } from './peer.js';
import { run as selfTest } from './selftest.js';
import { Signalling } from './signal.js';
import { SetupSigner, newSession } from './wire.js';
import * as view from './view.js';

const $ = (id) => document.getElementById(id);

// Peers the page keeps (connected, or asking to be): beyond this, a node
// the user did not choose is declined without asking.
const MAX_PEERS = 8;
// Setup messages kept from a node while the user decides (its Offer or
// Init and the candidates that trickle after it).
const MAX_HELD_SETUPS = 64;
// Declined nodes remembered, so that their further setups are dropped
// without asking again; the oldest is forgotten first.
const MAX_DECLINED = 256;

const peers = new Map(); // idHex -> Peer
// Nodes the user connected to or accepted: only their setups are answered.
const chosen = new Set();
// Nodes asking to connect: idHex -> setup messages held until Accept/Decline.
const requests = new Map();
const declined = new Set();
let selected = null;
let identity = null;
let signer = null;
let signalling = null;

function peerFor(idHex) {
  let peer = peers.get(idHex);
  if (!peer) {
    peer = new Peer({ identity, signer, signalling, idHex });
    peer.addEventListener('change', () => {
      if (idHex === selected) view.renderPeer(peer, signalling.nodes.get(idHex));
      renderNodes();
    });
    let lastState = peer.state;
    peer.addEventListener('change', () => {
      if (peer.state === lastState) return;
      lastState = peer.state;
      const error = peer.error ? `: ${peer.error}` : '';
      view.log(`${view.shortId(idHex)} ${peer.state}${error}`, peer.state === 'failed' ? 'error' : 'info');
    });
    peers.set(idHex, peer);
  }
  return peer;
}

function renderRequests() {
  view.renderRequests(requests, signalling.nodes, accept, decline);
}

// The user accepts `idHex`: its held setups are answered, in order.
async function accept(idHex) {
  const held = requests.get(idHex) || [];
  requests.delete(idHex);
  chosen.add(idHex);
  renderRequests();
  const peer = peerFor(idHex);
  if (!selected) select(idHex);
  for (const message of held) await peer.onSetup(message);
}

function decline(idHex, why = 'declined') {
  requests.delete(idHex);
  declined.delete(idHex);
  declined.add(idHex);
  if (declined.size > MAX_DECLINED) declined.delete(declined.values().next().value);
  renderRequests();
  view.log(`${view.shortId(idHex)}: connection ${why}`);
}

// A verified setup message. Nodes the user chose get an answer; any other
// node is asked about first (answering would send it this machine's
// addresses in ICE candidates), unless the page is full or it was declined.
function onSetup(from, message) {
  if (chosen.has(from)) return peerFor(from).onSetup(message);
  if (declined.has(from)) return undefined;
  const held = requests.get(from);
  if (held) {
    if (held.length < MAX_HELD_SETUPS) held.push(message);
    return undefined;
  }
  if (chosen.size + requests.size >= MAX_PEERS) {
    return decline(from, `declined automatically: this page keeps at most ${MAX_PEERS} peers`);
  }
  requests.set(from, [message]);
  view.log(`${view.shortId(from)} asks to connect (${message.kind}): accept or decline it under “Asking to connect”`);
  return renderRequests();
}

function renderNodes() {
  view.renderNodes(signalling.nodes, peers, selected, select);
}

function select(idHex) {
  selected = idHex;
  renderNodes();
  view.renderPeer(peerFor(idHex), signalling.nodes.get(idHex));
}

async function main() {
  const keyName = new URLSearchParams(location.search).get('key') || 'default';
  try {
    identity = await Identity.load(keyName);
  } catch (error) {
    $('fatal').textContent = `Cannot make or load the node key: ${error.message}. Ed25519 in WebCrypto needs a current browser and a secure context (https:// or localhost).`;
    $('fatal').hidden = false;
    return;
  }
  view.renderIdentity(identity);
  const selfTestResult = selfTest().then((result) => {
    view.renderSelfTest(result);
    if (!result.ok) view.log(`WebCrypto self-test failed: ${result.reason || 'signature mismatch'}`, 'error');
    return result;
  });

  // "Sealed setups only": the page setting, or ?sealed=require.
  const requireSealed = $('require-sealed');
  requireSealed.checked = new URLSearchParams(location.search).get('sealed') === 'require';
  if (!identity.opensSealed) {
    requireSealed.checked = false;
    requireSealed.disabled = true;
    view.log(
      "this page's key was made before sealed setups and cannot open them: its setups stay plain (signed), " +
        'and the server reads their addresses. Open the page with ?key=OTHER-NAME for a new key that seals.',
      'error',
    );
  }
  signer = new SetupSigner(newSession(identity.opensSealed));
  signalling = new Signalling(identity, { requireSealed: requireSealed.checked });
  requireSealed.addEventListener('change', () => {
    signalling.requireSealed = requireSealed.checked;
    view.log(requireSealed.checked ? 'sealed setups only: plain setups are refused' : 'plain setups accepted from nodes that cannot seal');
  });
  // For the end-to-end test and for poking around in the console.
  window.flpeer = { identity, signer, signalling, peers, requests, maxPeers: MAX_PEERS, selfTest: selfTestResult };

  signalling.addEventListener('state', () => {
    view.renderServer(signalling);
    if (signalling.state === 'online') view.log(`joined ${signalling.server} as ${view.shortId(identity.idHex)}`);
    if (signalling.reason) view.log(signalling.reason, 'error');
  });
  signalling.addEventListener('nodes', renderNodes);
  signalling.addEventListener('nodes', renderRequests);
  signalling.addEventListener('notice', (event) => view.log(event.detail.text, event.detail.level));
  signalling.addEventListener('not-connected', (event) => {
    const peer = peers.get(event.detail.idHex);
    if (peer && peer.state !== 'connected') peer.setState('failed', 'the peer is not connected to the signalling server');
  });
  signalling.addEventListener('setup', (event) => onSetup(event.detail.from, event.detail.message));
  // A node that opens sealed setups sent a plain one (its list hid that
  // this page opens them): a sealed attempt of ours shows it, if the user
  // chose that node.
  signalling.addEventListener('downgraded', (event) => {
    const peer = peers.get(event.detail.from);
    if (peer && chosen.has(event.detail.from)) peer.connect();
  });

  $('connect').addEventListener('click', () => {
    if (!selected) return;
    chosen.add(selected);
    declined.delete(selected);
    if (requests.has(selected)) return accept(selected);
    return peers.get(selected).connect();
  });
  $('disconnect').addEventListener('click', () => selected && peers.get(selected).disconnect());
  $('throughput').addEventListener('click', () => selected && peers.get(selected).runThroughput());
  $('refresh').addEventListener('click', () => signalling.requestList());
  $('chat-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('chat-input');
    if (!selected || !input.value) return;
    try {
      peers.get(selected).sendChat(input.value);
      input.value = '';
    } catch (error) {
      view.log(`not sent: ${error.message}`, 'error');
    }
  });

  view.renderServer(signalling);
  signalling.start();
}

main();
