'use strict';
// The model switcher in a real browser (run by test/scripts/gateway.sh):
// headless Chromium driven by puppeteer-core.  Two switchers are open on
// the same org; the pool is exhausted through the API; both gray out their
// premium models with the reason and "back on <date>" within a second of
// the answer of the debit that exhausted it; an admin recharges with SQL;
// both bring the models back within a second.  Screenshots of each state
// are written to $GATEWAY_OUT.  Every wait is for a DOM change (no sleeps).
//
//   GATEWAY_URL, ADMIN_DATABASE_URL, GATEWAY_OUT, CHROMIUM (default
//   /usr/bin/chromium)

const assert = require('assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Client } = require('pg');
const puppeteer = require('puppeteer-core');

const URL_ = process.env.GATEWAY_URL;
const OUT = process.env.GATEWAY_OUT || '.';
const LIVE_MS = 1000;       // the promise: every open switcher within a second
const db = new Client({ connectionString: process.env.ADMIN_DATABASE_URL });

let n = 0;
let failed = 0;
function report(name, err) {
  n++;
  if (!err) return console.log(`ok ${n} - ${name}`);
  failed++;
  console.log(`not ok ${n} - ${name}`);
  console.log(String(err && err.stack || err).split('\n').map((l) => '#   ' + l).join('\n'));
}
async function step(name, fn) {
  try {
    await fn();
    report(name);
  } catch (err) {
    report(name, err);
    throw err;       // later steps depend on this one
  }
}
const q = async (sql, params) => (await db.query(sql, params)).rows;

// what a page shows: one entry per model
function shown(page) {
  return page.$$eval('li.model', (lis) => lis.map((li) => ({
    provider: li.closest('section.provider').dataset.provider,
    id: li.dataset.model,
    available: li.dataset.available,
    fallback: li.dataset.fallback,
    grayed: li.classList.contains('unavailable'),
    disabled: li.querySelector('input').disabled,
    reasonCode: li.dataset.reason,
    limitedBy: li.dataset.limitedBy,
    reason: (li.querySelector('.reason') || {}).textContent || null,
    back: (li.querySelector('.back') || {}).textContent || null,
    backAt: li.querySelector('.back time') ? li.querySelector('.back time').getAttribute('datetime') : null,
  })));
}

async function main() {
  await db.connect();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'credits-gw-chromium-'));
  let browser;
  try {
    await step('set-up: org "web" with openai and google, 2 members, a pool of 0.02', async () => {
      await q(`SELECT credits.create_org('web', allowance_per_user => '0.01')`);
      await q(`SELECT credits.enable_provider('web', 'openai'), credits.enable_provider('web', 'google')`);
      await q(`SELECT credits.add_member('web', 'ann'), credits.add_member('web', 'ben')`);
    });

    browser = await puppeteer.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      protocolTimeout: 30000,   // fail, never hang
      userDataDir: profile,
      // two pages live side by side: neither is throttled as a background tab
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
        '--disable-background-timer-throttling', '--disable-backgrounding-occluded-windows',
        '--disable-renderer-backgrounding'],
    });
    const pages = [];
    const pageErrors = [];
    await step('two switchers open, live, every model available', async () => {
      for (const user of ['ann', 'ben']) {
        const page = await browser.newPage();
        await page.emulateTimezone('UTC');
        await page.setViewport({ width: 900, height: 900 });
        page.on('pageerror', (err) => pageErrors.push(String(err)));
        page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
        await page.goto(`${URL_}/?org=web&user=${user}`, { waitUntil: 'domcontentloaded' });
        await page.waitForSelector('#live[data-state="live"]', { timeout: 30000 });
        await page.waitForSelector('li.model[data-model="gpt-4o"]', { timeout: 30000 });
        pages.push(page);
      }
      const want = (await q(`SELECT provider, model FROM credits.allowed_models('web')`))
        .map((m) => m.provider + '/' + m.model);
      for (const page of pages) {
        const s = await shown(page);
        assert.deepEqual(s.map((m) => m.provider + '/' + m.id), want);
        assert.deepEqual([...new Set(s.map((m) => m.provider))], ['google', 'openai']);
        assert.ok(s.every((m) => m.available === 'true' && !m.grayed && !m.disabled && m.reason === null), JSON.stringify(s));
      }
      // the user picks a premium model
      await pages[0].bringToFront();
      await pages[0].click('li.model[data-model="gpt-4o"] input');
      await pages[0].waitForFunction(() => document.querySelector('#using').textContent === 'Calls use gpt-4o.');
      await pages[0].screenshot({ path: path.join(OUT, 'switcher-1-available.png'), fullPage: true });
    });

    let exhaustedAt;
    await step('the pool is exhausted through the API', async () => {
      const r = await fetch(URL_ + '/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-org-id': 'web', 'x-user-id': 'ann' },
        body: JSON.stringify({ model: 'gpt-4o', max_tokens: 8,
          messages: [{ role: 'user', content: 'y'.repeat(20000) }] }),
      });
      const body = await r.json();
      exhaustedAt = Date.now();
      assert.equal(r.status, 200, JSON.stringify(body));
      assert.equal(r.headers.get('x-credits-available'), '0');
      assert.equal(r.headers.get('x-credits-fell-back'), 'true');
      assert.equal(body.model, 'gpt-4o-mini');
    });

    await step(`every open switcher grays the premium models within ${LIVE_MS} ms, with the reason and "back on"`, async () => {
      await Promise.all(pages.map((page) => page.waitForSelector(
        'li.model[data-model="gemini-2.5-pro"][data-available="false"]', { timeout: 30000 })));
      const took = Date.now() - exhaustedAt;
      console.log(`# grayed ${took} ms after the exhausting debit answered`);
      const [pl] = await q(`SELECT to_json(period_end) #>> '{}' AS end,
                                   to_char(period_end AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day
                              FROM credits.pool_status WHERE org_id = 'web'`);
      for (const page of pages) {
        const s = await shown(page);
        for (const m of s) {
          if (m.fallback === 'true') {
            assert.ok(m.available === 'true' && !m.grayed && !m.disabled && m.reason === null && m.back === null,
              JSON.stringify(m));
            continue;
          }
          assert.equal(m.available, 'false', m.id);
          assert.ok(m.grayed && m.disabled, m.id + ' grayed and not selectable');
          assert.equal(m.reasonCode, 'credits_exhausted', m.id);
          assert.equal(m.limitedBy, 'pool', m.id);
          assert.equal(m.reason, "The organization's credits are used up", m.id);
          assert.ok(m.backAt, m.id + ' shows when it is back (resets_at)');
          assert.equal(new Date(m.backAt).getTime(), new Date(pl.end).getTime(), m.id + ' back at the next period start');
          const expected = await page.evaluate((iso) => {
            const d = new Date(iso);
            return d.getTime() - Date.now() < 24 * 3600 * 1000
              ? d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
              : d.toLocaleDateString(undefined, { dateStyle: 'medium' });
          }, m.backAt);
          assert.equal(m.back, 'back on ' + expected, m.id);
        }
      }
      assert.equal(await pages[0].$eval('#using', (e) => e.textContent),
        'gpt-4o is unavailable: calls use gpt-4o-mini.');
      await pages[0].screenshot({ path: path.join(OUT, 'switcher-2-exhausted.png'), fullPage: true });
      assert.ok(took <= LIVE_MS, `grayed after ${took} ms, more than ${LIVE_MS} ms`);
    });

    await step(`a recharge with SQL brings them back on every switcher within ${LIVE_MS} ms`, async () => {
      await q(`SELECT credits.recharge('web', note => 'back')`);
      const t0 = Date.now();
      await Promise.all(pages.map((page) => page.waitForFunction(
        () => [...document.querySelectorAll('li.model')].every((li) => li.dataset.available === 'true'),
        { timeout: 30000, polling: 'mutation' })));
      const took = Date.now() - t0;
      console.log(`# back ${took} ms after the recharge committed`);
      for (const page of pages) {
        const s = await shown(page);
        assert.ok(s.every((m) => !m.grayed && !m.disabled && m.reason === null && m.back === null), JSON.stringify(s));
      }
      assert.equal(await pages[0].$eval('#using', (e) => e.textContent), 'Calls use gpt-4o.');
      await pages[0].screenshot({ path: path.join(OUT, 'switcher-3-recharged.png'), fullPage: true });
      assert.ok(took <= LIVE_MS, `back after ${took} ms, more than ${LIVE_MS} ms`);
      assert.deepEqual(pageErrors, [], 'no error in the pages');
    });
  } catch (err) {
    if (n === 0) report('browser test', err);
  } finally {
    if (browser) await browser.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
    await db.end().catch(() => {});
  }
  console.log(`1..${n}`);
  if (failed || n < 5) {
    console.log(`# ${failed} failed, ${n} of 5 steps ran`);
    process.exit(1);
  }
  console.log('# screenshots: ' + ['switcher-1-available.png', 'switcher-2-exhausted.png', 'switcher-3-recharged.png']
    .map((f) => path.join(OUT, f)).join(' '));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
