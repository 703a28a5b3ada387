// The page's first load, as a visitor with an empty cache sees it: for each transport, LOADS
// fresh browser contexts open the page served by the relay (release build, loopback), and
// report what Chromium transferred for the page's own files (from its network events,
// headers included) and the time from navigation start to `#status` saying connected (taken
// in the page, by a MutationObserver, on the navigation's own clock). Prints one JSON line
// (appended to docs/bench/page-load.jsonl by scripts/page-bench.sh) and a summary.
//   RELAY_BIN=target/release/relay node bench/page/load.mjs [LOADS]
import { CONNECTED, launchBrowser, loadMeasured, startRelay } from '../../e2e/support.mjs';

const LOADS = Number(process.argv[2] ?? 10);
const TRANSPORTS = ['ws', 'sse', 'longpoll', 'shortpoll', 'stream', 'webtransport'];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

// WebTransport on, at a port of its own, so that its option is there to measure.
const relay = await startRelay({ env: { RELAY_WT_ADDR: '127.0.0.1:0' } });
const browser = await launchBrowser();
const report = { mode: 'page-load', loads: LOADS, date: new Date().toISOString(), transports: {} };
try {
  for (const transport of TRANSPORTS) {
    const times = [];
    const bytes = [];
    for (let n = 0; n < LOADS; n += 1) {
      const want = CONNECTED[transport];
      const { page, files } = await loadMeasured(browser, relay.url, {
        room: `load-${transport}-${n}`,
        transport,
        beforeLoad: (p) => p.addInitScript((text) => {
          const seen = () => {
            if (document.querySelector('#status')?.textContent === text && !window.connectedAt) {
              window.connectedAt = performance.now();
            }
          };
          new MutationObserver(seen).observe(document, { subtree: true, childList: true, characterData: true });
        }, want),
      });
      const at = await page.evaluate(() => window.connectedAt);
      if (typeof at !== 'number') throw new Error(`no connection time on load ${n} via ${transport}`);
      times.push(at);
      bytes.push(files.reduce((sum, f) => sum + f.bytes, 0));
      await page.context().close();
    }
    report.transports[transport] = {
      connected_ms_median: Math.round(median(times)),
      connected_ms_min: Math.round(Math.min(...times)),
      connected_ms_max: Math.round(Math.max(...times)),
      transferred_bytes: median(bytes),
    };
  }
} finally {
  await browser.close();
  await relay.stop();
}
console.log(JSON.stringify(report));
for (const [t, r] of Object.entries(report.transports)) {
  console.error(`page load via ${t}: ${r.transferred_bytes} bytes transferred; connected after ${r.connected_ms_median} ms (median of ${LOADS}; ${r.connected_ms_min}–${r.connected_ms_max})`);
}
