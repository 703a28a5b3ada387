// Two relays sharing rooms through a real Redis, as an operator runs them behind a load
// balancer: pages on either relay chat together on every transport, also through nginx with no
// affinity, survive a relay restart without losing history, and ride out a Redis restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  PATIENCE, launchBrowser, openChat, send, startNginx, startRedis, startRelay, texts,
  waitConnected, waitConnectedVia, waitForMessages, waitStatus,
} from './support.mjs';

// nginx (in the test that uses it) connects from 127.0.0.1: the relays trust it as a proxy.
const REDIS_ENV = (redis) => ({
  RELAY_REDIS_URL: redis.url,
  RELAY_REDIS_TIMEOUT: '1s',
  RELAY_TRUSTED_PROXIES: '127.0.0.1',
});
let redis;
const relays = [];
let browser;

before(async () => {
  redis = await startRedis({ persistent: true });
  for (let i = 0; i < 2; i += 1) {
    const relay = await startRelay({ env: { ...REDIS_ENV(redis), RELAY_WT_ADDR: '127.0.0.1:0' } });
    await waitStatus(`${relay.url}/readyz`, true);
    relays.push(relay);
  }
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const relay of relays) await relay.stop();
  await redis?.cleanup();
});

/** Waits until every page shows a message with this text. */
async function shownEverywhere(pages, text) {
  for (const page of pages) {
    await page.waitForFunction(
      (t) => [...document.querySelectorAll('#messages li.message .text')]
        .some((n) => n.textContent === t),
      text,
      { timeout: PATIENCE },
    );
  }
}

async function warnings(page) {
  return page.$$eval('#messages li.warning', (nodes) => nodes.map((n) => n.textContent));
}

test('pages on two relays, one per transport, see every message in the same order', async () => {
  const placement = [
    ['ws', 0], ['sse', 1], ['longpoll', 0], ['shortpoll', 1], ['stream', 0], ['webtransport', 1],
  ];
  const pages = [];
  for (const [transport, relay] of placement) {
    pages.push(await openChat(browser, relays[relay].url, { room: 'pair', transport }));
  }
  const expected = [];
  for (const [i, [transport, relay]] of placement.entries()) {
    const text = `${transport} on relay ${relay}`;
    await send(pages[i], text);
    await shownEverywhere(pages, text);
    expected.push(text);
  }
  for (const [i, page] of pages.entries()) {
    assert.deepEqual(await texts(page), expected, `page ${placement[i].join(' on relay ')}`);
    assert.deepEqual(page.errors, []);
  }
});

/** Messages a relay has written to clients so far, all transports together. */
async function delivered(relay) {
  const metrics = await (await fetch(`${relay.url}/metrics`)).text();
  return [...metrics.matchAll(/^relay_messages_delivered_total\{[^}]*\} (\d+)$/gm)]
    .reduce((sum, match) => sum + Number(match[1]), 0);
}

test('through nginx with no affinity, pages on every transport see one order', async () => {
  const balancer = await startNginx(relays.map((relay) => relay.addr));
  try {
    const before = await Promise.all(relays.map(delivered));
    // WebTransport is UDP: nginx cannot carry it (docs/SCALING.md).
    const transports = ['ws', 'sse', 'longpoll', 'shortpoll', 'stream'];
    const pages = [];
    for (const transport of transports) {
      pages.push(await openChat(browser, balancer.url, { room: 'balanced', transport }));
    }
    const expected = [];
    for (const [i, transport] of transports.entries()) {
      const text = `${transport} through nginx`;
      await send(pages[i], text);
      await shownEverywhere(pages, text);
      expected.push(text);
    }
    for (const [i, page] of pages.entries()) {
      assert.deepEqual(await texts(page), expected, `page on ${transports[i]}`);
      assert.deepEqual(await warnings(page), []);
      assert.deepEqual(page.errors, []);
    }
    // Round robin spread the connections and polls: both relays delivered to these pages.
    const after = await Promise.all(relays.map(delivered));
    for (const [i] of relays.entries()) {
      assert.ok(after[i] > before[i], `relay ${i} delivered nothing (${before[i]} → ${after[i]})`);
    }
  } finally {
    await balancer.stop();
  }
});

