/* adtrack tracker: impressions, viewability, clicks, conversions; beacon batches with a pixel
 * fallback. On a landing page it keeps the click id (?adt_clid=...) in a first-party cookie.
 * Served by adtrack-collector at /tracker.js. See docs/TRACKER.md. No dependencies. */
(function (w, d) {
  'use strict';
  var stub = w.adtrack;
  if (stub && stub.version) return; /* loaded twice: the first copy keeps working */
  var nav = w.navigator || {};
  var script = d.currentScript || d.querySelector('script[src*="tracker.js"]');
  var src = (script && script.src) || '';
  var cfg = {
    endpoint: src.replace(/\/[^/?#]*([?#].*)?$/, ''), /* the directory tracker.js came from */
    respectDnt: !!script && script.hasAttribute('data-respect-dnt') &&
      script.getAttribute('data-respect-dnt') !== 'false',
    flushMs: 1000,
    batch: 10,
    clickParam: 'adt_clid', /* the landing page's click-id parameter (the campaign's click_param) */
    clidCookie: 'adt_clid', /* the first-party cookie that keeps it */
    clidDays: 30            /* its lifetime: the campaign's lookback */
  };
  var FIELDS = ['c', 'cr', 'p', 'pl', 'uid', 'tag', 'clid', 'order', 'payout_micros'];
  /* <click event id (UUID)>.<campaign id>: what /c appends to the destination. */
  var CLID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[A-Za-z0-9._:-]{1,64}$/i;
  var TYPES = { imp: 1, view: 1, click: 1, conv: 1 };
  var queue = [], timer = 0, pixels = [];

  function adtrack(cmd, arg) {
    if (cmd === 'init') { for (var k in arg || {}) cfg[k] = arg[k]; keepClickId(); }
    else if (cmd === 'flush') flush();
    else if (cmd === 'scan') scan();
    else if (TYPES[cmd]) track(cmd, arg || {});
    else note({ error: 'unknown command ' + cmd });
  }
  adtrack.version = '1';
  adtrack.sent = 0;   /* events handed to sendBeacon or a pixel (for tests and the demo) */
  adtrack.log = [];   /* the last 100 of them: {e, c, via}, and notes */

  function note(x) {
    adtrack.log.push(x);
    if (adtrack.log.length > 100) adtrack.log.shift();
  }

  function blocked() {
    if (!cfg.respectDnt) return false;
    var dnt = nav.doNotTrack || w.doNotTrack || nav.msDoNotTrack;
    return dnt === '1' || dnt === 'yes' || nav.globalPrivacyControl === true;
  }

  /* ---- click id: from the landing page's URL into a first-party cookie ---- */

  function cookieValue(name) {
    var parts = (d.cookie || '').split(';');
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].replace(/^\s+/, '');
      if (kv.slice(0, name.length + 1) === name + '=') return kv.slice(name.length + 1);
    }
    return null;
  }

  /* A valid click id in the page's query wins over the cookie (the latest click counts) and
   * is stored for cfg.clidDays. Nothing is stored under DNT/GPC when they are respected. */
  function keepClickId() {
    var m = new RegExp('[?&]' + cfg.clickParam.replace(/[.]/g, '\\.') + '=([^&#]*)').exec(w.location.href || '');
    if (!m) return;
    var v;
    try { v = decodeURIComponent(m[1]); } catch (err) { return; }
    if (!CLID_RE.test(v) || blocked()) return;
    d.cookie = cfg.clidCookie + '=' + v + '; Max-Age=' + Math.round(cfg.clidDays * 86400) + '; Path=/; SameSite=Lax' +
      (/^https:/.test(w.location.href) ? '; Secure' : '');
    adtrack.clid = v;
  }

  function storedClickId() {
    var v = cookieValue(cfg.clidCookie);
    return v && CLID_RE.test(v) ? v : null;
  }

  function track(e, data) {
    if (blocked()) { note({ e: e, c: data.c, via: 'none (DNT/GPC)' }); return; }
    var ev = { e: e };
    FIELDS.forEach(function (f) { if (data[f] != null) ev[f] = String(data[f]); });
    if (e === 'conv' && ev.clid == null) {
      /* The collector takes the campaign from the click id when c is absent. */
      var clid = storedClickId();
      if (clid) ev.clid = clid;
    }
    ev.u = String(data.u || w.location.href).slice(0, 2048);
    queue.push(ev);
    if (queue.length >= cfg.batch) flush();
    else if (!timer) timer = setTimeout(flush, cfg.flushMs);
  }

  function flush() {
    clearTimeout(timer);
    timer = 0;
    if (!queue.length) return;
    var evs = queue.splice(0, cfg.batch), via = 'beacon', ok = false;
    try {
      ok = !!nav.sendBeacon && nav.sendBeacon(cfg.endpoint + '/v1/events', JSON.stringify(evs));
    } catch (err) { ok = false; }
    if (!ok) { via = 'pixel'; evs.forEach(pixel); }
    evs.forEach(function (ev) { adtrack.sent++; note({ e: ev.e, c: ev.c, via: via }); });
    if (queue.length) flush();
  }

  function pixel(ev) {
    var q = [];
    for (var k in ev) q.push(k + '=' + encodeURIComponent(ev[k]));
    q.push('cb=' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8));
    var img = new w.Image(1, 1);
    /* keep a reference until the request settles, so it is not collected mid-flight */
    img.onload = img.onerror = function () { pixels.splice(pixels.indexOf(img), 1); };
    pixels.push(img);
    img.src = cfg.endpoint + '/t.gif?' + q.join('&');
  }

  /* ---- ad elements: data-adtrack-c, -cr, -p, -pl, -click ---- */

  function attrs(el) {
    var o = {};
    FIELDS.forEach(function (f) {
      var v = el.getAttribute('data-adtrack-' + f);
      if (v) o[f] = v;
    });
    return o;
  }

  var io = w.IntersectionObserver ? new w.IntersectionObserver(onIntersect, { threshold: [0, 0.5] }) : null;
  var states = []; /* {el, data, visible, timer, viewed} */

  function stateOf(el) {
    for (var i = 0; i < states.length; i++) if (states[i].el === el) return states[i];
    return null;
  }

  function scan() {
    var els = d.querySelectorAll('[data-adtrack-c]');
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      if (stateOf(el)) continue;
      var st = { el: el, data: attrs(el), visible: false, timer: 0, viewed: false };
      states.push(st);
      track('imp', st.data);
      if (io) io.observe(el);
      el.addEventListener('click', onClick, true);
    }
  }

  /* view = at least half of the element on screen for one continuous second while the page
   * is visible; a drop below half, or the page being hidden, restarts the second. */
  function onIntersect(entries) {
    entries.forEach(function (en) {
      var st = stateOf(en.target);
      if (!st || st.viewed) return;
      st.visible = en.isIntersecting && en.intersectionRatio >= 0.5;
      arm(st);
    });
  }

  function arm(st) {
    var go = st.visible && !st.viewed && d.visibilityState !== 'hidden';
    if (go && !st.timer) {
      st.timer = setTimeout(function () {
        st.timer = 0;
        st.viewed = true;
        if (io) io.unobserve(st.el);
        track('view', st.data);
      }, 1000);
    } else if (!go && st.timer) {
      clearTimeout(st.timer);
      st.timer = 0;
    }
  }

  /* Clicks go through the collector's signed /c redirect: the page's server puts the signed
   * URL in data-adtrack-click (on the link or the ad element), because the signature needs
   * the collector's key. It replaces the link's href just before the browser follows it. */
  function onClick(evt) {
    var a = evt.target && evt.target.closest ? evt.target.closest('a[href]') : null;
    var st = stateOf(evt.currentTarget);
    if (!a || !st) return;
    var signed = a.getAttribute('data-adtrack-click') || st.el.getAttribute('data-adtrack-click');
    if (signed && !blocked()) a.setAttribute('href', signed);
    note({ e: 'click', c: st.data.c, via: signed && !blocked() ? 'redirect' : 'none' });
    flush(); /* the page is about to go: send what is queued now */
  }

  function hidden() {
    states.forEach(arm);
    if (d.visibilityState === 'hidden') flush();
  }

  w.addEventListener('pagehide', flush);
  d.addEventListener('visibilitychange', hidden);

  w.adtrack = adtrack;
  adtrack.clid = null; /* the click id this page stored, if any (for tests and the demo) */
  keepClickId();
  var q = (stub && stub.q) || [];
  q.forEach(function (a) { if (a[0] === 'init') adtrack.apply(null, a); });
  q.forEach(function (a) { if (a[0] !== 'init') adtrack.apply(null, a); });
  if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', scan);
  else scan();
})(window, document);
