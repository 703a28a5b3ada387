// Test support: the real relay binary serving the release build, and headless Chromium.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const RELAY_BIN = process.env.RELAY_BIN ?? path.join(root, 'target', 'debug', 'relay');
export const DIST = process.env.DIST_DIR ?? path.join(root, 'dist');
export const SCREENSHOT = path.join(root, 'docs', 'screenshot.png');

/** Longest any single expected thing may take. */
export const PATIENCE = 20_000;

/**
 * Starts the relay on 127.0.0.1 (port 0 = any free port) serving the built page.
 * The send-rate limits and per-client budgets are raised: these tests send quickly on
 * purpose, all from one address.
 */
export async function startRelay({ port = 0, env = {} } = {}) {
  const child = spawn(RELAY_BIN, ['--addr', `127.0.0.1:${port}`], {
    env: {
      ...process.env,
      RELAY_STATIC_DIR: DIST,
      RELAY_RATE: '1000',
      RELAY_BURST: '1000',
      // Every page here is 127.0.0.1: one client, as far as per-client budgets go.
      RELAY_CLIENT_RATE: '100000',
      RELAY_CLIENT_BURST: '100000',
      RELAY_REQUEST_RATE: '100000',
      RELAY_REQUEST_BURST: '100000',
      RELAY_MAX_CONNECTIONS_PER_CLIENT: '100000',
      RELAY_MAX_SOCKETS_PER_CLIENT: '100000',
      RELAY_NEW_ROOMS_PER_CLIENT: '100000',
      RUST_LOG: 'info',
      NO_COLOR: '1',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines = createInterface({ input: child.stderr });
  const log = [];
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${log.join('\n')}`)), PATIENCE);
    lines.on('line', (line) => {
      log.push(line);
      const match = line.match(/listening addr=(\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`relay exited with ${code}:\n${log.join('\n')}`)));
  });
  return {
    addr,
    port: Number(addr.split(':').pop()),
    url: `http://${addr}`,
    log,
    /** SIGKILL, as a crash would; then wait for the process to end. */
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
    /** SIGTERM, then wait for the process to end. */
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Opens the page and waits until it reports a live connection. */
export async function openChat(browser, base, { room, transport, name, viewport } = {}) {
  const context = await browser.newContext({ viewport: viewport ?? { width: 1000, height: 900 } });
  const page = await context.newPage();
  page.dialogs = [];
  page.on('dialog', async (dialog) => {
    page.dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(String(err)));
  // What the Content-Security-Policy blocked: Chromium reports each on the console.
  page.cspViolations = [];
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) page.cspViolations.push(message.text());
  });
  const query = new URLSearchParams();
  if (room) query.set('room', room);
  if (transport) query.set('transport', transport);
  if (name) query.set('name', name);
  const response = await page.goto(`${base}/?${query}`);
  page.documentPolicy = (await response.allHeaders())['content-security-policy'];
  await waitConnected(page);
  return page;
}

export async function waitConnected(page) {
  await page.waitForFunction(
    () => document.querySelector('#status')?.textContent.startsWith('connected via'),
    null,
    { timeout: PATIENCE },
  );
}

/** What `#status` says once a page is live on each transport. */
export const CONNECTED = {
  ws: 'connected via WebSocket',
  sse: 'connected via Server-Sent Events',
  longpoll: 'connected via Long polling',
  shortpoll: 'connected via Short polling',
  stream: 'connected via HTTP streaming',
  webtransport: 'connected via WebTransport',
};

/** Waits until the page is live on `transport` (not merely on some transport). */
export async function waitConnectedVia(page, transport) {
  await page.waitForFunction(
    (want) => document.querySelector('#status')?.textContent === want,
    CONNECTED[transport],
    { timeout: PATIENCE },
  );
}

export async function send(page, text) {
  await page.fill('#message', text);
  await page.press('#message', 'Enter');
}

/** The texts of the messages a page shows, in order. */
export async function texts(page) {
  return page.$$eval('#messages li.message .text', (nodes) => nodes.map((n) => n.textContent));
}

/** Waits until the page shows at least `count` messages. */
export async function waitForMessages(page, count, timeout = PATIENCE) {
  await page.waitForFunction(
    (n) => document.querySelectorAll('#messages li.message').length >= n,
    count,
    { timeout },
  );
}

/** A free TCP port on 127.0.0.1. */
export async function freePort() {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves once a Redis server answers PING on `port`; false if it does not. */
function pong(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(1000, () => socket.destroy());
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      resolve(data.toString() === '+PONG\r\n');
      socket.destroy();
    });
    socket.once('close', () => resolve(false));
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts Debian's redis-server on a free loopback port. `persistent` writes every command to
 * an append-only file before answering it, so a restart keeps everything acknowledged.
 */
export async function startRedis({ persistent = true } = {}) {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'e2e-redis-'));
  let child;
  const run = async () => {
    child = spawn('redis-server', [
      '--bind', '127.0.0.1', '--port', String(port), '--save', '',
      '--appendonly', persistent ? 'yes' : 'no', '--appendfsync', 'always', '--dir', dir,
    ], { stdio: ['ignore', 'ignore', 'inherit'] });
    const deadline = Date.now() + PATIENCE;
    while (!(await pong(port))) {
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on ${port}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  };
  await run();
  return {
    url: `redis://127.0.0.1:${port}/`,
    /** Kills it outright, as a crash would. */
    stop: kill,
    async restart() {
      await kill();
      await run();
    },
    async cleanup() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until `GET url` answers with a success status (`ok`) or a failure (`!ok`). */
export async function waitStatus(url, ok, timeout = PATIENCE) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const answered = await fetch(url).then((r) => r.ok, () => false);
    if (answered === ok) return;
    if (Date.now() > deadline) throw new Error(`${url} did not become ${ok ? 'ok' : 'unavailable'}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * The load-balancer configuration of docs/SCALING.md: round robin with no affinity, WebSocket
 * upgrades passed through, SSE unbuffered, the browser's Host (with its port) kept so that the
 * relays' same-origin check holds, the client's address appended to X-Forwarded-For (for
 * relays with RELAY_TRUSTED_PROXIES), /metrics denied.
 */
export function nginxConfig({ listen, upstreams, dir }) {
  return `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;

  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  upstream relays {
${upstreams.map((u) => `    server ${u};`).join('\n')}
  }
  server {
    listen ${listen};
    location = /metrics { return 404; }
    location / {
      proxy_pass http://relays;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_read_timeout 60s;
    }
  }
}
`;
}

/** Runs Debian's nginx in front of `upstreams` (host:port) on a free loopback port. */
export async function startNginx(upstreams) {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'e2e-nginx-'));
  const config = path.join(dir, 'nginx.conf');
  await writeFile(config, nginxConfig({ listen: `127.0.0.1:${port}`, upstreams, dir }));
  const child = spawn(process.env.NGINX ?? '/usr/sbin/nginx', ['-p', dir, '-c', config], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitStatus(`${url}/healthz`, true);
  return {
    url,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Loads the page in a fresh browser context (an empty cache) and records what Chromium's
 * network layer says it transferred for each of the page's own files (everything outside
 * /api: the HTML, JS, wasm, CSS and anything else it fetches), until `#status` says the page
 * is connected. `encodedDataLength` counts the bytes received: the response's headers and
 * its (compressed) body.
 * Returns the page, the files (url, status, headers, bytes) and the time from navigation to
 * connected, in milliseconds.
 */
export async function loadMeasured(browser, base, { room, transport, beforeLoad } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  if (beforeLoad) await beforeLoad(page);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const byId = new Map();
  cdp.on('Network.responseReceived', ({ requestId, response }) => {
    byId.set(requestId, {
      url: response.url,
      status: response.status,
      headers: response.headers,
      cached: Boolean(response.fromDiskCache || response.fromMemoryCache),
    });
  });
  const finished = new Map();
  cdp.on('Network.loadingFinished', ({ requestId, encodedDataLength }) => {
    finished.set(requestId, encodedDataLength);
  });
  const failed = [];
  cdp.on('Network.loadingFailed', ({ requestId, errorText }) => failed.push(`${requestId}: ${errorText}`));
  const query = new URLSearchParams();
  if (room) query.set('room', room);
  if (transport) query.set('transport', transport);
  const started = Date.now();
  await page.goto(`${base}/?${query}`);
  await waitConnectedVia(page, transport ?? 'ws');
  const connectedMs = Date.now() - started;
  // Every file the page asked for has finished loading once it runs; wait for the events.
  const files = () => [...byId.entries()].filter(([, r]) => !new URL(r.url).pathname.startsWith('/api/'));
  const deadline = Date.now() + PATIENCE;
  while (files().some(([id]) => !finished.has(id))) {
    if (failed.length > 0) throw new Error(`page files failed to load: ${failed.join(', ')}`);
    if (Date.now() > deadline) throw new Error('page files did not finish loading');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const lower = (headers) => Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    page,
    cdp,
    connectedMs,
    files: files().map(([id, r]) => ({
      path: new URL(r.url).pathname,
      status: r.status,
      headers: lower(r.headers),
      cached: r.cached,
      bytes: finished.get(id),
    })),
  };
}

/**
 * For a test file: a relay (see `startRelay`) and a browser, started before its tests and
 * stopped after them. Returns an object whose `relay` and `browser` are set once started.
 */
export function relayAndBrowser(options) {
  const running = {};
  before(async () => {
    running.relay = await startRelay(options);
    running.browser = await launchBrowser();
  });
  after(async () => {
    await running.browser?.close();
    await running.relay?.stop();
  });
  return running;
}

/** The names `#presence` lists on a page, in order. */
export async function presentNames(page) {
  return page.$$eval('#presence li .name', (nodes) => nodes.map((n) => n.textContent));
}

/** Waits until `#presence` lists exactly `names` (in any order). */
export async function waitPresent(page, names, timeout = PATIENCE) {
  await page.waitForFunction(
    (want) => {
      const got = [...document.querySelectorAll('#presence li .name')].map((n) => n.textContent).sort();
      return JSON.stringify(got) === JSON.stringify([...want].sort());
    },
    names,
    { timeout },
  );
}

/**
 * Starts recording, on `page`, every `#presence` line that is removed: a member who left
 * (or flickered out and back in). Read the record with `removedLines(page)`.
 */
export async function recordLeaves(page) {
  await page.evaluate(() => {
    window.removedLines = [];
    new MutationObserver((records) => {
      for (const record of records) {
        for (const node of record.removedNodes) {
          if (node.nodeType === 1 && node.matches('li')) window.removedLines.push(node.querySelector('.name')?.textContent);
        }
      }
    }).observe(document.querySelector('#presence'), { childList: true });
  });
}

export async function removedLines(page) {
  return page.evaluate(() => window.removedLines);
}
