// The live half of tests/agent/serve/live.rs: load a page of `taskscope
// serve` in headless Chromium and watch what it draws and what it asks
// the server, counted from the browser's own network events (not from
// the page's code).
//
//   node follow.js follow URL STEPS SECONDS
//     STEPS times in a row, wait up to SECONDS for the chart to be drawn
//     again with a newer last flushed tick (no reload of the page); each
//     step's tick, how long it took, and the requests made meanwhile.
//   node follow.js quiet URL SECONDS
//     once the first view and its panels are loaded, count the requests
//     of the next SECONDS.
//
// Prints one JSON document, with the status line and the page's errors.
'use strict';
const puppeteer = require('puppeteer-core');

const [mode, url, ...rest] = process.argv.slice(2);
const browserPath = process.env.TASKSCOPE_CHROMIUM || '/usr/bin/chromium';

// Requests by path, from the browser's network events.
const requests = {};
const since = (before) => {
  const delta = {};
  for (const [path, n] of Object.entries(requests)) if (n - (before[path] || 0)) delta[path] = n - (before[path] || 0);
  return delta;
};

async function main() {
  const browser = await puppeteer.launch({
    executablePath: browserPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--window-size=1200,900'],
    defaultViewport: { width: 1200, height: 900 },
  });
  const seen = { page_errors: [] };
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => seen.page_errors.push(String(e)));
    page.on('request', (r) => {
      const path = new URL(r.url()).pathname;
      requests[path] = (requests[path] || 0) + 1;
    });
    await page.goto(url, { waitUntil: 'networkidle0', timeout: 60000 });
    await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
    const chart = () => page.evaluate(() => ({
      newest: document.querySelector('#chart').dataset.newest || null,
      draws: Number(document.querySelector('#chart').dataset.draws || 0),
      status: document.querySelector('#status').textContent,
      msg: document.querySelector('#chart-msg').textContent,
      span: document.querySelector('#span').textContent,
    }));
    seen.first = await chart();
    if (mode === 'follow') {
      const [steps, seconds] = rest.map(Number);
      seen.steps = [];
      for (let i = 0; i < steps; i++) {
        const before = await chart();
        const counted = Object.assign({}, requests);
        const started = Date.now();
        const step = {};
        try {
          await page.waitForFunction((newest) => {
            const c = document.querySelector('#chart');
            return c.dataset.newest && c.dataset.newest > newest;
          }, { timeout: seconds * 1000, polling: 50 }, before.newest || '');
        } catch (err) { step.timeout = String(err.message || err); }
        step.ms = Date.now() - started;
        Object.assign(step, await chart());
        step.requests = since(counted);
        seen.steps.push(step);
        if (step.timeout) break;
      }
    } else if (mode === 'quiet') {
      const [seconds] = rest.map(Number);
      // The first view's panels, loaded.
      await page.waitForFunction(() => ['threads', 'stacks'].every((id) =>
        document.querySelector('#' + id).dataset.rows !== undefined ||
        document.querySelector('#' + id + '-msg').textContent), { timeout: 60000 });
      const counted = Object.assign({}, requests);
      await new Promise((done) => setTimeout(done, seconds * 1000));
      seen.requests = since(counted);
    } else {
      throw new Error('mode must be follow or quiet, not ' + mode);
    }
    seen.later = await chart();
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen) + '\n');
}

main().catch((err) => { console.error('follow.js: ' + (err && err.stack || err)); process.exit(1); });
