// Test support: the real relay binary serving the release build, and headless Chromium.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const RELAY_BIN = process.env.RELAY_BIN ?? path.join(root, 'target', 'debug', 'relay');
export const DIST = process.env.DIST_DIR ?? path.join(root, 'dist');
export const SCREENSHOT = path.join(root, 'docs', 'screenshot.png');

/** Longest any single expected thing may take. */
export const PATIENCE = 20_000;

/**
 * Starts the relay on 127.0.0.1 (port 0 = any free port) serving the built page.
 * The send-rate limits are raised: these tests send quickly on purpose.
 */
export async function startRelay({ port = 0, env = {} } = {}) {
  const child = spawn(RELAY_BIN, ['--addr', `127.0.0.1:${port}`], {
    env: {
      ...process.env,
      RELAY_STATIC_DIR: DIST,
      RELAY_RATE: '1000',
      RELAY_BURST: '1000',
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
export async function openChat(browser, base, { room, transport, viewport } = {}) {
  const context = await browser.newContext({ viewport: viewport ?? { width: 1000, height: 900 } });
  const page = await context.newPage();
  page.dialogs = [];
  page.on('dialog', async (dialog) => {
    page.dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(String(err)));
  const query = new URLSearchParams();
  if (room) query.set('room', room);
  if (transport) query.set('transport', transport);
  await page.goto(`${base}/?${query}`);
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
