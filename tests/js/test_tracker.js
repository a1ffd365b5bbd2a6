#!/usr/bin/env node
/*
 * Unit tests for web/tracker.js, run by plain node (no npm packages):
 *   node tests/js/test_tracker.js
 * The tracker runs in a vm context whose global is a tiny fake browser: window, document,
 * navigator.sendBeacon, Image, IntersectionObserver and timers that only move when a test
 * calls advance(ms). Registered with ctest by tests/it/tracker_js.sh.
 */
'use strict';
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const vm = require('vm');

const TRACKER = fs.readFileSync(path.join(__dirname, '..', '..', 'web', 'tracker.js'), 'utf8');
/* The queue stub publishers paste before the script tag (docs/TRACKER.md). */
const STUB = 'window.adtrack = window.adtrack || function () { (adtrack.q = adtrack.q || []).push(arguments); };';

function makeElement(attrs, children) {
  const el = {
    attrs: Object.assign({}, attrs),
    children: children || [],
    parent: null,
    listeners: {},
    getAttribute(n) { return Object.prototype.hasOwnProperty.call(this.attrs, n) ? this.attrs[n] : null; },
    hasAttribute(n) { return Object.prototype.hasOwnProperty.call(this.attrs, n); },
    setAttribute(n, v) { this.attrs[n] = String(v); },
    addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); },
    /* enough of closest() for 'a[href]' */
    closest(sel) {
      assert.strictEqual(sel, 'a[href]');
      for (let e = this; e; e = e.parent) if (e.tag === 'a' && e.hasAttribute('href')) return e;
      return null;
    },
  };
  el.children.forEach((c) => { c.parent = el; });
  return el;
}

function makeLink(href, extra) {
  const a = makeElement(Object.assign({ href }, extra || {}));
  a.tag = 'a';
  return a;
}

/*
 * A fake browser. opts: src (the script's URL), scriptAttrs, nav (navigator fields),
 * beacon(url, body) -> bool | undefined to remove sendBeacon, ads (elements), io (false: no
 * IntersectionObserver), stub (run the queue stub first: a function given the window to
 * queue calls).
 */
