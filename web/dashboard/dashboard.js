/* adtrack live dashboard: renders the snapshots and changes that GET /events streams
 * (Server-Sent Events). No build step, no dependencies. EventSource reconnects by itself.
 * For tests: window.dashboard.lastSnapshot, .lastChange, .changes; every campaign card has
 * data-campaign="<id>" and its values data-field="imp|view|click|ctr|events_per_s|...".
 * History (when the dashboard runs with --reports): window.dashboard.lastHistory; the bars
 * are #history-hourly / #history-daily rect[data-period][data-value], the table rows
 * tr[data-campaign]. */
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const money = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const pct = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 2 });

  const state = { lastSnapshot: null, lastChange: null, changes: [], connected: false, snapshots: 0 };
  window.dashboard = state;

  const isNum = (v) => typeof v === "number" && isFinite(v);
  const fmtInt = (v) => (isNum(v) ? nf0.format(v) : "–");
  const fmtRate = (v) => (isNum(v) ? (v >= 100 ? nf0.format(v) : nf1.format(v)) : "–");
  const fmtMoney = (micros) => (isNum(micros) ? money.format(micros / 1e6) : "–");
  const fmtPct = (v) => (isNum(v) ? pct.format(v) : "–");
  function fmtBytes(b) {
    if (!isNum(b)) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (i === 0 ? nf0.format(b) : nf1.format(b)) + " " + u[i];
  }

  /* Rates glide to their new value instead of jumping (skipped when reduced motion is asked).
   * Counts are set at once: the text on the page always equals the snapshot's number, so
   * what a test (or a person) reads is never an in-between value. */
  const reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  function setNum(el, value, fmt, glide) {
    if (!el) return;
    const text = fmt(value);
    el.dataset.value = isNum(value) ? String(value) : "";
    const from = parseFloat(el.dataset.shown);
    if (!glide || reduceMotion || !isNum(value) || !isNum(from) || from === value || document.hidden) {
      el._anim = (el._anim || 0) + 1; /* cancels a glide still running */
      el.dataset.shown = isNum(value) ? String(value) : "";
      el.textContent = text;
      return;
    }
    const start = performance.now(), dur = 450;
    el.dataset.shown = String(value);
    const token = (el._anim = (el._anim || 0) + 1);
    const step = (now) => {
      if (el._anim !== token) return;
      const t = Math.min(1, (now - start) / dur);
      const e = 1 - Math.pow(1 - t, 3);
      el.textContent = t >= 1 ? text : fmt(from + (value - from) * e);
      if (t < 1) requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }
  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }

  /* ---- charts (SVG paths; nulls are gaps) ---- */
  function paths(values, w, h, max) {
    const n = values.length;
    if (n < 2) return { line: "", fill: "" };
    const dx = w / (n - 1);
    let line = "", fill = "", segStart = -1, lastX = 0;
    const y = (v) => (h - 2 - (v / max) * (h - 6)).toFixed(1);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      const x = (i * dx).toFixed(1);
      if (!isNum(v)) {
        if (segStart >= 0) fill += "L" + lastX + " " + h + "Z";
        segStart = -1;
        continue;
      }
      if (segStart < 0) {
        line += "M" + x + " " + y(v);
        fill += "M" + x + " " + h + "L" + x + " " + y(v);
        segStart = i;
      } else {
        line += "L" + x + " " + y(v);
        fill += "L" + x + " " + y(v);
      }
      lastX = x;
    }
    if (segStart >= 0) fill += "L" + lastX + " " + h + "Z";
    return { line, fill };
  }
  function niceMax(values) {
    let m = 0;
    for (const v of values) if (isNum(v) && v > m) m = v;
    if (m <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(m)));
    for (const k of [1, 2, 2.5, 5, 10]) if (k * p >= m) return k * p;
    return 10 * p;
  }
  function drawArea(svg, values) {
    const max = niceMax(values);
    const p = paths(values, 600, 120, max);
    $(".line", svg).setAttribute("d", p.line);
    $(".fill", svg).setAttribute("d", p.fill);
    const g = $(".grid", svg);
    if (!g.childElementCount) {
      for (const f of [0.25, 0.5, 0.75]) {
        const l = document.createElementNS("http://www.w3.org/2000/svg", "line");
        l.setAttribute("x1", "0"); l.setAttribute("x2", "600");
        l.setAttribute("y1", String(120 * f)); l.setAttribute("y2", String(120 * f));
        g.appendChild(l);
      }
    }
    return max;
  }
  function drawSpark(svg, values) {
    const p = paths(values, 120, 32, niceMax(values));
    $(".line", svg).setAttribute("d", p.line);
    $(".fill", svg).setAttribute("d", p.fill);
  }

  /* ---- campaigns ---- */
  const cards = new Map();
  const tpl = $("#campaign-tpl");
  function field(card, name) { return card.querySelector('[data-field="' + name + '"]'); }

  function renderCampaign(c) {
    let card = cards.get(c.id);
    if (!card) {
      card = tpl.content.firstElementChild.cloneNode(true);
      card.dataset.campaign = c.id;
      cards.set(c.id, card);
    }
    setText(field(card, "name"), c.name || c.id);
    setText(field(card, "advertiser"), c.advertiser || "");
    const exhausted = !!c.exhausted;
    card.dataset.status = c.status;
    card.dataset.exhausted = String(exhausted);
    setText(field(card, "status"), exhausted ? "exhausted" : c.status);
    setNum(field(card, "events_per_s"), c.events_per_s, fmtRate, true);
    setNum(field(card, "imp"), c.imp, fmtInt);
    setNum(field(card, "view"), c.view, fmtInt);
    setNum(field(card, "click"), c.click, fmtInt);
    const ctr = field(card, "ctr");
    ctr.dataset.value = isNum(c.ctr) ? String(c.ctr) : "";
    setText(ctr, fmtPct(c.ctr));
    setNum(field(card, "spend"), c.spend_micros, fmtMoney);
    setText(field(card, "budget"), fmtMoney(c.budget_micros));
    setText(field(card, "pricing"), c.pricing ? c.pricing.toUpperCase() : "");
    const used = isNum(c.budget_used) ? Math.min(1, c.budget_used) : 0;
    const bar = field(card, "budget_bar");
    bar.style.width = (used * 100).toFixed(1) + "%";
    bar.dataset.level = used >= 0.8 ? "high" : "normal";
    bar.parentElement.setAttribute("aria-valuenow", (used * 100).toFixed(0));
    setNum(field(card, "rejected"), c.rejected, fmtInt);
    const chips = field(card, "rejected_by_reason");
    const reasons = Object.entries(c.rejected_by_reason || {}).sort((a, b) => b[1] - a[1]);
    const key = JSON.stringify(reasons);
    if (chips.dataset.key !== key) {
      chips.dataset.key = key;
      chips.replaceChildren(...reasons.map(([r, n]) => {
        const s = document.createElement("span");
        s.className = "chip";
        s.dataset.reason = r;
        const b = document.createElement("b");
        b.textContent = nf0.format(n);
        s.append(r + " ", b);
        return s;
      }));
    }
    drawSpark($("svg.spark", card), c.spark || []);
    return card;
  }

  function renderCampaigns(list) {
    const root = $("#campaigns");
    const seen = new Set();
    const sorted = list.slice().sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id) || a.id.localeCompare(b.id));
    sorted.forEach((c, i) => {
      seen.add(c.id);
      const card = renderCampaign(c);
      if (root.children[i] !== card) root.insertBefore(card, root.children[i] || null);
    });
    for (const [id, card] of cards) if (!seen.has(id)) { card.remove(); cards.delete(id); }
    $("#no-campaigns").hidden = list.length > 0;
  }

  /* ---- health tiles ---- */
  function tile(id, st, value, fmt, sub) {
    const t = $("#" + id);
    t.dataset.state = st;
    setNum($(".value", t), value, fmt);
    if (sub !== undefined) setText($(".sub", t), sub);
  }
  function renderHealth(s) {
    const p = s.pipeline || {};
    const targets = p.targets || [];
    const collectors = targets.filter((t) => t.kind === "collector");
    const enrichers = targets.filter((t) => t.kind === "enricher");
    tile("tile-spool", !collectors.length ? "unknown" : p.spool_active ? "warn" : "ok", p.spool_bytes, fmtBytes,
      !collectors.length ? "no collector scraped" : p.spool_active ? "spooling: Kafka unreachable or catching up" : "empty, events go straight to Kafka");
    tile("tile-lag", !isNum(p.consumer_lag) ? "unknown" : p.consumer_lag > 10000 ? "warn" : "ok", p.consumer_lag, fmtInt);
    const paused = p.enrichers_paused || 0;
    tile("tile-enricher", !enrichers.length ? "unknown" : paused ? "warn" : "ok", p.enricher_events_per_s, fmtRate,
      !enrichers.length ? "no enricher scraped" : enrichers.length + " enricher" + (enrichers.length > 1 ? "s" : "") + (paused ? ", " + paused + " paused (retrying)" : ", events/s"));
    tile("tile-collector", !collectors.length ? "unknown" : "ok", p.collector_requests_per_s, fmtRate);
    const t = $("#tile-targets");
    t.dataset.state = !targets.length ? "unknown" : p.down ? "bad" : "ok";
    setText($(".value", t), targets.length ? (p.up || 0) + " / " + targets.length + " up" : "none");
    $("#targets").replaceChildren(...targets.map((x) => {
      const li = document.createElement("li");
      li.dataset.up = String(!!x.up);
      li.dataset.target = x.name;
      li.title = x.url + (x.error ? " — " + x.error : "");
      li.textContent = x.name + (x.up ? "" : " (down)");
      return li;
    }));
    const r = $("#tile-redis");
    const up = s.redis && s.redis.up;
    r.dataset.state = up ? "ok" : "bad";
    setText($(".value", r), up ? "up" : "down");
    setText($(".sub", r), up ? "polled every " + nf0.format(s.poll_ms) + " ms" : (s.redis && s.redis.error) || "");
  }

  /* ---- snapshot ---- */
  function render(s) {
    state.lastSnapshot = s;
    state.snapshots++;
    const tot = s.totals || {};
    setNum($("#total-rate"), tot.events_per_s, fmtRate, true);
    setNum($("#total-imp"), tot.imp, fmtInt);
    setNum($("#total-view"), tot.view, fmtInt);
    setNum($("#total-click"), tot.click, fmtInt);
    setText($("#total-ctr"), fmtPct(tot.ctr));
    setNum($("#total-rejected"), tot.rejected, fmtInt);
    const hist = (s.history && s.history.events_per_s) || [];
    const max = drawArea($("#total-chart"), hist);
    const span = (hist.length * (s.history ? s.history.step_ms : 1000)) / 1000;
    setText($("#chart-span"), span >= 120 ? nf0.format(span / 60) + " min ago" : nf0.format(span) + " s ago");
    setText($("#chart-max"), "max " + fmtRate(max) + " /s");
    renderCampaigns(s.campaigns || []);
    setText($("#campaign-count"), (s.campaigns || []).length + (s.truncated ? "+ (truncated)" : ""));
    setText($("#window-note"), "counts over the last " + s.window_min + " min");
    renderHealth(s);
    setText($("#updated"), "updated " + new Date(s.ts_ms).toLocaleTimeString());
    setConn(s.redis && s.redis.up ? "live" : "degraded", s.redis && s.redis.up ? "live" : "Redis unreachable");
  }

  /* A change is shown at once, before the snapshot that follows it. */
  function applyChange(ch) {
    state.lastChange = ch;
    state.changes.unshift(ch);
    if (state.changes.length > 50) state.changes.length = 50;
    const card = cards.get(ch.id);
    if (card && ch.kind === "campaign") {
      if (ch.op === "delete") card.style.opacity = "0.4";
      if (ch.status) { card.dataset.status = ch.status; if (card.dataset.exhausted !== "true") setText(field(card, "status"), ch.status); }
    }
    if (card && ch.kind === "budget") {
      const ex = ch.op === "exhausted";
      card.dataset.exhausted = String(ex);
      setText(field(card, "status"), ex ? "exhausted" : card.dataset.status);
    }
    if (card) {
      card.classList.add("flash");
      setTimeout(() => card.classList.remove("flash"), 1200);
    }
    const ol = $("#changes");
    if (ol.firstElementChild && ol.firstElementChild.classList.contains("muted")) ol.replaceChildren();
    const li = document.createElement("li");
    li.className = "new";
    li.dataset.kind = ch.kind;
    li.dataset.id = ch.id;
    const what = ch.kind === "budget" ? "budget " + ch.op : ch.op === "delete" ? "deleted" : ch.status ? ch.status : ch.op;
    li.textContent = new Date(ch.ts_ms || Date.now()).toLocaleTimeString() + "  " + ch.kind + " " + (ch.name || ch.id) + ": " + what + " (v" + ch.version + ")";
    ol.insertBefore(li, ol.firstChild);
    while (ol.children.length > 30) ol.lastChild.remove();
  }

  /* ---- history: the hourly and daily reports (coredata's GET /v1/reports, fetched by the
   * dashboard's history thread). Periods without a row are drawn as 0: the reports only
   * list periods that have numbers. ---- */
  let historyMetric = "imp";
  const fmtMetric = (m, v) => (m === "spend_micros" ? fmtMoney(v) : fmtInt(v));
  function periods(from, to, stepMs) {
    const out = [];
    for (let t = Date.parse(from), end = Date.parse(to); isNum(t) && t < end && out.length < 1000; t += stepMs)
      out.push(t);
    return out;
  }
  function sumBy(rows, metric) {
    const m = new Map();
    for (const r of rows || []) {
      const t = Date.parse(r.period);
      const v = isNum(r[metric]) ? r[metric] : 0;
      m.set(t, (m.get(t) || 0) + v);
    }
    return m;
  }
  function drawBars(svg, axis, ts, byTime, metric, label) {
    const values = ts.map((t) => byTime.get(t) || 0);
    const max = niceMax(values);
    const w = 600 / Math.max(values.length, 1);
    while (svg.firstChild) svg.firstChild.remove();
    values.forEach((v, i) => {
      const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const h = (v / max) * 116;
      r.setAttribute("x", String(i * w + w * 0.12));
      r.setAttribute("width", String(w * 0.76));
      r.setAttribute("y", String(120 - Math.max(h, v > 0 ? 1.5 : 1)));
      r.setAttribute("height", String(Math.max(h, v > 0 ? 1.5 : 1)));
      r.dataset.period = new Date(ts[i]).toISOString();
      r.dataset.value = String(v);
      const tip = document.createElementNS("http://www.w3.org/2000/svg", "title");
      tip.textContent = label(ts[i]) + ": " + fmtMetric(metric, v);
      r.appendChild(tip);
      svg.appendChild(r);
    });
    setText($('[data-field="first"]', axis), ts.length ? label(ts[0]) : "");
    setText($('[data-field="max"]', axis), "max " + fmtMetric(metric, max));
    setText($('[data-field="last"]', axis), ts.length ? label(ts[ts.length - 1]) : "");
  }
  const hourLabel = (t) => new Date(t).toISOString().slice(5, 13).replace("T", " ") + "h";
  const dayLabel = (t) => new Date(t).toISOString().slice(0, 10);
  function renderHistoryTable(daily) {
    const per = new Map();
    for (const r of daily.rows || []) {
      const c = per.get(r.campaign) || { imp: 0, click: 0, conv: 0, spend: 0 };
      c.imp += r.imp || 0; c.click += r.click || 0; c.conv += r.conv || 0; c.spend += r.spend_micros || 0;
      per.set(r.campaign, c);
    }
    const body = $("#history-table tbody");
    while (body.firstChild) body.firstChild.remove();
    const top = [...per.entries()].sort((a, b) => b[1].spend - a[1].spend || b[1].imp - a[1].imp).slice(0, 20);
    for (const [id, c] of top) {
      const tr = document.createElement("tr");
      tr.dataset.campaign = id;
      const cells = [id, fmtInt(c.imp), fmtInt(c.click), fmtPct(c.imp ? c.click / c.imp : null), fmtInt(c.conv),
        fmtMoney(c.spend), c.conv ? fmtMoney(c.spend / c.conv) : "–"];
      for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
      body.appendChild(tr);
    }
    if (!top.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 7; td.className = "muted"; td.textContent = "no numbers in this range yet";
      tr.appendChild(td); body.appendChild(tr);
    }
  }
  function renderHistory(h) {
    state.lastHistory = h;
    const sec = $("#history");
    sec.hidden = false;
    const err = $("#history-error");
    if (!h.ok) {
      sec.dataset.state = "unavailable";
      err.hidden = false;
      setText(err, "reports unavailable: " + (h.error || "unknown error"));
      return;
    }
    err.hidden = true;
    sec.dataset.state = "ok";
    const hourTs = periods(h.hourly.from, h.hourly.to, 3600e3);
    const dayTs = periods(h.daily.from, h.daily.to, 86400e3);
    setText($("#history-hours"), String(hourTs.length));
    setText($("#history-days"), String(dayTs.length));
    drawBars($("#history-hourly"), $("#history-hourly").nextElementSibling, hourTs, sumBy(h.hourly.rows, historyMetric),
      historyMetric, hourLabel);
    drawBars($("#history-daily"), $("#history-daily").nextElementSibling, dayTs, sumBy(h.daily.rows, historyMetric),
      historyMetric, dayLabel);
    renderHistoryTable(h.daily);
    const through = h.hourly.data_through;
    setText($("#history-note"), "from the hourly rollups" + (through ? ", data through " + through : ""));
  }
  for (const b of document.querySelectorAll(".metric-pick button")) {
    b.addEventListener("click", () => {
      historyMetric = b.dataset.metric;
      for (const o of document.querySelectorAll(".metric-pick button"))
        o.setAttribute("aria-pressed", String(o === b));
      if (state.lastHistory) renderHistory(state.lastHistory);
    });
  }

  function setConn(st, text) {
    const c = $("#conn");
    c.dataset.state = st;
    setText($("#conn-text"), text);
  }

  function connect() {
    const es = new EventSource("/events");
    es.onopen = () => { state.connected = true; setConn("live", "live"); };
    es.onerror = () => {
      state.connected = false;
      setConn("reconnecting", "reconnecting…");
      /* EventSource does not say why it failed: a 401 means the session expired (or the
       * token was rotated), and no reconnect will fix that: back to the sign-in form. */
      fetch("/api/snapshot", { credentials: "same-origin" }).then((r) => {
        if (r.status === 401) { es.close(); location.href = "/login"; }
      }).catch(() => {});
    };
    es.addEventListener("snapshot", (e) => {
      try { render(JSON.parse(e.data)); } catch (err) { console.error("bad snapshot", err); }
    });
    es.addEventListener("history", (e) => {
      try { renderHistory(JSON.parse(e.data)); } catch (err) { console.error("bad history", err); }
    });
    es.addEventListener("change", (e) => {
      try { applyChange(JSON.parse(e.data)); } catch (err) { console.error("bad change", err); }
    });
    state.source = es;
  }
  connect();
})();
