// node tests/browser/describe-report.mjs REPORT.html SCREENSHOT.png PDF
//
// Opens the report in Debian's headless Chromium (driven by playwright-core, whose own
// browser downloads are never used), and prints as JSON what the rendered page shows:
// console messages and page errors, every request the page made, the inventory's keys
// and states, the timeline's bars, the completeness table's rows and missing ranges, the
// verdicts and the worry list (and whether the first screen holds them), the crypto-period
// flags (and whether they show without scrolling), the keys of unknown age. A
// screenshot of the first screen and the page printed to PDF are written beside.
// tests/integration/report.rs asserts on the JSON; this script decides nothing.
//
// CHROMIUM names the browser (default /usr/bin/chromium).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const [html, screenshot, pdf] = process.argv.slice(2);
if (!html || !screenshot || !pdf) {
  console.error('usage: describe-report.mjs REPORT.html SCREENSHOT.png REPORT.pdf');
  process.exit(2);
}
const url = pathToFileURL(resolve(html)).href;
const profile = mkdtempSync(join(tmpdir(), 'hsm-audit-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // The first screen of a laptop: what it shows must answer "what should I worry about?".
    viewport: { width: 1280, height: 800 },
    // Without the background-networking flags Chromium's own update and sync requests
    // (refused here) would show up beside the page's.
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const console_ = [];
  const requests = [];
  page.on('console', (message) => console_.push({ type: message.type(), text: message.text() }));
  page.on('pageerror', (error) => console_.push({ type: 'pageerror', text: String(error) }));
  page.on('request', (request) => requests.push(request.url()));
  await page.goto(url, { waitUntil: 'load' });
  const rendered = await page.evaluate(() => {
    const rows = (selector) => [...document.querySelectorAll(selector)];
    const text = (node) => (node ? node.textContent.trim() : null);
    return {
      title: document.title,
      verdict: text(document.querySelector('#verdict')),
      figures: Object.fromEntries(
        rows('#figures [data-figure]').map((d) => [d.dataset.figure, Number(d.querySelector('b').textContent)])),
      inventory: rows('#inventory tbody tr').map((tr) => ({
        key: tr.dataset.key,
        state: tr.dataset.state,
        state_shown: text(tr.cells[3]),
      })),
      bars: rows('#timeline rect.bar').map((rect) => ({
        session: Number(rect.dataset.session),
        width: rect.getBBox().width,
        mirrored: rect.classList.contains('mirrored'),
      })),
      session_rows: rows('#session-list > tbody > tr').length,
      completeness: rows('#completeness tbody tr').map((tr) => ({
        hsm: tr.dataset.hsm,
        reboot_counter: Number(tr.dataset.reboot),
        gaps: [...tr.querySelectorAll('.gap')].map((gap) => [Number(gap.dataset.from), Number(gap.dataset.to)]),
      })),
      alerts: rows('#alert-list tbody tr').map((tr) => tr.dataset.kind),
      tamper: text(document.querySelector('#tamper')),
      worries: rows('#worries li').map((li) => ({
        worry: li.dataset.worry,
        count: Number(li.dataset.count),
        text: text(li),
      })),
      // What a reader sees: the first screen must answer "is the trail complete?", "is it
      // as its digests say?" and "what should I worry about?".
      on_first_screen: Object.fromEntries(['#verdict', '#tamper', '#worries'].map((selector) => {
        const box = document.querySelector(selector)?.getBoundingClientRect();
        return [selector.slice(1), !!box && box.bottom <= window.innerHeight && box.right <= window.innerWidth];
      })),
      // The crypto-period flag of each key past it, where it shows with nothing scrolled:
      // inside the viewport and inside the table's scrolling box.
      past_flags: rows('#inventory tr.past td.age').map((td) => {
        const box = td.getBoundingClientRect();
        const frame = td.closest('.scroll').getBoundingClientRect();
        return {
          key: td.parentElement.dataset.key,
          text: text(td),
          visible: box.width > 0 && box.right <= Math.min(window.innerWidth, frame.right),
        };
      }),
      // The section tables wider than the page at 1280 px (they would need scrolling).
      overflowing_tables: rows('section > table[id], section > .scroll > table[id]')
        .filter((table) => table.scrollWidth > (table.closest('.scroll') ?? table.parentElement).clientWidth)
        .map((table) => table.id),
      unknown_ages: rows('#inventory tbody tr').filter((tr) => text(tr.cells[4]) === 'unknown').map((tr) => tr.dataset.key),
      utc: document.querySelector('header .meta')?.textContent.includes('all times UTC') ?? false,
    };
  });
  await page.screenshot({ path: screenshot });
  await page.pdf({ path: pdf, format: 'A4', landscape: true, printBackground: true });
  console.log(JSON.stringify({
    url,
    console: console_,
    requests,
    pdf_bytes: statSync(pdf).size,
    ...rendered,
  }));
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
