// Who is here and who is typing, as people see it: pages on every transport, switching,
// leaving, vanishing and typing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  PATIENCE, launchBrowser, openChat, presentNames, recordLeaves, removedLines, send, startRedis,
  startRelay, waitConnectedVia, waitForMessages, waitPresent, waitStatus,
} from './support.mjs';

const TRANSPORTS = ['ws', 'sse', 'longpoll', 'shortpoll'];
const NAMES = ['Ana', 'Bo', 'Cy', 'Di'];
// Short enough that a page killed without a word is gone within the test's patience.
const TTL_SECONDS = 3;
let relay;
let browser;

before(async () => {
  relay = await startRelay({ env: { RELAY_PRESENCE_TTL: `${TTL_SECONDS}s` } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await relay?.stop();
});

/** Opens one page per transport in `room`, named after NAMES. */
async function fourPages(room) {
  const pages = [];
  for (const [i, transport] of TRANSPORTS.entries()) {
    pages.push(await openChat(browser, relay.url, { room, transport, name: NAMES[i] }));
  }
  return pages;
}

test('four pages, one per transport, each lists all four within 2 s, with their transports', async () => {
  const pages = await fourPages('here');
  const connected = Date.now();
  for (const page of pages) await waitPresent(page, NAMES, 2_000);
  const took = Date.now() - connected;
  assert.ok(took <= 2_000, `listed everywhere within ${took} ms`);
  for (const page of pages) {
    assert.equal(await page.textContent('#presence-count'), '4 here');
    const badges = await page.$$eval('#presence li', (lines) =>
      Object.fromEntries(lines.map((li) => [li.querySelector('.name').textContent,
        [...li.querySelectorAll('.badge')].map((b) => b.textContent).join(' ')])));
    assert.deepEqual(badges, { Ana: 'ws', Bo: 'sse', Cy: 'longpoll', Di: 'shortpoll' });
    // A page marks itself.
    assert.equal(await page.$$eval('#presence li.you', (l) => l.length), 1);
  }
  for (const page of pages) await page.context().close();
});

test('switching transport keeps a member listed: no leave, no join, its badge follows', async () => {
  const [ana, bo] = [
    await openChat(browser, relay.url, { room: 'switching', transport: 'ws', name: 'Ana' }),
    await openChat(browser, relay.url, { room: 'switching', transport: 'sse', name: 'Bo' }),
  ];
  await waitPresent(bo, ['Ana', 'Bo']);
  await recordLeaves(bo);
  for (const transport of ['sse', 'longpoll', 'shortpoll', 'ws', 'longpoll']) {
    await ana.selectOption('#transport', transport);
    await waitConnectedVia(ana, transport);
    await bo.waitForFunction(
      (want) => [...document.querySelectorAll('#presence li')]
        .find((li) => li.querySelector('.name').textContent === 'Ana')
        ?.querySelector('.badge:last-child')?.textContent === want,
      transport, { timeout: PATIENCE },
    );
  }
  assert.deepEqual(await removedLines(bo), [], 'Ana never left Bo\'s list');
  assert.deepEqual(await presentNames(bo), ['Ana', 'Bo']);
  await ana.context().close();
  await bo.context().close();
});

test('a page that closes leaves at once; one killed without a word leaves within the TTL', async () => {
  const pages = await fourPages('leaving');
  const [ana, bo, cy, di] = pages;
  for (const page of pages) await waitPresent(page, NAMES);
  // Closing runs pagehide: the beacon says so, and the others drop Bo well before the TTL.
  const closed = Date.now();
  await bo.close({ runBeforeUnload: true });
  await waitPresent(ana, ['Ana', 'Cy', 'Di'], TTL_SECONDS * 1000 - 500);
  assert.ok(Date.now() - closed < TTL_SECONDS * 1000, 'gone before the TTL could have done it');
  // Cy's renderer is killed: no pagehide, no beacon. The relay's grace runs out.
  const session = await cy.context().newCDPSession(cy);
  // Not awaited: a crashed renderer never answers.
  session.send('Page.crash').catch(() => {});
  const killed = Date.now();
  await waitPresent(ana, ['Ana', 'Di']);
  await waitPresent(di, ['Ana', 'Di']);
  const gone = Date.now() - killed;
  assert.ok(gone <= (TTL_SECONDS + 2) * 1000, `gone ${gone} ms after the kill (TTL ${TTL_SECONDS} s)`);
  assert.equal(await ana.textContent('#presence-count'), '2 here');
  for (const page of pages) await page.context().close();
});

test('typing in one page shows in the others, and clears when the message arrives', async () => {
  const pages = await fourPages('typing');
  for (const page of pages) await waitPresent(page, NAMES);
  const [ana, ...others] = pages;
  await ana.type('#message', 'hello there', { delay: 20 });
  for (const page of others) {
    await page.waitForFunction(
      () => document.querySelector('#typing')?.textContent === 'Ana is typing…',
      null, { timeout: PATIENCE },
    );
  }
  assert.equal(await ana.textContent('#typing'), '', 'a page does not show its own typing');
  await ana.press('#message', 'Enter');
  for (const page of others) {
    await waitForMessages(page, 1);
    assert.equal(await page.textContent('#typing'), '', 'cleared by Ana\'s message');
  }
  // Two typists at once.
  const [, bo, cy] = pages;
  await bo.type('#message', 'x');
  await cy.type('#message', 'y');
  await ana.waitForFunction(
    () => ['Bo and Cy are typing…', 'Cy and Bo are typing…'].includes(document.querySelector('#typing')?.textContent),
    null, { timeout: PATIENCE },
  );
  await send(bo, 'from bo');
  await ana.waitForFunction(
    () => document.querySelector('#typing')?.textContent === 'Cy is typing…',
    null, { timeout: PATIENCE },
  );
  for (const page of pages) await page.context().close();
});

test('two relays on one Redis: one list for pages on both, and a killed relay\'s members leave once', async () => {
  const redis = await startRedis({ persistent: false });
  const env = { RELAY_REDIS_URL: redis.url, RELAY_PRESENCE_TTL: `${TTL_SECONDS}s` };
  const a = await startRelay({ env });
  const b = await startRelay({ env });
  try {
    await waitStatus(`${a.url}/readyz`, true);
    await waitStatus(`${b.url}/readyz`, true);
    const onA = [
      await openChat(browser, a.url, { room: 'shared', transport: 'ws', name: 'Ana' }),
      await openChat(browser, a.url, { room: 'shared', transport: 'sse', name: 'Bo' }),
    ];
    const onB = [
      await openChat(browser, b.url, { room: 'shared', transport: 'longpoll', name: 'Cy' }),
      await openChat(browser, b.url, { room: 'shared', transport: 'shortpoll', name: 'Di' }),
    ];
    for (const page of [...onA, ...onB]) await waitPresent(page, NAMES);
    // Typing on relay B shows on relay A.
    await onB[0].type('#message', 'hi', { delay: 20 });
    await onA[0].waitForFunction(
      () => document.querySelector('#typing')?.textContent === 'Cy is typing…',
      null, { timeout: PATIENCE },
    );
    for (const page of onA) await recordLeaves(page);
    const killed = Date.now();
    await b.kill();
    for (const page of onA) await waitPresent(page, ['Ana', 'Bo']);
    const gone = Date.now() - killed;
    assert.ok(gone <= (TTL_SECONDS + 3) * 1000, `gone ${gone} ms after the kill (TTL ${TTL_SECONDS} s)`);
    for (const page of onA) {
      assert.deepEqual((await removedLines(page)).sort(), ['Cy', 'Di'], 'each left once, nobody else');
      assert.equal(await page.textContent('#presence-count'), '2 here');
    }
    for (const page of [...onA, ...onB]) await page.context().close();
  } finally {
    await a.stop();
    await b.kill();
    await redis.cleanup();
  }
});
