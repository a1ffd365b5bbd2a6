// Headless Chromium against a running pipeline (started by tests/e2e/browser.sh):
//   1. the dashboard page opens and receives a first snapshot over Server-Sent Events;
//   2. the demo publisher page loads tracker.js, which sends an impression for every ad slot;
//   3. the below-the-fold ad is scrolled into view and stays visible: a `view` is sent;
//   4. clicking it goes through the signed /c redirect and ends on the landing page;
//   5. the impression, view and click of that ad are in the enricher's file sink;
//   5b. the landing page's tracker kept the click id in a first-party cookie, and a purchase
//       there sends a conversion that is stored attributed to the click;
//   6. the dashboard, never reloaded, shows the new counts;
//   7. its history section (hourly rollups -> coredata's GET /v1/reports -> the dashboard)
//      draws bars whose impressions add up to exactly the impressions stored, switches to
//      clicks, and lists the campaign with its conversion in the 30-day table.
// Screenshots go to $ARTIFACT_DIR. Every wait is a poll with a generous bound.
//
// Environment: COLLECTOR_URL, DASHBOARD_URL, SINK_DIR, ARTIFACT_DIR, CHROMIUM (default
// /usr/bin/chromium).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const env = (name, dflt) => {
  const v = process.env[name] ?? dflt;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const collectorUrl = env('COLLECTOR_URL');
const dashboardUrl = env('DASHBOARD_URL');
const dashboardToken = fs.readFileSync(env('DASHBOARD_TOKEN_FILE'), 'utf8').trim();
const sinkDir = env('SINK_DIR');
const artifacts = env('ARTIFACT_DIR');
fs.mkdirSync(artifacts, { recursive: true });

const log = (...a) => console.log('[browser]', ...a);
let failures = 0;
function check(ok, what) {
  log(ok ? 'ok  ' : 'FAIL', what);
  if (!ok) failures++;
  return ok;
}

// Polls fn() until it returns a truthy value or the bound passes; returns the last value.
async function pollFor(fn, ms, step = 100) {
  const deadline = Date.now() + ms;
  let v;
  for (;;) {
    v = await fn();
    if (v || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, step));
  }
}