function browser(opts) {
  opts = opts || {};
  const env = { beacons: [], images: [], observers: [], now: 0, timers: new Map(), nextTimer: 1 };
  const winListeners = {}, docListeners = {};
  const ads = opts.ads || [];
  const script = makeElement(Object.assign({}, opts.scriptAttrs || {}));
  script.src = opts.src || 'http://col.test:8080/tracker.js';

  const nav = Object.assign({}, opts.nav || {});
  if (opts.beacon !== undefined) {
    if (opts.beacon !== null) {
      nav.sendBeacon = (url, body) => {
        env.beacons.push({ url, body, events: JSON.parse(body) });
        return opts.beacon(url, body);
      };
    }
  } else {
    nav.sendBeacon = (url, body) => { env.beacons.push({ url, body, events: JSON.parse(body) }); return true; };
  }

  class FakeImage {
    constructor(w, h) { this.w = w; this.h = h; this._src = ''; env.images.push(this); }
    set src(v) { this._src = v; }
    get src() { return this._src; }
  }
  class FakeIO {
    constructor(cb, o) { this.cb = cb; this.opts = o; this.targets = new Set(); env.observers.push(this); }
    observe(el) { this.targets.add(el); }
    unobserve(el) { this.targets.delete(el); }
  }

  /* document.cookie: a jar of name -> value; every write is kept in env.cookieWrites. */
  env.jar = Object.assign({}, opts.cookies || {});
  env.cookieWrites = [];
  const document = {
    get cookie() { return Object.keys(env.jar).map((k) => k + '=' + env.jar[k]).join('; '); },
    set cookie(v) {
      env.cookieWrites.push(v);
      const kv = v.split(';')[0];
      env.jar[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
    },
    currentScript: script,
    readyState: opts.readyState || 'complete',
    visibilityState: 'visible',
    querySelector() { return script; },
    querySelectorAll(sel) {
      assert.strictEqual(sel, '[data-adtrack-c]');
      return ads.filter((a) => a.hasAttribute('data-adtrack-c'));
    },
    addEventListener(type, fn) { (docListeners[type] = docListeners[type] || []).push(fn); },
  };
  const win = {
    document,
    navigator: nav,
    location: { href: opts.href || 'https://news.example/article?id=7' },
    Image: FakeImage,
    IntersectionObserver: opts.io === false ? undefined : FakeIO,
    addEventListener(type, fn) { (winListeners[type] = winListeners[type] || []).push(fn); },
    setTimeout(fn, ms) {
      const id = env.nextTimer++;
      env.timers.set(id, { fn, at: env.now + (ms || 0) });
      return id;
    },
    clearTimeout(id) { env.timers.delete(id); },
  };
  win.window = win;
  const ctx = vm.createContext(win);

  env.win = win;
  env.doc = document;
  env.run = (js) => vm.runInContext(js, ctx);
  env.load = () => {
    if (opts.stub) {
      env.run(STUB);
      opts.stub(win);
    }
    env.run(TRACKER);
    return win.adtrack;
  };
  /* Runs due timers in time order until @p ms have passed. */
  env.advance = (ms) => {
    const end = env.now + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of env.timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
      if (!next) break;
      env.timers.delete(next[0]);
      env.now = next[1].at;
      next[1].fn();
    }
    env.now = end;
  };
  env.fireWin = (type) => (winListeners[type] || []).forEach((fn) => fn({ type }));
  env.fireDoc = (type) => (docListeners[type] || []).forEach((fn) => fn({ type }));
  env.setVisibility = (v) => { document.visibilityState = v; env.fireDoc('visibilitychange'); };
  /* IntersectionObserver reports @p ratio for @p el. */
  env.intersect = (el, ratio) => {
    env.observers.forEach((o) => {
      if (o.targets.has(el)) o.cb([{ target: el, isIntersecting: ratio > 0, intersectionRatio: ratio }], o);
    });
  };
  env.click = (ad, target) => (ad.listeners.click || []).forEach((fn) => fn({ target, currentTarget: ad }));
  env.events = () => env.beacons.reduce((all, b) => all.concat(b.events), []);
  env.pixelQueries = () => env.images.map((img) => new URL(img.src));
  return env;
}

function ad(id, c, extra) {
  const link = makeLink('https://advertiser.example/' + id, extra && extra.linkAttrs);
  const el = makeElement(Object.assign({
    id,
    'data-adtrack-c': c,
    'data-adtrack-cr': 'cr-' + id,
    'data-adtrack-p': 'pub-dailynews',
    'data-adtrack-pl': 'pl-' + id,
  }, (extra && extra.attrs) || {}), [link]);
  el.link = link;
  return el;
}

/* ---- the tests ---- */

/* Arrays made inside the vm context have that realm's prototype: compare plain copies. */
const plain = (x) => JSON.parse(JSON.stringify(x));

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('calls queued before the script loads are sent, init first', () => {
  const b = browser({
    stub(w) {
      w.adtrack('imp', { c: 'camp-acme-spring', cr: 'cr-1', p: 'pub-dailynews', pl: 'pl-top' });
      w.adtrack('conv', { c: 'camp-acme-spring', p: 'pub-dailynews' });
      w.adtrack('init', { flushMs: 300 });
    },
  });
  const t = b.load();
  assert.strictEqual(typeof t, 'function');
  assert.strictEqual(b.beacons.length, 0, 'nothing before the flush timer');
  b.advance(299);
  assert.strictEqual(b.beacons.length, 0, 'init flushMs applied before the queued events');
  b.advance(1);
  assert.strictEqual(b.beacons.length, 1);
  assert.strictEqual(b.beacons[0].url, 'http://col.test:8080/v1/events');
  assert.strictEqual(typeof b.beacons[0].body, 'string', 'a string body: sendBeacon sends text/plain, no preflight');
  assert.deepStrictEqual(b.beacons[0].events, [
    { e: 'imp', c: 'camp-acme-spring', cr: 'cr-1', p: 'pub-dailynews', pl: 'pl-top', u: 'https://news.example/article?id=7' },
    { e: 'conv', c: 'camp-acme-spring', p: 'pub-dailynews', u: 'https://news.example/article?id=7' },
  ]);
  assert.strictEqual(t.sent, 2);
  assert.deepStrictEqual(plain(t.log.map((x) => x.via)), ['beacon', 'beacon']);
});