test('a relay restart keeps the history: its pages reconnect without a reset notice', async () => {
  let restarting = await startRelay({ env: REDIS_ENV(redis) });
  const port = restarting.port;
  try {
    const there = await openChat(browser, restarting.url, { room: 'kept', transport: 'ws' });
    const elsewhere = await openChat(browser, relays[0].url, { room: 'kept', transport: 'sse' });
    await send(there, 'before');
    await shownEverywhere([there, elsewhere], 'before');

    await restarting.stop();
    // Published while the page's relay is down; it must arrive once that relay is back.
    await send(elsewhere, 'while it was down');
    await shownEverywhere([elsewhere], 'while it was down');
    restarting = await startRelay({ port, env: REDIS_ENV(redis) });
    await waitConnected(there);
    await shownEverywhere([there], 'while it was down');
    await send(there, 'after');
    await shownEverywhere([there, elsewhere], 'after');
    for (const page of [there, elsewhere]) {
      assert.deepEqual(await texts(page), ['before', 'while it was down', 'after']);
      assert.deepEqual(await warnings(page), [], 'history was kept, so no reset notice');
    }
  } finally {
    await restarting.stop();
  }
});

test('while Redis is down sending waits on the page; afterwards each text is stored once', async () => {
  const onA = await openChat(browser, relays[0].url, { room: 'outage', transport: 'ws' });
  const onB = await openChat(browser, relays[1].url, { room: 'outage', transport: 'sse' });
  await send(onA, 'before');
  await shownEverywhere([onA, onB], 'before');

  await redis.stop();
  for (const relay of relays) await waitStatus(`${relay.url}/readyz`, false);
  for (const page of [onA, onB]) {
    await send(page, 'during');
    await page.waitForFunction(
      () => (document.querySelector('#form-error')?.textContent ?? '').includes('try again'),
      null,
      { timeout: PATIENCE },
    );
  }

  await redis.restart();
  for (const relay of relays) await waitStatus(`${relay.url}/readyz`, true);
  // Each page kept its refused text and sends it again (same key) once it can: stored once
  // each, whatever the number of attempts.
  for (const page of [onA, onB]) await waitForMessages(page, 3);
  await send(onB, 'after');
  await shownEverywhere([onA, onB], 'after');
  for (const page of [onA, onB]) {
    assert.deepEqual(await texts(page), ['before', 'during', 'during', 'after']);
    assert.deepEqual(await warnings(page), [], 'Redis kept the history: no reset notice');
    assert.equal(await page.$$eval('#messages li.pending', (nodes) => nodes.length), 0);
  }
});

/** Starts recording every status line the page shows, with the page's clock. */
async function recordStatuses(page) {
  await page.evaluate(() => {
    const status = document.querySelector('#status');
    window.statuses = [];
    new MutationObserver(() => window.statuses.push([performance.now(), status.textContent]))
      .observe(status, { childList: true, characterData: true, subtree: true });
  });
}

/** The seconds a "…, reconnecting in N s" status line announces, rounded down to what it shows. */
function announced(text) {
  const match = text.match(/reconnecting in ([\d.]+) s$/);
  if (!match) return null;
  // Whole seconds are rounded to the nearest: the wait was at least half a second less.
  return match[1].includes('.') ? Number(match[1]) - 0.05 : Number(match[1]) - 0.5;
}

