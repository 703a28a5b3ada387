// The first load of the page, as a browser with an empty cache makes it: served compressed,
// hashed files cached for good, and small — measured from Chromium's own network events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  loadMeasured, openChat, relayAndBrowser, send, texts, waitConnected, waitForMessages,
} from './support.mjs';

/** The most a first load may transfer (HTML + JS + wasm + CSS, headers included). */
const BUDGET = 100_000;
const TRANSPORTS = ['ws', 'sse', 'longpoll', 'shortpoll'];
const running = relayAndBrowser();

test('a first load is compressed, cached for good where hashed, within budget, and chats on every transport', async () => {
  const pages = [];
  for (const transport of TRANSPORTS) {
    const { page, files, connectedMs } = await loadMeasured(running.browser, running.relay.url, { room: 'first-load', transport });
    pages.push(page);
    const total = files.reduce((sum, f) => sum + f.bytes, 0);
    console.log(`first load via ${transport}: ${total} bytes transferred in ${files.length} files, connected after ${connectedMs} ms`);
    for (const f of files) console.log(`  ${f.path} ${f.status} ${f.headers['content-encoding'] ?? 'identity'} ${f.bytes} bytes`);
    for (const kind of ['.js', '.wasm']) {
      const file = files.find((f) => f.path.endsWith(kind));
      assert.ok(file, `a ${kind} file was loaded`);
      assert.match(file.headers['content-encoding'] ?? '', /^(br|gzip)$/, `${file.path} arrives compressed`);
      assert.equal(file.headers['cache-control'], 'public, max-age=31536000, immutable', file.path);
      assert.match(file.headers.vary ?? '', /accept-encoding/i, file.path);
    }
    const html = files.find((f) => f.path === '/');
    assert.equal(html.headers['cache-control'], 'no-cache', 'the document is revalidated');
    assert.ok(total <= BUDGET, `${total} bytes transferred, over the ${BUDGET}-byte budget`);
  }
  // The chat works on all four: a WebSocket send, then a POST from the short poller.
  await send(pages[0], 'loaded and talking');
  for (const page of pages) await waitForMessages(page, 1);
  await send(pages[3], 'and posting');
  for (const page of pages) {
    await waitForMessages(page, 2);
    assert.deepEqual(await texts(page), ['loaded and talking', 'and posting']);
  }
  for (const page of pages) await page.context().close();
});

test('a second visit takes the hashed files from the cache without asking', async () => {
  const { page, cdp, files } = await loadMeasured(running.browser, running.relay.url, { room: 'second-load' });
  const hashed = files.filter((f) => /\.(js|wasm|css)$/.test(f.path)).map((f) => f.path);
  assert.ok(hashed.length >= 3, `hashed files: ${hashed}`);
  // What crossed the network on the second visit, by path: a file taken from the cache
  // costs no bytes (Chromium reports such hits as from the disk or the memory cache).
  const urls = new Map();
  const fromCache = new Set();
  const wire = new Map();
  cdp.on('Network.requestWillBeSent', ({ requestId, request }) => urls.set(requestId, new URL(request.url).pathname));
  cdp.on('Network.requestServedFromCache', ({ requestId }) => fromCache.add(requestId));
  cdp.on('Network.responseReceived', ({ requestId, response }) => {
    if (response.fromDiskCache) fromCache.add(requestId);
  });
  cdp.on('Network.loadingFinished', ({ requestId, encodedDataLength }) => wire.set(requestId, encodedDataLength));
  // A new visit (another URL: the same one would be a reload, which revalidates).
  await page.goto(`${running.relay.url}/?room=second-load-again`);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.startsWith('connected via'));
  const visited = new Map([...urls].map(([id, path]) => [path, { cached: fromCache.has(id), bytes: wire.get(id) }]));
  for (const path of hashed) {
    const seen = visited.get(path);
    assert.ok(seen?.cached || seen?.bytes === 0, `${path} came from the cache: ${JSON.stringify(seen)}`);
  }
  const document = visited.get('/');
  assert.ok(document && !document.cached && document.bytes > 0, 'the document itself was fetched again');
  await page.context().close();
});

test('reloading the page revalidates the document and it still runs under its own policy', async () => {
  const page = await openChat(running.browser, running.relay.url, { room: 'reload' });
  await page.reload();
  await waitConnected(page);
  assert.deepEqual(page.cspViolations, []);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