test('batches: a POST per 10 events, the rest on the timer; values are strings', () => {
  const b = browser();
  const t = b.load();
  for (let i = 0; i < 25; i++) t('imp', { c: 'camp-' + i, p: 7 });
  assert.strictEqual(b.beacons.length, 2, 'two full batches at once');
  assert.strictEqual(b.beacons[0].events.length, 10);
  assert.strictEqual(b.beacons[1].events[0].c, 'camp-10');
  assert.strictEqual(b.beacons[0].events[0].p, '7');
  b.advance(1000);
  assert.strictEqual(b.beacons.length, 3);
  assert.strictEqual(b.beacons[2].events.length, 5);
  assert.strictEqual(t.sent, 25);
  b.advance(5000);
  assert.strictEqual(b.beacons.length, 3, 'no empty POSTs');
});

test('every event type is accepted; unknown commands are logged, not sent', () => {
  const b = browser();
  const t = b.load();
  ['imp', 'view', 'click', 'conv', 'bogus'].forEach((e) => t(e, { c: 'c1' }));
  t('flush');
  assert.deepStrictEqual(b.events().map((x) => x.e), ['imp', 'view', 'click', 'conv']);
  assert.ok(t.log.some((x) => x.error && x.error.includes('bogus')));
});

test('falls back to one pixel per event when sendBeacon returns false', () => {
  const b = browser({ beacon: () => false });
  const t = b.load();
  t('imp', { c: 'camp-a', cr: 'cr 1', p: 'pub-x', pl: 'pl-y' });
  t('view', { c: 'camp-b' });
  b.advance(1000);
  assert.strictEqual(b.beacons.length, 1, 'the beacon was tried');
  const qs = b.pixelQueries();
  assert.strictEqual(qs.length, 2);
  assert.strictEqual(qs[0].origin + qs[0].pathname, 'http://col.test:8080/t.gif');
  assert.strictEqual(qs[0].searchParams.get('e'), 'imp');
  assert.strictEqual(qs[0].searchParams.get('c'), 'camp-a');
  assert.strictEqual(qs[0].searchParams.get('cr'), 'cr 1', 'values are percent-encoded');
  assert.strictEqual(qs[0].searchParams.get('pl'), 'pl-y');
  assert.strictEqual(qs[0].searchParams.get('u'), 'https://news.example/article?id=7');
  assert.strictEqual(qs[1].searchParams.get('e'), 'view');
  const cbs = qs.map((q) => q.searchParams.get('cb'));
  assert.ok(cbs[0] && cbs[1] && cbs[0] !== cbs[1], 'a distinct cache buster per pixel: ' + cbs);
  assert.strictEqual(t.sent, 2);
  assert.deepStrictEqual(plain(t.log.map((x) => x.via)), ['pixel', 'pixel']);
});

test('falls back to pixels without sendBeacon, or when it throws', () => {
  let b = browser({ beacon: null });
  let t = b.load();
  t('imp', { c: 'c1' });
  t('flush');
  assert.strictEqual(b.images.length, 1);
  b = browser({ beacon: () => { throw new TypeError('beacon body too large'); } });
  t = b.load();
  t('imp', { c: 'c1' });
  t('flush');
  assert.strictEqual(b.images.length, 1);
});