test('a relay that restarts drains its pages onto the other, each waiting as told', async () => {
  const draining = await startRelay({ env: { ...REDIS_ENV(redis), RELAY_DRAIN_WINDOW: '2s' } });
  // While it is up, every page lands on the draining relay (the other is nginx's backup);
  // once it stops accepting, nginx sends everything to the other: a rolling restart.
  const balancer = await startNginx([draining.addr, `${relays[0].addr} backup`]);
  try {
    // WebTransport is UDP: nginx cannot carry it (docs/SCALING.md).
    const transports = ['ws', 'sse', 'longpoll', 'shortpoll', 'stream'];
    const pages = [];
    for (const transport of transports) {
      pages.push(await openChat(browser, balancer.url, { room: 'drained', transport }));
    }
    const elsewhere = await openChat(browser, relays[1].url, { room: 'drained', transport: 'ws' });
    for (const page of pages) await recordStatuses(page);
    const expected = ['before'];
    await send(elsewhere, 'before');
    await shownEverywhere([...pages, elsewhere], 'before');

    const stopping = draining.stop();
    // Messages keep coming while the relay drains and its pages move.
    for (let i = 0; i < 5; i += 1) {
      const text = `during ${i}`;
      await send(elsewhere, text);
      expected.push(text);
    }
    await stopping;
    await send(elsewhere, 'after');
    expected.push('after');
    await shownEverywhere([...pages, elsewhere], 'after');

    for (const [i, page] of pages.entries()) {
      const transport = transports[i];
      assert.deepEqual(await texts(page), expected, `${transport}: every message once, in order`);
      assert.deepEqual(await warnings(page), [], `${transport}: the history was kept`);
      assert.deepEqual(page.errors, []);
      await waitConnectedVia(page, transport);
      if (transport === 'shortpoll') continue; // nothing of it stays open: nothing to drain
      const statuses = await page.evaluate(() => window.statuses);
      const told = statuses.findIndex(([, text]) => text.startsWith('relay restarting, reconnecting in'));
      // A long poll answered by a message before its turn came simply polls again — on the
      // other relay, A no longer accepting: it had nothing to wait for. Streams always wait.
      if (transport === 'longpoll' && told < 0) continue;
      assert.ok(told >= 0, `${transport} said what it waited for: ${JSON.stringify(statuses)}`);
      // It waited at least what it announced (the relay's advice, or more) before trying again.
      const [toldAt, text] = statuses[told];
      const next = statuses.slice(told + 1).find(([, t]) => t === 'connecting…');
      assert.ok(next, `${transport} tried again: ${JSON.stringify(statuses)}`);
      // Measured from when the line was drawn, which trails the timer's start by a frame or
      // so (a busy machine: more): 100 ms of slack, far below any advice.
      const waited = (next[0] - toldAt) / 1000;
      assert.ok(waited >= announced(text) - 0.1, `${transport} waited ${waited} s after "${text}"`);
      assert.ok(announced(text) <= 2, `${transport}: advice within the 2 s window ("${text}")`);
    }
  } finally {
    await balancer.stop();
    await draining.stop();
  }
});

test('a page that sends while its relay restarts shows each text once, in order', async () => {
  let restarting = await startRelay({ env: { ...REDIS_ENV(redis), RELAY_DRAIN_WINDOW: '200ms' } });
  const port = restarting.port;
  try {
    const page = await openChat(browser, restarting.url, { room: 'outbox', transport: 'ws' });
    const watcher = await openChat(browser, relays[0].url, { room: 'outbox', transport: 'sse' });
    await send(page, 'one');
    await shownEverywhere([page, watcher], 'one');

    await restarting.stop();
    // Written while the relay is away: shown as pending, not as messages.
    await send(page, 'two');
    await send(page, 'three');
    await page.waitForFunction(
      () => [...document.querySelectorAll('#messages li.pending .text')].map((n) => n.textContent)
        .join('|') === 'two|three',
      null,
      { timeout: PATIENCE },
    );
    assert.deepEqual(await texts(page), ['one']);

    restarting = await startRelay({ port, env: REDIS_ENV(redis) });
    await shownEverywhere([page, watcher], 'three');
    // Sent over every way the page had (POST retries, then the WebSocket once back), each
    // stored once: nobody sees a text twice, and nothing is left pending.
    for (const p of [page, watcher]) {
      assert.deepEqual(await texts(p), ['one', 'two', 'three']);
    }
    assert.equal(await page.$$eval('#messages li.pending', (nodes) => nodes.length), 0);
    assert.deepEqual(page.errors, []);
  } finally {
    await restarting.stop();
  }
});
