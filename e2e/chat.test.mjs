// What a person does on the page, in headless Chromium against the relay serving the
// release build.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  CONNECTED, PATIENCE, SCREENSHOT, launchBrowser, openChat, send, startRelay, texts,
  waitConnected, waitConnectedVia, waitForMessages,
} from './support.mjs';

const TRANSPORTS = ['ws', 'sse', 'longpoll', 'shortpoll', 'stream', 'webtransport'];
let relay;
let browser;

before(async () => {
  // WebTransport on a free UDP port, with a self-signed certificate the page trusts by hash.
  relay = await startRelay({ env: { RELAY_WT_ADDR: '127.0.0.1:0' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await relay?.stop();
});

test('tutorial flow: a message sent from one page appears in both', async () => {
  const alice = await openChat(browser, relay.url, { room: 'tutorial' });
  const bob = await openChat(browser, relay.url, { room: 'tutorial' });
  // The tutorial's greeting.
  const greeting = await alice.textContent('#messages li.notice');
  assert.match(greeting, /connection established \(WebSocket\)/);
  await send(alice, 'hello from alice');
  for (const page of [alice, bob]) {
    await waitForMessages(page, 1);
    assert.deepEqual(await texts(page), ['hello from alice']);
  }
  assert.equal(await alice.inputValue('#message'), '', 'the field clears after sending');
});

// Shared with the panel test below, which checks what these pages measured.
const byTransport = {};

test('six pages, one per transport, each sends: all show every message in the same order', async () => {
  for (const transport of TRANSPORTS) {
    byTransport[transport] = await openChat(browser, relay.url, { room: 'four', transport });
    const status = await byTransport[transport].textContent('#status');
    assert.equal(status, CONNECTED[transport], 'the page uses the transport it asked for');
  }
  for (const transport of TRANSPORTS) {
    await send(byTransport[transport], `sent over ${transport}`);
    // One at a time, so that the expected order is the sending order.
    for (const page of Object.values(byTransport)) {
      await page.waitForFunction(
        (t) => [...document.querySelectorAll('#messages li.message .text')].some((n) => n.textContent === t),
        `sent over ${transport}`,
        { timeout: PATIENCE },
      );
    }
  }
  const expected = TRANSPORTS.map((t) => `sent over ${t}`);
  for (const [transport, page] of Object.entries(byTransport)) {
    assert.deepEqual(await texts(page), expected, `page on ${transport}`);
    // Everything above ran under the relay's Content-Security-Policy.
    assert.match(page.documentPolicy, /script-src 'self' 'wasm-unsafe-eval' 'sha256-/);
    assert.deepEqual(page.cspViolations, [], `nothing blocked on ${transport}`);
  }
});

test('the transport panel shows latency figures for each transport used', async () => {
  for (const [transport, page] of Object.entries(byTransport)) {
    const row = page.locator(`#transport-stats tr[data-transport="${transport}"]`);
    const last = await row.locator('.latency-last').textContent();
    const median = await row.locator('.latency-median').textContent();
    assert.match(last, /^\d+(\.\d)? ms$/, `${transport} latency`);
    assert.ok(parseFloat(last) > 0 && parseFloat(median) > 0, `${transport}: ${last}, ${median}`);
    assert.ok(Number(await row.locator('.requests').textContent()) > 0);
    assert.ok(Number(await row.locator('.bytes').textContent()) > 0);
  }
  // One page goes through every transport, sending on each: its panel compares them all.
  // This is the README's screenshot.
  const tour = byTransport.ws;
  let shown = TRANSPORTS.length;
  for (const transport of ['sse', 'longpoll', 'shortpoll', 'stream', 'webtransport', 'ws']) {
    await tour.selectOption('#transport', transport);
    await tour.waitForFunction(
      (t) => document.querySelector(`#transport-stats tr[data-transport="${t}"]`)
        && document.querySelector('#status').textContent.startsWith('connected via'),
      transport,
      { timeout: PATIENCE },
    );
    for (let i = 1; i <= 3; i += 1) {
      await send(tour, `${transport} ${i}`);
      shown += 1;
      await waitForMessages(tour, shown);
    }
  }
  for (const transport of TRANSPORTS) {
    const row = tour.locator(`#transport-stats tr[data-transport="${transport}"]`);
    assert.ok(parseFloat(await row.locator('.latency-median').textContent()) > 0, transport);
  }
  await tour.waitForSelector('#transport-stats line.dot.ws', { state: 'attached', timeout: PATIENCE });
  await tour.screenshot({ path: SCREENSHOT, fullPage: true });
});

test('switching through all six transports every 300 ms while another page sends 200 messages loses and repeats nothing', async () => {
  const switcher = await openChat(browser, relay.url, { room: 'switch' });
  const sender = await openChat(browser, relay.url, { room: 'switch' });
  const order = ['sse', 'longpoll', 'shortpoll', 'stream', 'webtransport', 'ws'];
  // A switch every 300 ms, whether or not the last one went live yet (make-before-break
  // with links still connecting), for as long as the sending lasts and at least twice
  // through all six.
  const switchedTo = [];
  let sending = true;
  const switching = (async () => {
    while (sending || switchedTo.length < 2 * order.length) {
      const next = order[switchedTo.length % order.length];
      await switcher.selectOption('#transport', next);
      switchedTo.push(next);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  })();
  const expected = [];
  for (let i = 0; i < 200; i += 1) {
    expected.push(`m${i}`);
    await send(sender, `m${i}`);
  }
  sending = false;
  await switching;
  await waitForMessages(sender, 200);
  await waitConnectedVia(switcher, switchedTo.at(-1));
  try {
    await waitForMessages(switcher, 200, 30_000);
  } catch (error) {
    const got = await texts(switcher);
    const missing = expected.filter((t) => !got.includes(t));
    const status = await switcher.textContent('#status');
    assert.fail(`the switcher shows ${got.length} of 200 (${status}); missing: ${missing.join(' ')}; ` +
      `switched ${switchedTo.length} times; ${error.message}`);
  }
  assert.deepEqual(await texts(switcher), expected, 'exactly the 200, in order');
  assert.deepEqual(await texts(sender), expected);
  const warnings = await switcher.$$eval('#messages li.warning', (n) => n.map((x) => x.textContent));
  assert.deepEqual(warnings, [], 'no gap was reported');
  // Every transport carried something: none was skipped because it never connected.
  for (const transport of order) {
    const bytes = await switcher.textContent(`#transport-stats tr[data-transport="${transport}"] .bytes`);
    assert.ok(Number(bytes) > 0, `${transport} received ${bytes} bytes`);
  }
});

test('without WebTransport on the relay, its option is disabled and says why', async () => {
  const plain = await startRelay();
  try {
    const page = await openChat(browser, plain.url, { room: 'plain' });
    const option = page.locator('#transport option[value="webtransport"]');
    await page.waitForFunction(
      () => document.querySelector('#transport option[value="webtransport"]')?.textContent.includes('not offered'),
      null,
      { timeout: PATIENCE },
    );
    assert.equal(await option.isDisabled(), true);
    assert.match(await option.textContent(), /WebTransport \(unavailable: not offered by this relay\)/);
    // The others stay available.
    assert.equal(await page.locator('#transport option[value="stream"]').isDisabled(), false);
  } finally {
    await plain.stop();
  }
});

test('a message with markup renders as text and runs nothing', async () => {
  const page = await openChat(browser, relay.url, { room: 'xss' });
  const other = await openChat(browser, relay.url, { room: 'xss', transport: 'sse' });
  const attack = '<img src=x onerror=alert(1)>';
  await send(page, attack);
  for (const p of [page, other]) {
    await waitForMessages(p, 1);
    assert.deepEqual(await texts(p), [attack]);
    assert.equal(await p.locator('#messages img').count(), 0, 'no element was created');
    assert.deepEqual(p.dialogs, [], 'no dialog opened');
  }
});

test('a right-to-left override cannot reorder a line, and cannot be part of a name', async () => {
  const page = await openChat(browser, relay.url, { room: 'bidi' });
  // Names are checked by the relay whichever client sends them.
  const refused = await page.evaluate(async () => {
    const response = await fetch('/api/rooms/bidi/messages', {
      method: 'POST',
      body: JSON.stringify({ from: '\u202Eecila', text: 'hi' }),
    });
    return { status: response.status, body: await response.text() };
  });
  assert.equal(refused.status, 400);
  assert.match(refused.body, /invalid_name/);
  // Texts may hold one (right-to-left writing needs them), but it stays inside its text.
  await send(page, '\u202Eevil override');
  await send(page, 'plain line');
  await waitForMessages(page, 2);
  const layouts = await page.$$eval('#messages li.message', (items) => items.map((li) => {
    const box = (selector) => li.querySelector(selector).getBoundingClientRect();
    const isolation = (selector) => getComputedStyle(li.querySelector(selector)).unicodeBidi;
    return {
      from: box('.from'), text: box('.text'), time: box('time'),
      isolated: [isolation('.from'), isolation('.text')],
    };
  }));
  for (const [i, { from, text, time, isolated }] of layouts.entries()) {
    // Isolated whatever layout the stylesheet chooses (the grid happens to isolate cells).
    assert.deepEqual(isolated, ['isolate', 'isolate'], `line ${i}: name and text are isolated`);
    // Left to right, as the page lays a line out: name, text, time.
    assert.ok(from.right <= text.left + 0.5, `line ${i}: the name stays left of the text`);
    assert.ok(text.right <= time.left + 0.5, `line ${i}: the time stays right of the text`);
  }
});

test('relay refusals appear next to the form, on every way of sending', async () => {
  // One token per 1000 s: no refill can happen during the test, however slowly it runs.
  const strict = await startRelay({ env: { RELAY_RATE: '0.001', RELAY_BURST: '2' } });
  try {
    // WebSocket sends get an error event; the others POST and get a 429.
    for (const transport of ['ws', 'longpoll']) {
      const page = await openChat(browser, strict.url, { room: `errors-${transport}`, transport });
      for (let i = 0; i < 4; i += 1) await send(page, `quick ${i}`);
      await page.waitForFunction(
        () => /slow down \(try again in [\d.]+ s\)/.test(document.querySelector('#form-error')?.textContent),
        null,
        { timeout: PATIENCE },
      );
    }
    // Checked by the page itself before anything is sent.
    const page = await openChat(browser, strict.url, { room: 'errors-long' });
    await send(page, 'x'.repeat(5000));
    assert.match(await page.textContent('#form-error'), /the limit is 4096/);
  } finally {
    await strict.stop();
  }
});

test('usable at 360 px wide, with a live region for messages', async () => {
  const page = await openChat(browser, relay.url, {
    room: 'narrow',
    viewport: { width: 360, height: 740 },
  });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= 360, `page is ${overflow}px wide at a 360px viewport`);
  assert.equal(await page.getAttribute('#messages', 'aria-live'), 'polite');
  assert.equal(await page.textContent('label[for="message"]'), 'Enter Message:');
});

test('after a relay restart pages reconnect by themselves and show the epoch notice', async () => {
  let restarting = await startRelay();
  const port = restarting.port;
  const ws = await openChat(browser, restarting.url, { room: 'restart' });
  const poll = await openChat(browser, restarting.url, { room: 'restart', transport: 'longpoll' });
  await send(ws, 'before');
  await waitForMessages(poll, 1);

  await restarting.stop();
  restarting = await startRelay({ port });
  try {
    for (const page of [ws, poll]) {
      await page.waitForFunction(
        () => [...document.querySelectorAll('#messages li.warning')]
          .some((n) => n.textContent.includes('history was reset')),
        null,
        { timeout: PATIENCE },
      );
      await waitConnected(page);
    }
    await send(ws, 'after');
    for (const page of [ws, poll]) {
      await page.waitForFunction(
        () => [...document.querySelectorAll('#messages li.message .text')].some((n) => n.textContent === 'after'),
        null,
        { timeout: PATIENCE },
      );
      assert.deepEqual(await texts(page), ['before', 'after']);
      assert.deepEqual(page.errors, []);
    }
  } finally {
    await restarting.stop();
  }
});