test('DNT / GPC with data-respect-dnt: nothing is sent, ever', () => {
  const cases = [{ doNotTrack: '1' }, { globalPrivacyControl: true }];
  for (const nav of cases) {
    const top = ad('ad-top', 'c1', { attrs: { 'data-adtrack-click': '/c?signed' } });
    const b = browser({ nav, beacon: () => false, scriptAttrs: { 'data-respect-dnt': '' }, ads: [top] });
    const t = b.load();
    t('imp', { c: 'c2' });
    b.intersect(top, 1);
    b.advance(5000);
    b.fireWin('pagehide');
    b.setVisibility('hidden');
    /* a click keeps the link's own destination: no redirect through the collector */
    b.click(top, top.link);
    assert.strictEqual(top.link.getAttribute('href'), 'https://advertiser.example/ad-top');
    assert.strictEqual(b.beacons.length, 0, JSON.stringify(nav));
    assert.strictEqual(b.images.length, 0, JSON.stringify(nav));
    assert.strictEqual(t.sent, 0);
  }
});

test('DNT without data-respect-dnt (or set to "false") still sends; init can turn it on', () => {
  let b = browser({ nav: { doNotTrack: '1' } });
  let t = b.load();
  t('imp', { c: 'c1' });
  t('flush');
  assert.strictEqual(b.beacons.length, 1);
  b = browser({ nav: { doNotTrack: '1' }, scriptAttrs: { 'data-respect-dnt': 'false' } });
  t = b.load();
  t('imp', { c: 'c1' });
  t('flush');
  assert.strictEqual(b.beacons.length, 1);
  b = browser({ nav: { doNotTrack: '1' }, stub: (w) => { w.adtrack('imp', { c: 'c1' }); w.adtrack('init', { respectDnt: true }); } });
  t = b.load();
  b.advance(5000);
  assert.strictEqual(b.beacons.length + b.images.length, 0);
});

test('automatic impressions for data-adtrack-* elements, once each', () => {
  const ads = [ad('ad-top', 'camp-acme-spring'), ad('ad-side', 'camp-acme-retarget')];
  const b = browser({ ads });
  const t = b.load();
  t('scan'); /* a rescan does not count them again */
  b.advance(1000);
  assert.deepStrictEqual(b.events(), [
    { e: 'imp', c: 'camp-acme-spring', cr: 'cr-ad-top', p: 'pub-dailynews', pl: 'pl-ad-top', u: 'https://news.example/article?id=7' },
    { e: 'imp', c: 'camp-acme-retarget', cr: 'cr-ad-side', p: 'pub-dailynews', pl: 'pl-ad-side', u: 'https://news.example/article?id=7' },
  ]);
});

test('a page still loading is scanned on DOMContentLoaded', () => {
  const b = browser({ ads: [ad('ad-top', 'c1')], readyState: 'loading' });
  b.load();
  b.advance(2000);
  assert.strictEqual(b.beacons.length, 0);
  b.fireDoc('DOMContentLoaded');
  b.advance(1000);
  assert.strictEqual(b.events().length, 1);
});

test('view: at least 50% visible for one continuous second, once', () => {
  const top = ad('ad-top', 'c1');
  const b = browser({ ads: [top] });
  const t = b.load();
  assert.deepStrictEqual(plain(b.observers[0].opts.threshold), [0, 0.5]);
  const views = () => b.events().filter((e) => e.e === 'view').length;
  b.advance(1000); /* the impression goes */
  b.intersect(top, 0.49);
  b.advance(3000);
  assert.strictEqual(views(), 0, 'under half visible is not a view');
  b.intersect(top, 0.5);
  b.advance(999);
  t('flush');
  assert.strictEqual(views(), 0, 'not yet a second');
  b.advance(1);
  t('flush');
  assert.strictEqual(views(), 1);
  assert.ok(!b.observers[0].targets.has(top), 'unobserved once viewed');
  b.intersect(top, 1);
  b.advance(5000);
  assert.strictEqual(views(), 1, 'only one view per element');
});

