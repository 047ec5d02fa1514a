// Rendering: plain DOM, no framework. Each function redraws one part of
// the page from the state it is given; app.js decides when.

import { STATES } from './peer.js';

const $ = (id) => document.getElementById(id);

// A DOM element: h('li', {class: 'x'}, 'text', child, ...).
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (value !== false && value != null) element.setAttribute(name, value === true ? '' : value);
  }
  element.append(...children.filter((child) => child != null));
  return element;
}

export function shortId(idHex) {
  return `${idHex.slice(0, 8)}…${idHex.slice(-4)}`;
}

const SERVER_STATES = { connecting: 'connecting', online: 'online', offline: 'offline' };

export function renderServer(signalling) {
  const badge = $('server-state');
  badge.textContent = SERVER_STATES[signalling.state] || signalling.state;
  badge.dataset.state = signalling.state;
  $('server-reason').textContent = signalling.reason;
  $('server-name').textContent = signalling.server;
}

export function renderIdentity(identity) {
  $('node-id').textContent = identity.idHex;
  $('key-name').textContent = identity.name;
}

export function renderSelfTest(result) {
  const cell = $('selftest');
  cell.textContent = result.ok
    ? 'setup signatures and sealing match flproto'
    : `MISMATCH: ${result.reason || (result.sealed && result.sealed.reason) || result.signature}`;
  cell.dataset.state = result.ok ? 'good' : 'bad';
}

// The node list: one row per online node, with its connection state.
export function renderNodes(nodes, peers, selected, onPick) {
  const list = $('node-list');
  const rows = [...nodes.values()]
    .sort((a, b) => a.name.localeCompare(b.name) || a.idHex.localeCompare(b.idHex))
    .map((node) => {
      const peer = peers.get(node.idHex);
      const state = peer ? peer.state : 'idle';
      return h(
        'li',
        { class: node.idHex === selected ? 'selected' : null, 'data-id': node.idHex },
        h(
          'button',
          { type: 'button', class: 'node', onclick: () => onPick(node.idHex) },
          h('span', { class: 'name' }, node.name || '(no name)'),
          h('span', { class: 'mono id' }, shortId(node.idHex)),
          h('span', { class: 'client' }, node.client),
          h('span', { class: 'state', 'data-state': state }, STATES[state]),
        ),
      );
    });
  list.replaceChildren(...rows);
  $('node-count').textContent = `(${nodes.size})`;
  $('nodes-empty').hidden = nodes.size > 0;
}

// The nodes asking to connect, each with Accept and Decline.
export function renderRequests(requests, nodes, onAccept, onDecline) {
  const rows = [...requests.keys()].map((idHex) => {
    const node = nodes.get(idHex);
    const who = node ? `${node.name} · ${shortId(idHex)}` : shortId(idHex);
    return h(
      'li',
      { 'data-id': idHex },
      h('span', {}, 'Accept a connection from ', h('span', { class: 'mono' }, who), '?'),
      h('button', { type: 'button', class: 'small accept', onclick: () => onAccept(idHex) }, 'Accept'),
      h('button', { type: 'button', class: 'small decline', onclick: () => onDecline(idHex) }, 'Decline'),
    );
  });
  $('request-list').replaceChildren(...rows);
  $('requests').hidden = rows.length === 0;
}

function describePath(path) {
  if (!path || !path.local || !path.remote) return '—';
  const { local, remote } = path;
  return `${local.type} ${local.address} ⇄ ${remote.type} ${remote.address} (${local.protocol})`;
}

function describeThroughput(result) {
  if (!result) return '—';
  if (result.running) return 'measuring…';
  if (result.error) return `failed: ${result.error}`;
  const mib = (result.bytes / 1048576).toFixed(1);
  const lost = result.sent ? `, ${(100 * (1 - result.bytes / result.sent)).toFixed(1)} % lost` : '';
  return `${result.mbps.toFixed(1)} Mbit/s (${mib} MiB in ${result.seconds.toFixed(2)} s${lost})`;
}

// The panel of the selected peer.
export function renderPeer(peer, node) {
  const panel = $('peer');
  panel.hidden = !peer;
  if (!peer) return;
  $('peer-name').textContent = node ? `${node.name} · ${shortId(peer.idHex)}` : shortId(peer.idHex);
  $('peer-role').textContent = peer.initiator ? 'this page offers (its key is smaller)' : 'the peer offers (its key is smaller)';
  const state = $('peer-state');
  state.textContent = STATES[peer.state];
  state.dataset.state = peer.state;
  $('peer-error').textContent = peer.error;
  $('peer-error').hidden = !peer.error;
  $('peer-path').textContent = describePath(peer.path);
  $('peer-rtt').textContent = peer.rttMs == null ? '—' : `${peer.rttMs.toFixed(1)} ms`;
  $('peer-throughput').textContent = describeThroughput(peer.throughput);
  const open = Boolean(peer.ctl);
  $('connect').textContent = peer.state === 'idle' || peer.state === 'closed' ? 'Connect' : 'Reconnect';
  $('throughput').disabled = !open || Boolean(peer.throughput && peer.throughput.running);
  $('disconnect').disabled = !peer.pc;
  $('chat-input').disabled = !open;
  $('chat-send').disabled = !open;
  $('chat').replaceChildren(...peer.chat.map((line) => h('li', { class: line.from }, line.text)));
}

const MAX_LOG_LINES = 200;

export function log(text, level = 'info') {
  const list = $('log');
  const time = new Date().toLocaleTimeString();
  list.prepend(h('li', { class: level }, h('time', {}, time), ' ', text));
  while (list.children.length > MAX_LOG_LINES) list.lastChild.remove();
}
