// The page: loads the node key, checks WebCrypto against the Rust test
// vector, joins the server and wires peers to the view.

import { Identity } from './identity.js';
import { Peer } from './peer.js';
import { run as selfTest } from './selftest.js';
import { Signalling } from './signal.js';
import { SetupSigner } from './wire.js';
import * as view from './view.js';

const $ = (id) => document.getElementById(id);

const peers = new Map(); // idHex -> Peer
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

  signer = new SetupSigner();
  signalling = new Signalling(identity);
  // For the end-to-end test and for poking around in the console.
  window.flpeer = { identity, signer, signalling, peers, selfTest: selfTestResult };

  signalling.addEventListener('state', () => {
    view.renderServer(signalling);
    if (signalling.state === 'online') view.log(`joined ${signalling.server} as ${view.shortId(identity.idHex)}`);
    if (signalling.reason) view.log(signalling.reason, 'error');
  });
  signalling.addEventListener('nodes', renderNodes);
  signalling.addEventListener('notice', (event) => view.log(event.detail.text, event.detail.level));
  signalling.addEventListener('not-connected', (event) => {
    const peer = peers.get(event.detail.idHex);
    if (peer && peer.state !== 'connected') peer.setState('failed', 'the peer is not connected to the signalling server');
  });
  signalling.addEventListener('setup', (event) => {
    const { from, message } = event.detail;
    const known = peers.has(from);
    const peer = peerFor(from);
    if (!known) view.log(`${view.shortId(from)} is connecting to us (${message.kind})`);
    if (!selected) select(from);
    peer.onSetup(message);
  });

  $('connect').addEventListener('click', () => selected && peers.get(selected).connect());
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
