// Soak load: chat clients at the chat harness's default load plus mining heartbeats, reported minute by minute.
//
//   node bench/soak/load.mjs CONFIG.json
//
// Run by bench/soak/soak.py, which seeds the users and writes CONFIG (url, durationSeconds, chat {rooms: [{id,
// tokens}], intervalMs, payloadBytes}, miners {tokens, heartbeatSeconds, activitySeconds}). Every chat client is
// a socket.io-client websocket to /chat with its own token; it joins its room's conversation (acknowledged) and
// sends `send_message` every intervalMs, client i offset by i/N of the interval, as the harness's loadgen does.
// Latency runs from the emit to each member's `new_message`, the sender's own copy included. Each miner sends
// PATCH /api/mining/heartbeat/ every heartbeatSeconds (offset by its index), and PATCH activity-check/ instead every
// activitySeconds (phased by its index), so a session outlives ACTIVITY_TIMEOUT in a long run; latency is the
// request's round trip.
//
// Output on stdout, one JSON object a line: {"type": "ready"} once every client has joined, then one
// {"type": "minute", ...} per minute of send time (printed 5 s after the minute ends, so deliveries in flight
// count), and at the end {"type": "summary", ...} with the totals after a drain of at most 15 s.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const io = createRequire(path.join(REPO, 'package.json'))('socket.io-client').io;

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const GRACE_MS = 5000;
const DRAIN_MS = 15000;
const MAX_PER_ROOM = 32; // one bit per member in the duplicate check

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function percentiles(values) {
  if (values.length === 0) return { n: 0, p50: null, p99: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const round = (v) => Math.round(v * 10) / 10;
  return { n: sorted.length, p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted[sorted.length - 1]) };
}

// ---- per-minute buckets, by send time

const minutes = [];
function bucket(minute) {
  while (minutes.length <= minute) {
    minutes.push({
      chatSent: 0, chatExpected: 0, chatLatencies: [], duplicates: 0,
      hbLatencies: [], hbErrors: 0, hbNotMining: 0, activityErrors: 0, disconnects: 0,
    });
  }
  return minutes[minute];
}

// ---- chat

const clients = [];
for (const room of cfg.chat.rooms) {
  if (room.tokens.length > MAX_PER_ROOM) throw new Error(`at most ${MAX_PER_ROOM} clients per room`);
  room.tokens.forEach((token, member) => clients.push({ token, conversationId: room.id, member, room }));
}
const N = clients.length;
const interval = cfg.chat.intervalMs;
const perClient = Math.ceil((cfg.durationSeconds * 1000) / interval) + 1;
const sentAt = new Float64Array(N * perClient).fill(-1);
const seenBy = new Uint32Array(N * perClient); // bit per room member who received it
const joinedPerRoom = new Map();
let t0 = 0;
let totalReceived = 0;
let totalUnique = 0;
let totalExpected = 0;
let totalSent = 0;
let sendFailed = 0;
const sendErrors = {}; // error code -> how many sends the server answered with an error
const pad = 'x'.repeat(Math.max(0, cfg.chat.payloadBytes - 24));
const MARKER = /~S(\d+)\.(\d+)~/;

function connect(client) {
  return new Promise((resolve) => {
    const socket = io(`${cfg.url}/chat`, {
      transports: ['websocket'], auth: { token: client.token }, reconnection: true, timeout: 20000,
    });
    client.socket = socket;
    socket.on('new_message', (message) => {
      const now = performance.now();
      const m = MARKER.exec(message && message.body);
      if (!m) return;
      const k = Number(m[1]) * perClient + Number(m[2]);
      if (sentAt[k] < 0) return;
      totalReceived++;
      const bit = 1 << client.member;
      const b = bucket(Math.floor((sentAt[k] - t0) / 60000));
      if (seenBy[k] & bit) { b.duplicates++; return; }
      seenBy[k] |= bit;
      totalUnique++;
      b.chatLatencies.push(now - sentAt[k]);
    });
    socket.on('disconnect', () => { if (t0) bucket(Math.floor((performance.now() - t0) / 60000)).disconnects++; });
    socket.on('connect', () => {
      // A reconnect rejoins too: the room is the server's, and a new socket is in none.
      socket.timeout(20000).emit('join', { conversation_id: client.conversationId }, (err, ack) => {
        const ok = !err && ack && ack.ok;
        if (ok && !client.joined) {
          client.joined = true;
          joinedPerRoom.set(client.room, (joinedPerRoom.get(client.room) || 0) + 1);
        }
        resolve(ok);
      });
    });
    socket.on('connect_error', (err) => { if (!client.joined) { client.error = String(err && err.message); } });
    setTimeout(() => resolve(false), 30000);
  });
}

async function connectAll() {
  let next = 0;
  let ok = 0;
  const worker = async () => {
    while (next < N) {
      const i = next++;
      if (await connect(clients[i])) ok++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(50, N) }, worker));
  return ok;
}

function send(clientIndex, seq) {
  const client = clients[clientIndex];
  const k = clientIndex * perClient + seq;
  if (!client.socket.connected) { sendFailed++; return; }
  const now = performance.now();
  sentAt[k] = now;
  const b = bucket(Math.floor((now - t0) / 60000));
  b.chatSent++;
  const expected = joinedPerRoom.get(client.room) || 0;
  b.chatExpected += expected;
  totalExpected += expected;
  totalSent++;
  client.socket.emit('send_message', {
    conversation_id: client.conversationId, body: `~S${clientIndex}.${seq}~ ${pad}`, client_id: `soak-${k}`,
  }, (ack) => {
    if (ack && ack.error) sendErrors[ack.error.code] = (sendErrors[ack.error.code] || 0) + 1;
  });
}

