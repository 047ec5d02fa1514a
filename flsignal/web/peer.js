// One WebRTC connection to another node, with flnode's roles and channels:
// the node with the smaller public key initiates (creates the channels and
// sends the Offer); the other asks for an offer with Init. Both trickle
// candidates; those that arrive before the remote description wait.
//
// Channels: `wg` (unordered, no retransmissions; flnode carries WireGuard
// on it, the page sends its throughput test there) and `ctl` (reliable),
// which carries
//   ping<t> / pong<t>         round-trip time (flnode answers pings too)
//   msg:<text>                chat
//   bulkend <id>              the throughput test's data has all been sent
//   bulkack <id> <bytes>      bytes received on `wg` since the last bulkend
//   bulk <id> <i> <n> ...     an older page's test chunks (on `ctl`), still
//                             counted and answered with bulkack after chunk n-1

export const WG_CHANNEL = 'wg';
export const CTL_CHANNEL = 'ctl';
// Remote candidates kept while waiting for the remote description.
const MAX_PENDING_CANDIDATES = 64;
// An attempt that is not connected by then has failed.
const SETUP_TIMEOUT_MS = 20000;
const PING_INTERVAL_MS = 2000;
// Throughput test: bytes sent over `wg` (what WireGuard would get), the
// largest message (smaller if the peer says so), how much may wait unsent
// in the browser (refilled whenever half of it has gone out; well under
// Chromium's 16 MiB send queue), and bytes sent first and not counted.
// `wg` has no retransmissions, so one lost packet loses its whole
// message: 16 KiB messages (14 packets) lose less than 256 KiB ones when
// the receiver falls behind, at the same rate (BENCHMARKS.md, "The page's
// throughput test"). runThroughput() takes other values for measuring
// (tests/browser/sweep.mjs).
export const BULK_DEFAULTS = {
  bytes: 24 * 1024 * 1024,
  message: 16 * 1024,
  inFlight: 4 * 1024 * 1024,
  warmup: 4 * 1024 * 1024,
};
const BULK_TIMEOUT_MS = 30000;

// The port of flsignal's STUN service (`--stun-listen`, default 3478).
const STUN_PORT = 3478;

// The page's host as a STUN URL wants it (IPv6 literals keep brackets).
function stunHost() {
  return location.hostname;
}

export const STATES = {
  idle: 'not connected',
  waiting: 'asked for an offer…',
  connecting: 'connecting…',
  connected: 'connected',
  failed: 'failed',
  closed: 'closed',
};

export class Peer extends EventTarget {
  constructor({ identity, signer, signalling, idHex }) {
    super();
    this.identity = identity;
    this.signer = signer;
    this.signalling = signalling;
    this.idHex = idHex;
    this.initiator = identity.idHex < idHex;
    this.state = 'idle';
    this.error = '';
    this.pc = null;
    this.wasConnected = false;
    this.ctl = null;
    this.wg = null;
    this.wgReceived = 0; // bytes on `wg` since the last bulkend
    this.attempt = null;
    this.pendingCandidates = [];
    this.path = null;
    this.rttMs = null;
    this.throughput = null; // {mbps, bytes, seconds} or {running: true}
    this.chat = []; // {from: 'me' | 'peer', text}
    this.timers = [];
    this.bulkWaiters = new Map(); // test id -> resolve(bytes)
    this.bulkReceived = new Map(); // test id -> bytes so far
  }

  emit() {
    this.dispatchEvent(new Event('change'));
  }

  setState(state, error = '') {
    this.state = state;
    this.error = error;
    this.emit();
  }

  sendSetup(kind, payload = '') {
    return this.signalling.sendSetup(this.idHex, this.attempt, this.signer, { kind, payload });
  }

  // The user asked for a connection.
  async connect() {
    if (this.initiator) return this.offer();
    this.reset();
    this.attempt = this.signer.nextAttempt();
    this.setState('waiting');
    this.armTimeout();
    await this.sendSetup('Init');
  }