test('view: dropping below half restarts the second', () => {
  const top = ad('ad-top', 'c1');
  const b = browser({ ads: [top] });
  const t = b.load();
  const views = () => b.events().filter((e) => e.e === 'view').length;
  b.intersect(top, 0.8);
  b.advance(700);
  b.intersect(top, 0.2);
  b.advance(700);
  b.intersect(top, 0.8);
  b.advance(700);
  t('flush');
  assert.strictEqual(views(), 0, '700 ms + 700 ms is not one continuous second');
  b.advance(300);
  t('flush');
  assert.strictEqual(views(), 1);
});

test('view: a hidden page pauses the timer; it restarts when visible again', () => {
  const top = ad('ad-top', 'c1');
  const b = browser({ ads: [top] });
  const t = b.load();
  const views = () => b.events().filter((e) => e.e === 'view').length;
  b.intersect(top, 1);
  b.advance(600);
  b.setVisibility('hidden');
  assert.strictEqual(b.beacons.length, 1, 'going hidden flushes the queued impression');
  b.advance(5000);
  t('flush');
  assert.strictEqual(views(), 0, 'no view while hidden');
  b.setVisibility('visible');
  b.advance(999);
  t('flush');
  assert.strictEqual(views(), 0);
  b.advance(1);
  t('flush');
  assert.strictEqual(views(), 1);
});

test('no IntersectionObserver: impressions only, no error', () => {
  const b = browser({ ads: [ad('ad-top', 'c1')], io: false });
  b.load();
  b.advance(5000);
  assert.deepStrictEqual(b.events().map((e) => e.e), ['imp']);
});

test('click: the link goes through the signed /c URL and the queue is flushed first', () => {
  const top = ad('ad-top', 'c1', { attrs: { 'data-adtrack-click': '/c?c=c1&d=x&sig=S' } });
  const side = ad('ad-side', 'c2', { linkAttrs: { 'data-adtrack-click': '/c?c=c2&sig=L' } });
  const bare = ad('ad-plain', 'c3');
  const b = browser({ ads: [top, side, bare] });
  const t = b.load();
  assert.strictEqual(b.beacons.length, 0);
  b.click(top, top.link);
  assert.strictEqual(top.link.getAttribute('href'), '/c?c=c1&d=x&sig=S');
  assert.strictEqual(b.beacons.length, 1, 'queued impressions leave before the page does');
  b.click(side, side.link);
  assert.strictEqual(side.link.getAttribute('href'), '/c?c=c2&sig=L', 'the link\'s own attribute wins');
  b.click(bare, bare.link);
  assert.strictEqual(bare.link.getAttribute('href'), 'https://advertiser.example/ad-plain', 'unsigned: untouched');
  b.click(top, top); /* a click outside any link */
  assert.deepStrictEqual(plain(t.log.filter((x) => x.e === 'click').map((x) => x.via)), ['redirect', 'redirect', 'none']);
  assert.ok(!b.events().some((e) => e.e === 'click'), 'the redirect records the click, the beacon does not');
});

test('pagehide and visibilitychange to hidden flush at once', () => {
  const b = browser();
  const t = b.load();
  t('imp', { c: 'c1' });
  b.fireWin('pagehide');
  assert.strictEqual(b.beacons.length, 1);
  t('imp', { c: 'c2' });
  b.setVisibility('hidden');
  assert.strictEqual(b.beacons.length, 2);
});

test('the endpoint is the directory tracker.js was loaded from', () => {
  const b = browser({ src: 'https://cdn.example/adtrack/tracker.js?v=2#x' });
  const t = b.load();
  t('imp', { c: 'c1' });
  t('flush');
  assert.strictEqual(b.beacons[0].url, 'https://cdn.example/adtrack/v1/events');
});