// ---- heartbeats

const miners = cfg.miners.tokens;
let hbTotal = 0;
let hbErrorsTotal = 0;
const hbErrorKinds = {}; // "HTTP 503", "TypeError: fetch failed", ... -> count: the report names what failed

function hbFailed(b, kind) {
  b.hbErrors++;
  hbErrorsTotal++;
  hbErrorKinds[kind] = (hbErrorKinds[kind] || 0) + 1;
}

async function heartbeat(token, kind) {
  const started = performance.now();
  const b = bucket(Math.floor((started - t0) / 60000));
  const url = `${cfg.url}/api/mining/${kind === 'heartbeat' ? 'heartbeat' : 'activity-check'}/`;
  try {
    const response = await fetch(url, { method: 'PATCH', headers: { Authorization: `Bearer ${token}` } });
    const body = await response.text();
    if (kind !== 'heartbeat') { if (!response.ok) b.activityErrors++; return; }
    hbTotal++;
    b.hbLatencies.push(performance.now() - started);
    if (!response.ok) hbFailed(b, `HTTP ${response.status}`);
    else if (!/"is_mining":\s*true/.test(body)) b.hbNotMining++;
  } catch (error) {
    if (kind === 'heartbeat') {
      hbTotal++;
      hbFailed(b, `${error.name}: ${error.cause ? error.cause.code || error.cause.message : error.message}`);
    } else b.activityErrors++;
  }
}

// ---- the run

function report(minute) {
  const b = bucket(minute);
  const chat = percentiles(b.chatLatencies);
  const hb = percentiles(b.hbLatencies);
  out({
    type: 'minute', minute,
    chat: {
      sent: b.chatSent, expected: b.chatExpected, delivered: chat.n, duplicates: b.duplicates,
      p50: chat.p50, p99: chat.p99, max: chat.max,
      connected: clients.filter((c) => c.socket && c.socket.connected).length, disconnects: b.disconnects,
    },
    heartbeat: {
      n: hb.n, errors: b.hbErrors, notMining: b.hbNotMining, activityErrors: b.activityErrors,
      p50: hb.p50, p99: hb.p99, max: hb.max,
    },
  });
  b.chatLatencies = []; // reported: late arrivals still count in the totals
  b.hbLatencies = [];
}

async function main() {
  const joined = await connectAll();
  if (joined < N) {
    const failed = clients.filter((c) => !c.joined).slice(0, 3).map((c) => c.error || 'no join ack');
    out({ type: 'fatal', message: `${joined}/${N} chat clients joined`, examples: failed });
    process.exit(2);
  }
  t0 = performance.now();
  out({ type: 'ready', clients: N, miners: miners.length });
  const end = t0 + cfg.durationSeconds * 1000;
  clients.forEach((_, i) => {
    let seq = 0;
    const off = (i / N) * interval;
    const tick = () => {
      if (performance.now() >= end || seq >= perClient) return;
      send(i, seq++);
      setTimeout(tick, Math.max(0, t0 + off + seq * interval - performance.now()));
    };
    setTimeout(tick, off);
  });
  const hbMs = cfg.miners.heartbeatSeconds * 1000;
  const activityEvery = Math.max(1, Math.round(cfg.miners.activitySeconds / cfg.miners.heartbeatSeconds));
  miners.forEach((token, i) => {
    let n = 0;
    const off = (i / miners.length) * hbMs;
    // Users' activity checks come whenever they touch the app, not all in the same minute: each miner's are
    // phased by its index, so about miners/activityEvery of each heartbeat round are activity checks.
    const phase = i % activityEvery;
    const tick = () => {
      if (performance.now() >= end) return;
      n++;
      heartbeat(token, (n + phase) % activityEvery === 0 ? 'activity' : 'heartbeat');
      setTimeout(tick, Math.max(0, t0 + off + n * hbMs - performance.now()));
    };
    setTimeout(tick, off);
  });
  const total = Math.ceil(cfg.durationSeconds / 60);
  for (let minute = 0; minute < total; minute++) {
    const due = t0 + Math.min((minute + 1) * 60000, cfg.durationSeconds * 1000) + GRACE_MS;
    await sleep(Math.max(0, due - performance.now()));
    report(minute);
  }
  const drainEnd = performance.now() + DRAIN_MS;
  while (totalUnique < totalExpected && performance.now() < drainEnd) await sleep(100);
  out({
    type: 'summary',
    chat: {
      clients: N, sent: totalSent, sendFailed, expected: totalExpected, received: totalReceived,
      unique: totalUnique, lost: Math.max(0, totalExpected - totalUnique), sendErrors,
      duplicates: minutes.reduce((s, b) => s + b.duplicates, 0),
    },
    heartbeat: { sent: hbTotal, errors: hbErrorsTotal, errorKinds: hbErrorKinds, miners: miners.length },
  });
  for (const c of clients) c.socket.close();
  await sleep(200);
  process.exit(0);
}

main().catch((err) => {
  out({ type: 'fatal', message: String((err && err.stack) || err) });
  process.exit(1);
});
