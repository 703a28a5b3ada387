// Checks a running container from outside, the way a user would reach it: health, the page,
// and a message relayed over WebSocket and over SSE. Run by scripts/image-test.sh with
// BASE_URL set to the container's address.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PATIENCE, launchBrowser, openChat, send, texts } from './support.mjs';

const base = process.env.BASE_URL;
assert.ok(process.env.METRICS_URL, 'METRICS_URL names the metrics listener');
let browser;

before(async () => {
  assert.ok(base, 'BASE_URL names the running container');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

test('the container is healthy and ready', async () => {
  for (const path of ['/healthz', '/readyz']) {
    const response = await fetch(`${base}${path}`);
    assert.equal(response.status, 200, path);
  }
  // Metrics are on their own port (RELAY_METRICS_ADDR), not the public one.
  assert.equal((await fetch(`${base}/metrics`)).status, 404, '/metrics on the public port');
  const metrics = await (await fetch(process.env.METRICS_URL)).text();
  assert.match(metrics, /relay_rooms \d+/);
});

test('the container serves the page, compressed and cached like the relay on the host', async () => {
  const response = await fetch(`${base}/`);
  assert.equal(response.status, 200);
  const html = await response.text();
  const wasm = html.match(/\/[\w-]+_bg\.wasm/)?.[0];
  assert.ok(wasm, 'the document names the wasm');
  // Node's fetch decodes what it asked for (over plain HTTP, gzip); the headers say what came.
  const asset = await fetch(`${base}${wasm}`);
  assert.equal(asset.status, 200);
  assert.match(asset.headers.get('content-encoding') ?? '', /^(br|gzip)$/);
  assert.equal(asset.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  assert.equal(response.headers.get('cache-control'), 'no-cache');
});

test('a message is relayed over WebSocket and over SSE through the container', async () => {
  const ws = await openChat(browser, base, { room: 'container', transport: 'ws' });
  const sse = await openChat(browser, base, { room: 'container', transport: 'sse' });
  // One at a time, so that the expected order is the sending order: a WebSocket frame and
  // a POST sent back to back may reach the relay either way round.
  await send(ws, 'from the websocket page');
  await ws.waitForFunction(
    () => document.querySelectorAll('#messages li.message').length >= 1,
    null,
    { timeout: PATIENCE },
  );
  await send(sse, 'from the sse page');
  for (const page of [ws, sse]) {
    await page.waitForFunction(
      () => document.querySelectorAll('#messages li.message').length >= 2,
      null,
      { timeout: PATIENCE },
    );
    assert.deepEqual(await texts(page), ['from the websocket page', 'from the sse page']);
  }
});
