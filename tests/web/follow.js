// The live half of tests/agent/serve.rs: load the page of `taskscope
// serve` without an end time (live) in headless Chromium and wait for the
// chart to redraw with a newer last flushed tick, without a reload.
//
//   node follow.js URL SECONDS
//
// Prints one JSON document: the newest tick the first chart showed, the
// newest after the page refreshed itself, how many times it drew the
// chart, the status line, and the page's errors.
'use strict';
const puppeteer = require('puppeteer-core');

const [url, seconds] = process.argv.slice(2);
const browserPath = process.env.TASKSCOPE_CHROMIUM || '/usr/bin/chromium';

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
    await page.goto(url, { waitUntil: 'networkidle0', timeout: 60000 });
    await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
    const chart = () => page.evaluate(() => ({
      newest: document.querySelector('#chart').dataset.newest || null,
      draws: Number(document.querySelector('#chart').dataset.draws || 0),
      status: document.querySelector('#status').textContent,
      msg: document.querySelector('#chart-msg').textContent,
    }));
    seen.first = await chart();
    try {
      await page.waitForFunction((before) => {
        const c = document.querySelector('#chart');
        return c.dataset.newest && c.dataset.newest > before;
      }, { timeout: Number(seconds) * 1000 }, seen.first.newest || '');
    } catch (err) { seen.timeout = String(err.message || err); }
    seen.later = await chart();
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen) + '\n');
}

main().catch((err) => { console.error('follow.js: ' + (err && err.stack || err)); process.exit(1); });
