/* adtrack tracker: impressions, viewability, clicks; beacon batches with a pixel fallback.
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
    batch: 10
  };
  var FIELDS = ['c', 'cr', 'p', 'pl', 'uid', 'tag'];
  var TYPES = { imp: 1, view: 1, click: 1, conv: 1 };
  var queue = [], timer = 0, pixels = [];

  function adtrack(cmd, arg) {
    if (cmd === 'init') { for (var k in arg || {}) cfg[k] = arg[k]; }
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

  function track(e, data) {
    if (blocked()) { note({ e: e, c: data.c, via: 'none (DNT/GPC)' }); return; }
    var ev = { e: e };
    FIELDS.forEach(function (f) { if (data[f] != null) ev[f] = String(data[f]); });
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
  var q = (stub && stub.q) || [];
  q.forEach(function (a) { if (a[0] === 'init') adtrack.apply(null, a); });
  q.forEach(function (a) { if (a[0] !== 'init') adtrack.apply(null, a); });
  if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', scan);
  else scan();
})(window, document);
