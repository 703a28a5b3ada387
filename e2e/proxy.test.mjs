// Behind the nginx configuration of docs/SCALING.md, with RELAY_TRUSTED_PROXIES set as it
// says: each user has a budget of their own (not one shared by everyone behind the proxy), a
// user cannot forge their address, and /metrics is not reachable through the proxy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startNginx, startRelay } from './support.mjs';

let relay;
let balancer;

before(async () => {
  // Two messages per user, and no refill during the test (one token per 1000 s).
  relay = await startRelay({
    env: { RELAY_RATE: '0.001', RELAY_BURST: '2', RELAY_TRUSTED_PROXIES: '127.0.0.1' },
  });
  balancer = await startNginx([relay.addr]);
});

after(async () => {
  await balancer?.stop();
  await relay?.stop();
});

/** A request through nginx from a given loopback address: another user, as nginx sees it. */
function request(from, method, path, { body, headers = {} } = {}) {
  const url = new URL(path, balancer.url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path: url.pathname, method, localAddress: from, headers },
      (res) => {
        let data = '';
        res.on('data', (chunk) => { data += chunk; });
        res.on('end', () => resolve({ status: res.statusCode, body: data }));
      },
    );
    req.on('error', reject);
    req.setTimeout(20_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.end(body);
  });
}

const post = (from, text, headers) => request(from, 'POST', '/api/rooms/proxied/messages', {
  body: JSON.stringify({ from: 'someone', text }),
  headers: { 'content-type': 'application/json', ...headers },
});

test('behind nginx each user has a budget of their own and cannot forge another address', async () => {
  assert.equal((await post('127.0.0.2', 'a1')).status, 201);
  assert.equal((await post('127.0.0.2', 'a2')).status, 201);
  assert.equal((await post('127.0.0.2', 'a3')).status, 429, 'user A is out of tokens');
  // A forged X-Forwarded-For is kept by nginx, but to the left of the address nginx saw.
  const forged = await post('127.0.0.2', 'a4', { 'x-forwarded-for': '203.0.113.7' });
  assert.equal(forged.status, 429, 'user A is still user A');
  // User B is not held at 429 by user A.
  assert.equal((await post('127.0.0.3', 'b1')).status, 201);
});

test('nginx does not forward /metrics', async () => {
  const metrics = await request('127.0.0.2', 'GET', '/metrics');
  assert.equal(metrics.status, 404);
  assert.doesNotMatch(metrics.body, /relay_/);
});