test('a long page URL is cut to the collector\'s 2048-byte limit', () => {
  const b = browser({ href: 'https://news.example/?q=' + 'x'.repeat(5000) });
  const t = b.load();
  t('imp', { c: 'c1' });
  t('flush');
  assert.strictEqual(b.events()[0].u.length, 2048);
});

const CLID = '0190a000-0000-7000-8000-0000000000c1.camp-acme-spring';

test('landing page: the click id in the URL goes into a first-party cookie for 30 days', () => {
  const b = browser({ href: 'https://shop.example/landing?x=1&adt_clid=' + encodeURIComponent(CLID) + '#top' });
  const t = b.load();
  assert.strictEqual(t.clid, CLID);
  assert.strictEqual(b.jar.adt_clid, CLID);
  assert.strictEqual(b.cookieWrites.length, 1);
  assert.strictEqual(b.cookieWrites[0], 'adt_clid=' + CLID + '; Max-Age=2592000; Path=/; SameSite=Lax; Secure');
});

test('conversion page: conv carries the stored click id, order and payout, no campaign needed', () => {
  const b = browser({ href: 'https://shop.example/thanks', cookies: { other: 'x', adt_clid: CLID } });
  const t = b.load();
  assert.strictEqual(t.clid, null, 'nothing stored on a page without the parameter');
  t('conv', { order: 'o-17', payout_micros: 1500000 });
  t('imp', { c: 'camp-1' });
  t('flush');
  assert.deepStrictEqual(b.events(), [
    { e: 'conv', order: 'o-17', payout_micros: '1500000', clid: CLID, u: 'https://shop.example/thanks' },
    { e: 'imp', c: 'camp-1', u: 'https://shop.example/thanks' },
  ]);
  /* An explicit clid wins over the cookie. */
  t('conv', { clid: 'given', order: 'o-18' });
  t('flush');
  assert.strictEqual(b.events()[2].clid, 'given');
});

test('click id: malformed values are not stored; a campaign\'s own parameter name via init', () => {
  let b = browser({ href: 'http://shop.example/landing?adt_clid=%3Cscript%3E' });
  let t = b.load();
  assert.strictEqual(b.cookieWrites.length, 0);
  t('conv', { order: 'o-1' });
  t('flush');
  assert.strictEqual(b.events()[0].clid, undefined, 'no cookie, no click id');

  b = browser({
    href: 'http://shop.example/landing?gclid=x&mine=' + CLID,
    stub(w) { w.adtrack('init', { clickParam: 'mine', clidDays: 7 }); },
  });
  t = b.load();
  assert.strictEqual(b.jar.adt_clid, CLID);
  assert.strictEqual(b.cookieWrites[b.cookieWrites.length - 1], 'adt_clid=' + CLID + '; Max-Age=604800; Path=/; SameSite=Lax');
});

test('click id: DNT / GPC with data-respect-dnt stores nothing', () => {
  const b = browser({
    href: 'https://shop.example/landing?adt_clid=' + CLID,
    scriptAttrs: { 'data-respect-dnt': '' },
    nav: { globalPrivacyControl: true },
  });
  const t = b.load();
  assert.strictEqual(t.clid, null);
  assert.strictEqual(b.cookieWrites.length, 0);
});

test('loading the script twice keeps the first copy', () => {
  const b = browser();
  const first = b.load();
  b.run(TRACKER);
  assert.strictEqual(b.win.adtrack, first);
});

let failed = 0;
for (const { name, fn } of tests) {
  try {
    fn();
    console.log('ok   ' + name);
  } catch (err) {
    failed++;
    console.log('FAIL ' + name + '\n     ' + (err && err.stack ? err.stack.split('\n').slice(0, 3).join('\n     ') : err));
  }
}
const size = Buffer.byteLength(TRACKER);
const gz = require('zlib').gzipSync(TRACKER, { level: 9 }).length;
console.log(`${tests.length - failed}/${tests.length} passed; web/tracker.js is ${size} bytes, ${gz} gzipped`);
process.exit(failed ? 1 : 0);