  disconnect() {
    this.reset();
    this.setState('closed');
  }

  async onSetup({ kind, payload }) {
    try {
      if (kind === 'Init' && this.initiator) {
        await this.offer();
      } else if (kind === 'Offer' && !this.initiator) {
        const pc = this.newConnection();
        await pc.setRemoteDescription({ type: 'offer', sdp: payload });
        await this.flushCandidates();
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        await this.sendSetup('Answer', answer.sdp);
      } else if (kind === 'Answer' && this.initiator && this.pc && this.pc.signalingState === 'have-local-offer') {
        await this.pc.setRemoteDescription({ type: 'answer', sdp: payload });
        await this.flushCandidates();
      } else if (kind === 'IceCandidate') {
        if (this.pc && this.pc.remoteDescription) await this.addCandidate(payload);
        else if (this.pendingCandidates.length < MAX_PENDING_CANDIDATES) this.pendingCandidates.push(payload);
      }
    } catch (error) {
      this.setState('failed', `setup failed at ${kind}: ${error.message}`);
    }
  }

  async offer() {
    const pc = this.newConnection();
    this.attachChannel(pc.createDataChannel(WG_CHANNEL, { ordered: false, maxRetransmits: 0 }));
    this.attachChannel(pc.createDataChannel(CTL_CHANNEL));
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await this.sendSetup('Offer', offer.sdp);
  }

  reset() {
    this.timers.forEach(clearInterval);
    this.timers = [];
    const pc = this.pc;
    this.pc = null;
    this.ctl = null;
    this.wg = null;
    this.wgReceived = 0;
    if (pc) pc.close();
    this.pendingCandidates = [];
    this.path = null;
    this.rttMs = null;
  }

