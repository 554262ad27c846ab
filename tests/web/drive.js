// The browser half of tests/agent/serve/mod.rs: drive the system Chromium over
// the DevTools protocol (puppeteer-core) through the page of `taskscope
// serve`, and print what it saw as one JSON document on stdout.
//
//   node drive.js URL SCREENSHOT_DIR [COMM]
//
// Steps: load URL (window and filters in it), read the chart's series and
// the tables; drag a brush across the middle of the chart and read the
// panels' window and the URL; click the first thread for its timeline;
// read the top stacks; draw the flame graph. COMM: the thread to click (else the first). A screenshot of each view goes to SCREENSHOT_DIR.
'use strict';
const puppeteer = require('puppeteer-core');

const [url, shots, threadComm] = process.argv.slice(2);
const browserPath = process.env.TASKSCOPE_CHROMIUM || '/usr/bin/chromium';

async function main() {
  const browser = await puppeteer.launch({
    executablePath: browserPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--window-size=1400,1000'],
    defaultViewport: { width: 1400, height: 1000 },
  });
  const seen = { console_errors: [], page_errors: [] };
  try {
    const page = await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error') seen.console_errors.push(m.text()); });
    page.on('pageerror', (e) => seen.page_errors.push(String(e)));
    await page.goto(url, { waitUntil: 'networkidle0', timeout: 60000 });
    await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
    await page.waitForFunction(() => document.querySelector('#groups').dataset.rows !== undefined ||
      document.querySelector('#groups-msg').textContent, { timeout: 60000 });
    await page.waitForFunction(() => document.querySelector('#threads').dataset.rows !== undefined ||
      document.querySelector('#threads-msg').textContent, { timeout: 60000 });
    await page.waitForFunction(() => document.querySelector('#stacks').dataset.rows !== undefined ||
      document.querySelector('#stacks-msg').textContent, { timeout: 60000 });
    const read = () => page.evaluate(() => {
      const rows = (id) => [...document.querySelectorAll('#' + id + ' tr')].slice(1)
        .map((tr) => [...tr.children].map((td) => td.textContent));
      const heads = (id) => [...document.querySelectorAll('#' + id + ' th')].map((th) => th.textContent);
      return {
        url: location.href,
        source: document.querySelector('#source').textContent,
        series: (document.querySelector('#chart').dataset.series || '').split(',').filter(Boolean),
        chart_msg: document.querySelector('#chart-msg').textContent,
        legend: [...document.querySelectorAll('.u-legend .u-label')].map((e) => e.textContent),
        groups_head: heads('groups'), groups: rows('groups'),
        groups_window: [document.querySelector('#groups').dataset.from, document.querySelector('#groups').dataset.to],
        groups_msg: document.querySelector('#groups-msg').textContent,
        threads_head: heads('threads'), threads: rows('threads'),
        threads_msg: document.querySelector('#threads-msg').textContent,
        blockers_msg: document.querySelector('#blockers-msg').textContent,
        latency_msg: document.querySelector('#latency-msg').textContent,
        latency_rows: document.querySelectorAll('#latency .hist').length,
        stacks_head: heads('stacks'), stacks: rows('stacks'),
        stacks_msg: document.querySelector('#stacks-msg').textContent,
      };
    });
    seen.first = await read();
    await page.screenshot({ path: shots + '/serve-overview.png' });

    // The brush: drag across the middle third of the plot.
    const over = await page.$('#chart .u-over');
    const box = await over.boundingBox();
    const y = box.y + box.height / 2;
    await page.mouse.move(box.x + box.width * 0.35, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.5, y, { steps: 8 });
    await page.mouse.move(box.x + box.width * 0.65, y, { steps: 8 });
    await page.mouse.up();
    const before = seen.first.groups_window[0];
    await page.waitForFunction((b) => {
      const t = document.querySelector('#groups');
      return (t.dataset.from && t.dataset.from !== b) || document.querySelector('#groups-msg').textContent;
    }, { timeout: 60000 }, before);
    seen.brushed = await read();
    await page.screenshot({ path: shots + '/serve-brushed.png' });

    // A thread's timeline: the row of COMM in the threads table, or the first.
    const rows = await page.$$('#threads tr.pick');
    let first = rows[0];
    for (const row of rows) {
      const text = await row.evaluate((tr) => tr.textContent);
      if (threadComm && text.includes(threadComm)) { first = row; break; }
    }
    if (first) {
      await first.click();
      await page.waitForFunction(() => document.querySelector('#thread-strip').dataset.tid ||
        document.querySelector('#thread-msg').textContent, { timeout: 60000 });
      seen.thread = await page.evaluate(() => ({
        tid: document.querySelector('#thread-strip').dataset.tid || null,
        states: (document.querySelector('#thread-strip').dataset.states || '').split(',').filter(Boolean),
        cells: document.querySelectorAll('#thread-strip div').length,
        name: document.querySelector('#thread-name').textContent,
        msg: document.querySelector('#thread-msg').textContent,
        url: location.href,
      }));
      const strip = await page.$('#thread-panel');
      await strip.screenshot({ path: shots + '/serve-thread.png' });
    }

    // The flame graph of the selection.
    await page.click('#flame-draw');
    await page.waitForFunction(() => document.querySelector('#flame').dataset.loaded ||
      (document.querySelector('#flame-msg').textContent && document.querySelector('#flame-msg').textContent !== 'drawing…'),
    { timeout: 60000 });
    seen.flame = await page.evaluate(() => {
      const frame = document.querySelector('#flame');
      const doc = frame.contentDocument;
      const svg = doc && doc.documentElement;
      return { loaded: frame.dataset.loaded || null, width: frame.clientWidth, height: frame.clientHeight,
        msg: document.querySelector('#flame-msg').textContent,
        type: doc ? doc.contentType : null, frames: svg ? svg.querySelectorAll('#frames > g').length : 0 };
    });
    const flame = await page.$('#flame-panel');
    await flame.screenshot({ path: shots + '/serve-flame.png' });
    // It is inferno's interactive SVG: hovering a frame names it below, and
    // clicking one zooms (its script ran under the SVG's own policy).
    const inFlame = page.frames().find((f) => f.url().includes('/api/flame.svg'));
    if (inFlame) {
      const target = await inFlame.evaluateHandle(() => {
        const frames = [...document.querySelectorAll('#frames > g')];
        return frames.find((g) => g.querySelector('title').textContent.includes('spin_forever')) ||
          frames.find((g) => parseFloat(g.querySelector('rect').getAttribute('width')) > 5 &&
            !g.querySelector('title').textContent.startsWith('all '));
      });
      const name = await inFlame.evaluate((g) => g ? g.querySelector('title').textContent : null, target);
      if (name) {
        const box = await target.asElement().boundingBox();
        await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
        seen.flame.hovered = await inFlame.evaluate(() => document.getElementById('details').textContent);
        await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
        seen.flame.clicked = name;
        seen.flame.zoomed = await inFlame.evaluate(() =>
          !document.getElementById('unzoom').classList.contains('hide'));
      }
    }
    // (An element's screenshot scrolls it into view: after the brush.)
    const stacks = await page.$('#stacks-panel');
    await stacks.screenshot({ path: shots + '/serve-stacks.png' });

    // A reload of the URL shows the same selection.
    await page.reload({ waitUntil: 'networkidle0' });
    await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
    await page.waitForFunction(() => document.querySelector('#groups').dataset.rows !== undefined ||
      document.querySelector('#groups-msg').textContent, { timeout: 60000 });
    seen.reloaded = await read();
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen) + '\n');
}

main().catch((err) => { console.error('drive.js: ' + (err && err.stack || err)); process.exit(1); });