// Every document in the file sink's files named <prefix>*.jsonl (adtrack up gives each
// enricher a directory of its own under the sink directory), parsed.
function sinkDocs(prefix, dir = sinkDir) {
  const docs = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) {
      docs.push(...sinkDocs(prefix, p));
    } else if (ent.name.startsWith(prefix) && ent.name.endsWith('.jsonl')) {
      for (const line of fs.readFileSync(p, 'utf8').split('\n')) {
        if (line.trim()) docs.push(JSON.parse(line));
      }
    }
  }
  return docs;
}

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  // This machine's network is closed: Chromium's background services would only produce
  // refused connections, so they are switched off.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  // Headless Chromium says "HeadlessChrome" in its User-Agent, which the enricher rightly
  // rejects as a bot; the test plays a desktop browser.
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) ' +
      'Chrome/156.0.0.0 Safari/537.36',
  });

  // 1. Dashboard: a first snapshot over SSE.
  const dash = await context.newPage();
  dash.on('console', (m) => { if (m.type() === 'error') log('dashboard console:', m.text()); });
  // The dashboard asks for its token: the page without one is the sign-in form (401), and
  // signing in sets the session cookie that the page, its API calls and /events then use.
  const first = await dash.goto(dashboardUrl + '/', { waitUntil: 'load' });
  check(first.status() === 401 && await dash.locator('form#login').count() === 1,
    `dashboard without a token answers 401 with the sign-in form (${first.status()})`);
  await dash.screenshot({ path: path.join(artifacts, '0-dashboard-sign-in.png') });
  await dash.fill('#token', 'not-the-token');
  await Promise.all([dash.waitForURL(/\/login\?failed/), dash.click('button[type=submit]')]);
  check(await dash.locator('#failed').isVisible(), 'a wrong token is refused with a message');
  await dash.fill('#token', dashboardToken);
  await Promise.all([dash.waitForURL(dashboardUrl + '/'), dash.click('button[type=submit]')]);
  const cookies = await context.cookies(dashboardUrl);
  const session = cookies.find((c) => c.name === 'adtrack_dashboard');
  check(session !== undefined && session.httpOnly && session.sameSite === 'Strict' && !session.value.includes(dashboardToken),
    'signing in sets an HttpOnly, SameSite=Strict session cookie that does not hold the token');
  const firstSnap = await pollFor(() => dash.evaluate(() => window.dashboard?.lastSnapshot ?? null), 15000);
  check(firstSnap !== null, 'dashboard received a snapshot over SSE');
  await dash.screenshot({ path: path.join(artifacts, '1-dashboard-before.png'), fullPage: true });

  // 2. Demo page: impressions for the ad slots.
  const page = await context.newPage();
  page.on('console', (m) => log('demo console:', m.type(), m.text()));
  const t0 = new Date();
  await page.goto(collectorUrl + '/demo/', { waitUntil: 'load' });
  await page.screenshot({ path: path.join(artifacts, '2-demo-page.png') });
  const slots = await page.$$eval('[data-adtrack-c]', (els) => els.map((e) => ({
    id: e.id, c: e.getAttribute('data-adtrack-c'), pl: e.getAttribute('data-adtrack-pl'),
  })));
  check(slots.length >= 2, `demo page has ad slots (${slots.map((s) => s.id).join(', ')})`);
  // #ad-bottom is the slot the demo page puts below the fold (web/demo/index.html).
  const below = slots.find((s) => s.id === 'ad-bottom') ?? slots[slots.length - 1];
  const belowVisibleAtLoad = await page.$eval('#' + below.id, (el) => {
    const r = el.getBoundingClientRect();
    return r.top < window.innerHeight && r.bottom > 0;
  });
  check(!belowVisibleAtLoad, `#${below.id} starts below the fold`);

  // 3. Scroll it into view, wait for the view rule (>= 50% for >= 1 s) to fire.
  await page.$eval('#' + below.id, (el) => el.scrollIntoView({ block: 'center' }));
  await page.screenshot({ path: path.join(artifacts, '3-ad-in-view.png') });

  // 4. Click it: through /c to the landing page.
  const sinkHas = (e, c, pl) => sinkDocs('events-').some((d) => d.e === e && d.c === c &&
    (pl === undefined || d.pl === pl) && new Date(d.ts?.$date ?? d.ts) >= new Date(t0.getTime() - 2000));
  // The view needs the ad to stay visible for a second; wait until it is stored before
  // clicking, so the click does not end the page first.
  const viewStored = await pollFor(() => sinkHas('view', below.c, below.pl), 30000, 250);
  check(viewStored, `view of ${below.id} (${below.c}) is in the sink`);
  const link = await page.$(`#${below.id} a[href]`);
  check(link !== null, `#${below.id} has a link`);
  const href = link ? await link.getAttribute('href') : '';
  check(/\/c\?/.test(href), `the ad's link goes through /c (${href.slice(0, 60)}...)`);
  if (link) {
    await Promise.all([page.waitForURL(/\/demo\/landing/, { timeout: 15000 }), link.click()]);
  }
  check(/\/demo\/landing/.test(page.url()), `the click ended on the destination (${page.url()})`);
  await page.screenshot({ path: path.join(artifacts, '4-landing.png') });

  // 5. The impression and click of that ad are stored, enriched.
  const impStored = await pollFor(() => sinkHas('imp', below.c, below.pl), 30000, 250);
  check(impStored, `impression of ${below.id} is in the sink`);
  const clickStored = await pollFor(() => sinkHas('click', below.c), 30000, 250);
  check(clickStored, `click of ${below.id} is in the sink`);
  const enriched = sinkDocs('events-').find((d) => d.e === 'imp' && d.c === below.c);
  check(enriched && enriched.price_micros !== undefined, 'stored impression carries a price (enriched)');

  // 5b. The click id: in the landing URL, kept in a first-party cookie, sent with a purchase.
  const clid = new URL(page.url()).searchParams.get('adt_clid') ?? '';
  check(/^[0-9a-f-]{36}\./.test(clid) && clid.endsWith('.' + below.c), `the landing URL carries the click id (${clid})`);
  const kept = (await context.cookies(collectorUrl)).find((k) => k.name === 'adt_clid');
  check(kept && kept.value === clid, `the tracker kept it in a first-party cookie (${kept?.value})`);
  await page.click('#buy');
  const conv = await pollFor(() => sinkDocs('events-').find((d) => d.e === 'conv' && d.clid === clid), 30000, 250);
  check(conv && conv.attribution === 'attributed' && conv.c === below.c && conv.pl === below.pl &&
    conv.payout_micros === 25000000, `the purchase is stored attributed to the click (${JSON.stringify(conv &&
    { attribution: conv.attribution, c: conv.c, pl: conv.pl, payout_micros: conv.payout_micros })})`);
  await page.screenshot({ path: path.join(artifacts, '4b-converted.png') });

  // 6. The dashboard shows the new counts without a reload.
  const counts = () => dash.evaluate((c) => {
    const s = window.dashboard?.lastSnapshot;
    const camp = s && (s.campaigns || []).find((x) => x.id === c);
    const cell = (f) => document.querySelector(`[data-campaign="${c}"] [data-field="${f}"]`)?.textContent ?? '';
    return camp ? { imp: camp.imp ?? 0, view: camp.view ?? 0, click: camp.click ?? 0,
      shown: { imp: cell('imp'), click: cell('click') } } : null;
  }, below.c);
  const before = (firstSnap.campaigns || []).find((x) => x.id === below.c) || { imp: 0, view: 0, click: 0 };
  const after = await pollFor(async () => {
    const n = await counts();
    return n && n.imp > (before.imp ?? 0) && n.click > (before.click ?? 0) ? n : null;
  }, 20000, 250);
  check(after !== null, `dashboard counts for ${below.c} went up without a reload ` +
    `(imp ${before.imp ?? 0} -> ${after?.imp}, click ${before.click ?? 0} -> ${after?.click})`);
  check(after && after.shown.imp.replace(/[^0-9]/g, '') === String(after.imp),
    `dashboard shows the impression count on the page (${after?.shown.imp})`);
  await dash.screenshot({ path: path.join(artifacts, '5-dashboard-after.png'), fullPage: true });

  // 7. History: the bars come from the rollups, so once they caught up the impressions of all
  // hourly bars equal the impressions in the sink (every stored event is within 48 hours).
  const bars = (sel) => dash.evaluate((q) => [...document.querySelectorAll(q + ' rect')]
    .reduce((a, r) => a + Number(r.dataset.value || 0), 0), sel);
  const storedImp = () => sinkDocs('events-').filter((d) => d.e === 'imp').length;
  const histImp = await pollFor(async () => {
    const st = await dash.evaluate(() => document.querySelector('#history')?.dataset.state);
    const n = await bars('#history-hourly');
    return st === 'ok' && n > 0 && n === storedImp() ? n : null;
  }, 60000, 500);
  check(histImp !== null, `history: hourly impression bars add up to the stored impressions ` +
    `(${await bars('#history-hourly')} vs ${storedImp()})`);
  check(await bars('#history-daily') === storedImp(), 'history: daily impression bars add up to the same');
  await dash.click('.metric-pick button[data-metric="click"]');
  const storedClick = sinkDocs('events-').filter((d) => d.e === 'click').length;
  check(await bars('#history-hourly') === storedClick, `history: the clicks button shows the ${storedClick} stored clicks`);
  const row = await dash.evaluate((c) => {
    const tr = document.querySelector(`#history-table tr[data-campaign="${c}"]`);
    return tr ? [...tr.children].map((td) => td.textContent) : null;
  }, below.c);
  check(row !== null && Number(row[4]) >= 1, `history table lists ${below.c} with its conversion (${row})`);
  await dash.locator('#history').scrollIntoViewIfNeeded();
  await dash.locator('#history').screenshot({ path: path.join(artifacts, '6-dashboard-history.png') });
} finally {
  await browser.close();
}
log(failures === 0 ? 'all checks passed' : `${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