  // A fresh connection (and a fresh signing generation) replacing any old one.
  newConnection() {
    this.reset();
    this.attempt = this.signer.nextAttempt();
    // flsignal's own STUN service (on its default port): server-reflexive
    // candidates for peers behind NAT, and a usable address even where
    // Chromium hides host addresses behind mDNS names that a node cannot
    // resolve.
    const iceServers = [{ urls: `stun:${stunHost()}:${STUN_PORT}` }];
    // flsignal's TURN relay, with the credential it sent this page.
    const turn = this.signalling.turn;
    if (turn) {
      const urls = [`turn:${stunHost()}:${turn.port}?transport=udp`];
      // Over TCP and TLS too, where flsignal listens for them: the way out
      // of networks that let no UDP through.
      if (turn.tcp_port) urls.push(`turn:${stunHost()}:${turn.tcp_port}?transport=tcp`);
      if (turn.tls_port) urls.push(`turns:${stunHost()}:${turn.tls_port}?transport=tcp`);
      iceServers.push({ urls, username: turn.username, credential: turn.password });
    }
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    this.wasConnected = false;
    this.setState('connecting');
    this.armTimeout();
    pc.onicecandidate = (event) => {
      if (pc === this.pc && event.candidate && event.candidate.candidate) {
        this.sendSetup('IceCandidate', event.candidate.candidate);
      }
    };
    pc.ondatachannel = (event) => pc === this.pc && this.attachChannel(event.channel);
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === 'connected') {
        this.wasConnected = true;
        this.setState('connected');
        this.refreshPath();
      } else if (pc.connectionState === 'failed') {
        this.setState(
          'failed',
          this.wasConnected
            ? 'the connection was lost (the peer went away or the path broke)'
            : 'ICE found no working path between the two nodes (firewall, or both behind NAT without STUN/TURN)',
        );
      } else if (pc.connectionState === 'disconnected') {
        this.setState('connecting', 'the path was interrupted; waiting for it to come back');
      }
    };
    return pc;
  }

  armTimeout() {
    const pc = this.pc;
    const timer = setTimeout(() => {
      if (this.pc === pc && this.state !== 'connected' && this.state !== 'failed') {
        const why = this.state === 'waiting' ? 'no offer came back' : 'no candidate pair worked';
        this.setState('failed', `not connected after ${SETUP_TIMEOUT_MS / 1000} s: ${why}`);
      }
    }, SETUP_TIMEOUT_MS);
    this.timers.push(timer);
  }

  async flushCandidates() {
    const pending = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const candidate of pending) await this.addCandidate(candidate);
  }

  async addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate({ candidate, sdpMLineIndex: 0 });
    } catch (error) {
      this.signalling.notice(`remote candidate refused: ${error.message}`);
    }
  }

  attachChannel(channel) {
    if (channel.label === WG_CHANNEL) {
      this.wg = channel;
      channel.binaryType = 'arraybuffer';
      channel.onmessage = (event) => {
        this.wgReceived += event.data.byteLength ?? event.data.length ?? 0;
      };
      return;
    }
    if (channel.label !== CTL_CHANNEL) return;
    channel.onopen = () => {
      this.ctl = channel;
      // A node that offered made `ctl` only (flnode, to a test peer): the
      // throughput test needs a `wg` channel of its own.
      if (!this.wg && this.pc) this.attachChannel(this.pc.createDataChannel(WG_CHANNEL, { ordered: false, maxRetransmits: 0 }));
      this.ping();
      this.timers.push(setInterval(() => this.ping(), PING_INTERVAL_MS));
      this.timers.push(setInterval(() => this.refreshPath(), PING_INTERVAL_MS));
      this.emit();
    };
    channel.onclose = () => {
      // Our own reset() forgets the channel before closing it; anything
      // else closing the channel we use is the peer hanging up.
      if (this.ctl !== channel) return;
      this.reset();
      this.setState('closed', 'the peer closed the connection');
    };
    channel.onmessage = (event) => this.onControl(channel, String(event.data));
  }

  onControl(channel, text) {
    if (text.startsWith('ping')) {
      channel.send(`pong${text.slice(4)}`);
    } else if (text.startsWith('pong')) {
      const sent = Number(text.slice(4));
      if (Number.isFinite(sent)) this.rttMs = performance.now() - sent;
      this.emit();
    } else if (text.startsWith('msg:')) {
      this.chat.push({ from: 'peer', text: text.slice(4) });
      this.emit();
    } else if (text.startsWith('bulkend ')) {
      channel.send(`bulkack ${text.split(' ')[1]} ${this.wgReceived}`);
      this.wgReceived = 0;
    } else if (text.startsWith('bulk ')) {
      const [, id, index, count] = text.split(' ', 4);
      const bytes = (this.bulkReceived.get(id) || 0) + text.length;
      this.bulkReceived.set(id, bytes);
      if (Number(index) === Number(count) - 1) {
        this.bulkReceived.delete(id);
        channel.send(`bulkack ${id} ${bytes}`);
      }
    } else if (text.startsWith('bulkack ')) {
      const [, id, bytes] = text.split(' ');
      const resolve = this.bulkWaiters.get(id);
      if (resolve) resolve(Number(bytes));
    }
  }

  // No ping while a throughput test runs: the figure shown is the round
  // trip of an idle path, not of a ping queued behind the test's data.
  ping() {
    if (this.throughput && this.throughput.running) return;
    if (this.ctl && this.ctl.readyState === 'open') this.ctl.send(`ping${performance.now()}`);
  }

  sendChat(text) {
    if (!this.ctl || this.ctl.readyState !== 'open') throw new Error('not connected');
    this.ctl.send(`msg:${text}`);
    this.chat.push({ from: 'me', text });
    this.emit();
  }

  // The throughput test: `warmup` bytes first, not counted (a fresh
  // connection's first burst overruns Chromium's socket and is slow and
  // lossy once: BENCHMARKS.md), then `bytes`, each as sendBulk() sends
  // them. The figure is what the receiver counted of `bytes` over the time
  // to its answer; `wg` has no retransmissions, so what is lost is shown.
  async runThroughput(options = {}) {
    const { bytes: total, message: size, inFlight, warmup } = { ...BULK_DEFAULTS, ...options };
    const counts = (n, least) => Number.isSafeInteger(n) && n >= least;
    if (![total, size, inFlight].every((n) => counts(n, 1)) || !counts(warmup, 0)) {
      throw new Error('throughput test: bytes, message and inFlight must be positive integers, warmup at least 0');
    }
    const { ctl, wg } = this;
    if (!ctl || ctl.readyState !== 'open' || !wg || wg.readyState !== 'open') throw new Error('not connected');
    this.throughput = { running: true };
    this.emit();
    // No larger than the peer takes (its SDP's max-message-size).
    const limit = this.pc && this.pc.sctp ? this.pc.sctp.maxMessageSize : 0;
    const message = new Uint8Array(limit > 0 ? Math.min(size, limit) : size);
    try {
      if (warmup > 0) await this.sendBulk(ctl, wg, message, warmup, inFlight);
      const start = performance.now();
      const { sent, bytes } = await this.sendBulk(ctl, wg, message, total, inFlight);
      const seconds = (performance.now() - start) / 1000;
      this.throughput = { bytes, sent, seconds, mbps: (bytes * 8) / seconds / 1e6, message: message.byteLength };
    } catch (error) {
      this.throughput = { error: error.message };
    } finally {
      this.emit();
      this.ping();
    }
    return this.throughput;
  }

  // Sends `total` bytes over `wg` as copies of `message` as fast as the
  // browser's buffer drains, keeping up to `inFlight` in it, then
  // `bulkend` over `ctl` once the buffer is empty: {sent, bytes the
  // receiver counted}.
  async sendBulk(ctl, wg, message, total, inFlight) {
    const id = Math.random().toString(36).slice(2, 10);
    const acked = new Promise((resolve, reject) => {
      this.bulkWaiters.set(id, resolve);
      setTimeout(() => reject(new Error('no bulkack within 30 s')), BULK_TIMEOUT_MS);
    });
    // Not awaited if sending fails first; that is no unhandled rejection.
    acked.catch(() => {});
    const drained = (threshold) =>
      new Promise((resolve) => {
        wg.bufferedAmountLowThreshold = threshold;
        if (wg.bufferedAmount <= threshold) return resolve();
        wg.addEventListener('bufferedamountlow', resolve, { once: true });
        wg.addEventListener('close', resolve, { once: true });
      });
    try {
      let sent = 0;
      while (sent < total) {
        wg.send(message);
        sent += message.byteLength;
        if (wg.bufferedAmount > inFlight) await drained(inFlight / 2);
        if (wg.readyState !== 'open') throw new Error('the channel closed during the test');
      }
      await drained(0);
      ctl.send(`bulkend ${id}`);
      return { sent, bytes: await acked };
    } finally {
      this.bulkWaiters.delete(id);
    }
  }

  // The selected candidate pair from getStats: types, protocol, addresses, RTT.
  async refreshPath() {
    const pc = this.pc;
    if (!pc) return;
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((report) => {
      if (report.type === 'transport' && report.selectedCandidatePairId) pair = stats.get(report.selectedCandidatePairId);
    });
    if (!pair) {
      stats.forEach((report) => {
        if (report.type === 'candidate-pair' && report.nominated && report.state === 'succeeded') pair = report;
      });
    }
    if (!pair || pc !== this.pc) return;
    // Chromium hides the address of peer-reflexive remote candidates.
    const describe = (candidate) =>
      candidate
        ? {
            type: candidate.candidateType,
            protocol: candidate.protocol,
            address: candidate.address ? `${candidate.address}:${candidate.port}` : '(address hidden)',
          }
        : null;
    this.path = {
      local: describe(stats.get(pair.localCandidateId)),
      remote: describe(stats.get(pair.remoteCandidateId)),
      iceRttMs: pair.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null,
    };
    this.emit();
  }
}
