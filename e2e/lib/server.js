'use strict';
// Test harness: builds the ipa binary once per test process (or takes IPA_BIN),
// starts `ipa serve` on a free loopback port with a fresh SQLite database, waits
// for /readyz, and stops it with SIGTERM. Every started server is also killed
// when the test process exits, so a failing test never leaves one behind.

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');

const execFileP = promisify(execFile);

const repoRoot = path.resolve(__dirname, '..', '..');
const running = new Set();

process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

let binaryPromise;

// ipaBinary returns the path of the ipa binary: $IPA_BIN, or one built from
// ./cmd/ipa into a temporary directory (once per process). Rejects with the
// compiler's output when the build fails.
function ipaBinary() {
  if (process.env.IPA_BIN) return Promise.resolve(path.resolve(process.env.IPA_BIN));
  if (!binaryPromise) {
    binaryPromise = (async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipa-e2e-bin-'));
      process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
      const bin = path.join(dir, 'ipa');
      try {
        await execFileP('go', ['build', '-o', bin, './cmd/ipa'], {
          cwd: repoRoot,
          maxBuffer: 16 << 20,
          timeout: 10 * 60 * 1000,
        });
      } catch (err) {
        throw new Error(`go build ./cmd/ipa failed:\n${err.stderr || err.message}`);
      }
      return bin;
    })();
  }
  return binaryPromise;
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the server binds it; start() retries when that happens.
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// runIpa runs one ipa command to completion and returns its stdout.
async function runIpa(args, { env } = {}) {
  const bin = await ipaBinary();
  try {
    const { stdout } = await execFileP(bin, args, {
      env: { ...process.env, ...env },
      timeout: 60 * 1000,
      maxBuffer: 16 << 20,
    });
    return stdout;
  } catch (err) {
    throw new Error(`ipa ${args.join(' ')} failed (${err.code}):\n${err.stderr || err.message}`);
  }
}

// createToken mints a token with `ipa token create` against database and
// returns it (the last non-empty line of stdout).
async function createToken(database, { actor, role }) {
  const out = await runIpa(['token', 'create', '--actor', actor, '--role', role, '--database', database]);
  const lines = out.split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines.length === 0) throw new Error('ipa token create printed nothing');
  return lines[lines.length - 1];
}

// startServer starts `ipa serve` on a fresh database in its own temporary
// directory and resolves once /readyz answers 200 (the server binds first, and answers 503 until it is built). Options:
//   auth: value of --auth ('auto' when unset: the server's default)
//   tokens: [{actor, role}] minted before the server starts; returned in order
//   args, env: extra flags and environment
// Resolves to { url, graphqlUrl, wsUrl, database, dir, tokens, pid, logs(),
// token(actor, role), stop() }.
async function startServer(opts = {}) {
  const bin = await ipaBinary();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipa-e2e-'));
  const database = `sqlite://${path.join(dir, 'ipa.db')}`;
  const tokens = [];
  for (const t of opts.tokens || []) tokens.push(await createToken(database, t));

  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      return await launch({ bin, dir, database, port, tokens, opts });
    } catch (err) {
      lastErr = err;
      if (!/address already in use/i.test(err.message)) break;
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw lastErr;
}

async function launch({ bin, dir, database, port, tokens, opts }) {
  const addr = `127.0.0.1:${port}`;
  const args = ['serve', '--addr', addr, '--database', database];
  if (opts.auth) args.push('--auth', opts.auth);
  args.push(...(opts.args || []));
  const child = spawn(bin, args, {
    cwd: dir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let output = '';
  const keep = (chunk) => {
    output += chunk;
    if (output.length > 1 << 20) output = output.slice(-(1 << 19));
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  let exitInfo = null;
  exited.then((info) => { exitInfo = info; });

  const url = `http://${addr}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exitInfo) {
      throw new Error(`ipa ${args.join(' ')} exited early (${JSON.stringify(exitInfo)}):\n${output}`);
    }
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`ipa serve did not become healthy within 30s:\n${output}`);
    }
    await sleep(100);
  }

  let stopping;
  return {
    url,
    graphqlUrl: `${url}/graphql`,
    wsUrl: `ws://${addr}/graphql`,
    database,
    dir,
    tokens,
    pid: child.pid,
    logs: () => output,
    exited: () => exitInfo,
    token: (actor, role) => createToken(database, { actor, role }),
    // stop sends SIGTERM and waits for the process to exit (SIGKILL after
    // 20s); resolves to { code, signal }. Safe to call more than once.
    stop() {
      if (!stopping) {
        stopping = (async () => {
          if (!exitInfo) {
            child.kill('SIGTERM');
            const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
            await exited;
            clearTimeout(timer);
          }
          fs.rmSync(dir, { recursive: true, force: true });
          return exitInfo;
        })();
      }
      return stopping;
    },
  };
}

module.exports = { startServer, createToken, ipaBinary, runIpa, repoRoot };
