// warren admin dashboard: polls /api/stats (and /api/upstream, where a
// proxy or gateway serves it) once a second, keeps the last
// 300 samples in memory and draws every chart on <canvas> itself, so the
// page works offline and loads nothing from elsewhere.
//
// Each chart canvas carries data-points (samples or bars drawn) and the body
// data-polls (successful polls), so headless tests can tell that charts got
// data.
"use strict";

(function () {
  const POLL_MS = 1000;
  const KEEP = 300;
  const TOP = 10;
  const COLORS = ["#6cb6ff", "#f0883e", "#3fb37f", "#d2a8ff", "#e5534b", "#e0a234", "#56d4dd", "#ff7eb6"];

  // ---- token ----------------------------------------------------------
  // The token comes from #token=… or ?token=… in the address (then
  // dropped from it), or from the form shown after a 401; it is kept for
  // this tab only and sent as an Authorization header.
  let token = sessionStorage.getItem("warren-admin-token") || "";
  (function takeTokenFromURL() {
    const h = new URLSearchParams(location.hash.slice(1));
    const q = new URLSearchParams(location.search);
    const t = h.get("token") || q.get("token");
    if (t) {
      token = t;
      sessionStorage.setItem("warren-admin-token", t);
      history.replaceState(null, "", location.pathname);
    }
  })();

  function api(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (token) opts.headers.Authorization = "Bearer " + token;
    opts.cache = "no-store";
    return fetch(path, opts);
  }

  const $ = (id) => document.getElementById(id);
  const authForm = $("auth");
  authForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("warren-admin-token", token);
    authForm.hidden = true;
    poll();
  });

  // ---- formatting -----------------------------------------------------
  function si(v, unit) {
    if (v == null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    const steps = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [f, p] of steps) if (a >= f) return trim(v / f) + " " + p + (unit || "");
    return trim(v) + (unit ? " " + unit : "");
  }
  function bytes(v) {
    if (v == null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    const steps = [[1 << 30, "GiB"], [1 << 20, "MiB"], [1 << 10, "KiB"]];
    for (const [f, p] of steps) if (a >= f) return trim(v / f) + " " + p;
    return trim(v) + " B";
  }
  function trim(v) {
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 100) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1).replace(/\.0$/, "");
    if (a >= 0.01) return v.toFixed(2).replace(/\.?0+$/, "");
    return v.toPrecision(2);
  }
  function dur(s) {
    if (s == null || !isFinite(s)) return "–";
    if (s <= 0) return "off";
    if (s < 1) return trim(s * 1000) + " ms";
    if (s < 120) return trim(s) + " s";
    if (s < 7200) return trim(s / 60) + " min";
    if (s < 172800) return trim(s / 3600) + " h";
    return trim(s / 86400) + " d";
  }
  bytes.binary = true;
  function ms(v) { return v == null ? "–" : trim(v * 1000) + " ms"; }

  // ---- history ----------------------------------------------------------
  const hist = { t: [] };
  function push(name, v) {
    const a = hist[name] || (hist[name] = new Array(hist.t.length - 1).fill(null));
    a.push(v);
  }
  function trimHistory() {
    for (const k in hist) while (hist[k].length > KEEP) hist[k].shift();
  }

  // rate returns the per-second change of a counter between two samples,
  // or null when it cannot tell (first sample, counter reset).
  function rate(cur, prev, dt) {
    if (prev == null || cur == null || dt <= 0 || cur < prev) return null;
    return (cur - prev) / dt;
  }

  // quantile estimates q from histogram bucket deltas, interpolating
  // linearly inside the bucket as Prometheus' histogram_quantile does.
  function quantile(q, cur, prev) {
    if (!cur || !prev) return null;
    const n = cur.count - prev.count;
    if (n <= 0) return null;
    const before = new Map(prev.buckets.map(([le, c]) => [le, c]));
    const want = q * n;
    let lo = 0, below = 0;
    for (const [le, c] of cur.buckets) {
      const d = c - (before.get(le) || 0);
      if (d >= want) {
        const inBucket = d - below;
        return inBucket > 0 ? lo + (le - lo) * ((want - below) / inBucket) : le;
      }
      lo = le;
      below = d;
    }
    return lo; // beyond the last finite bucket
  }

  // ---- charts -------------------------------------------------------------
  function setup(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 400, h = canvas.clientHeight || 170;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    g.font = "11px system-ui, sans-serif";
    return { g, w, h };
  }

  // niceMax rounds v up to 1, 2, 2.5 or 5 times a power of ten, or of
  // 1024 first for byte scales so that the ticks read as whole KiB, MiB…
  function niceMax(v, binary) {
    if (!(v > 0)) return 1;
    let unit = 1;
    if (binary) while (v / unit >= 1024) unit *= 1024;
    const x = v / unit;
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p * unit;
    return 10 * p * unit;
  }

  // lineChart draws series [{name, color, values}] against hist.t and
  // returns how many non-empty samples the longest series has.
  function lineChart(canvas, series, fmt, note) {
    const { g, w, h } = setup(canvas);
    const t = hist.t;
    let max = 0, points = 0;
    for (const s of series) {
      let n = 0;
      for (const v of s.values) if (v != null) { n++; if (v > max) max = v; }
      points = Math.max(points, n);
    }
    max = niceMax(max, fmt.binary);
    let labelW = 0;
    for (let i = 0; i <= 4; i++) labelW = Math.max(labelW, g.measureText(fmt((max * i) / 4)).width);
    const padL = Math.ceil(labelW) + 12, padR = 8, padT = 18, padB = 18;
    const pw = w - padL - padR, ph = h - padT - padB;
    // grid and y labels
    g.strokeStyle = "#263241"; g.fillStyle = "#8796a8"; g.lineWidth = 1;
    g.textAlign = "right"; g.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = padT + ph - (ph * i) / 4;
      g.beginPath(); g.moveTo(padL, Math.round(y) + 0.5); g.lineTo(w - padR, Math.round(y) + 0.5); g.stroke();
      g.fillText(fmt((max * i) / 4), padL - 6, y);
    }
    // x labels: seconds before the newest sample
    const t1 = t.length ? t[t.length - 1] : 0, t0 = t.length ? t[0] : 0;
    const span = Math.max(t1 - t0, 1);
    const x = (ti) => padL + pw * (1 - (t1 - ti) / span);
    g.textAlign = "center"; g.textBaseline = "alphabetic";
    g.fillText("now", w - padR - 12, h - 4);
    if (t.length > 1) g.fillText("−" + dur(span).replace("off", "0 s"), padL + 20, h - 4);
    // lines, broken where a value is missing
    series.forEach((s, si) => {
      g.strokeStyle = s.color || COLORS[si % COLORS.length];
      g.lineWidth = 1.6; g.beginPath();
      let pen = false;
      s.values.forEach((v, i) => {
        if (v == null || i >= t.length) { pen = false; return; }
        const px = x(t[i]), py = padT + ph - (ph * v) / max;
        if (pen) g.lineTo(px, py); else g.moveTo(px, py);
        pen = true;
      });
      g.stroke();
    });
    // legend: name and latest value
    g.textAlign = "left"; g.textBaseline = "top";
    let lx = padL;
    series.forEach((s, si) => {
      let last = null;
      for (let i = s.values.length - 1; i >= 0; i--) if (s.values[i] != null) { last = s.values[i]; break; }
      const label = s.name + " " + fmt(last);
      g.fillStyle = s.color || COLORS[si % COLORS.length];
      g.fillRect(lx, 4, 8, 8);
      g.fillStyle = "#dbe3ec";
      g.fillText(label, lx + 12, 2);
      lx += g.measureText(label).width + 26;
    });
    if (note) {
      g.fillStyle = "#8796a8"; g.textAlign = "center"; g.textBaseline = "middle";
      g.fillText(note, padL + pw / 2, padT + ph / 2);
    }
    canvas.dataset.points = String(points);
    return points;
  }

  // barChart draws labelled bars [{label, value}] horizontally.
  function barChart(canvas, bars, fmt, note) {
    const { g, w, h } = setup(canvas);
    canvas.dataset.points = String(bars.length);
    if (!bars.length) {
      g.fillStyle = "#8796a8"; g.textAlign = "center"; g.textBaseline = "middle";
      g.fillText(note || "no data yet", w / 2, h / 2);
      return;
    }
    const padL = 96, padR = 60;
    const rows = Math.min(bars.length, 10);
    const bh = Math.min(22, (h - 8) / rows);
    const max = Math.max(...bars.map((b) => b.value), 1);
    g.textBaseline = "middle";
    bars.slice(0, rows).forEach((b, i) => {
      const y = 4 + i * bh;
      const bw = ((w - padL - padR) * b.value) / max;
      g.fillStyle = b.color || COLORS[i % COLORS.length];
      g.fillRect(padL, y + 3, Math.max(bw, b.value > 0 ? 2 : 0), bh - 6);
      g.fillStyle = "#dbe3ec"; g.textAlign = "right";
      g.fillText(b.label, padL - 6, y + bh / 2);
      g.textAlign = "left";
      g.fillText(fmt(b.value), padL + bw + 6, y + bh / 2);
    });
  }

  // ---- rendering ----------------------------------------------------------
  let prev = null;

  function record(s, u) {
    const dt = prev ? s.time - prev.time : 0;
    const r = (f) => rate(f(s), prev ? f(prev) : null, dt);
    hist.t.push(s.time);
    push("active", s.active);
    push("opens", r((x) => x.accepted));
    push("closes", r((x) => x.closed_total));
    push("in", r((x) => x.bytes_in));
    push("out", r((x) => x.bytes_out));
    push("mem", s.memory_per_connection_bytes);
    push("heapPer", s.active > 0 ? s.go_heap_bytes / s.active : 0);
    push("busy", s.workers_busy);
    push("queue", s.worker_queue);
    push("req", s.http ? r((x) => (x.http ? x.http.requests : null)) : null);
    push("wsIn", s.websocket ? r((x) => (x.websocket ? x.websocket.in : null)) : null);
    push("wsOut", s.websocket ? r((x) => (x.websocket ? x.websocket.out : null)) : null);
    push("devOnline", s.gateway ? s.gateway.online : null);
    push("devTel", s.gateway ? r((x) => (x.gateway ? x.gateway.telemetry_in : null)) : null);
    push("devCmd", s.gateway ? r((x) => (x.gateway ? x.gateway.commands : null)) : null);
    let mean = null, p99 = null;
    const lat = s.http && s.http.latency, plat = prev && prev.http && prev.http.latency;
    if (lat && plat && lat.count > plat.count) {
      mean = (lat.sum - plat.sum) / (lat.count - plat.count);
      p99 = quantile(0.99, lat, plat);
    }
    push("mean", mean);
    push("p99", p99);
    // MQTT: gauges as they are, counters as rates.
    const q = s.mqtt, pq = prev && prev.mqtt;
    const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
    push("mqClients", q ? sum(q.connections) : null);
    push("mqOnline", q ? q.sessions_online : null);
    push("mqSubs", q ? q.subscriptions : null);
    push("mqQueued", q ? q.queued_messages : null);
    push("mqIn", q && pq ? rate(sum(q.packets_in), sum(pq.packets_in), dt) : null);
    push("mqOut", q && pq ? rate(sum(q.packets_out), sum(pq.packets_out), dt) : null);
    push("mqDrop", q && pq ? rate(sum(q.dropped), sum(pq.dropped), dt) : null);
    // Upstream: every cluster's counters added up, as rates.
    const ut = upTotals(u), pt = upTotals(prevUp);
    const udt = u && prevUp ? (s.time - prevUpTime) : 0;
    push("upRq", ut && pt ? rate(ut.rq, pt.rq, udt) : null);
    push("upRetry", ut && pt ? rate(ut.retry, pt.retry, udt) : null);
    push("upHedge", ut && pt ? rate(ut.hedged, pt.hedged, udt) : null);
    push("upFail", ut && pt ? rate(ut.fail, pt.fail, udt) : null);
    trimHistory();
  }

  // upTotals adds up the counters of every cluster in an /api/upstream
  // answer, or returns null without one.
  function upTotals(u) {
    if (!u || !u.clusters || !u.clusters.length) return null;
    const t = { rq: 0, retry: 0, hedged: 0, fail: 0 };
    for (const c of u.clusters) {
      t.rq += c.rq_total; t.retry += c.rq_retry; t.hedged += c.rq_hedged || 0;
      for (const v of Object.values(c.rq_failures || {})) t.fail += v;
    }
    return t;
  }

  function bytesPerSec(v) { return bytes(v) + "/s"; }
  bytesPerSec.binary = true;

  function draw(s) {
    const int = (v) => si(v);
    const perSec = (v) => si(v, "/s");
    lineChart($("c-active"), [{ name: "active", values: hist.active }], int);
    lineChart($("c-rates"), [
      { name: "opened", values: hist.opens, color: COLORS[2] },
      { name: "closed", values: hist.closes, color: COLORS[4] },
    ], perSec);
    const reasons = Object.entries(s.closed).filter(([, v]) => v > 0)
      .sort((a, b) => b[1] - a[1]).map(([k, v]) => ({ label: k, value: v }));
    barChart($("c-reasons"), reasons, int, "no connection closed yet");
    const noProto = !s.http && !s.websocket ? "no HTTP or WebSocket collectors registered" : "";
    if (s.gateway) {
      $("devices-card").hidden = false;
      lineChart($("c-devices"), [
        { name: "online", values: hist.devOnline, color: COLORS[0] },
        { name: "telemetry/s", values: hist.devTel, color: COLORS[3] },
        { name: "commands/s", values: hist.devCmd, color: COLORS[1] },
      ], int);
    }
    lineChart($("c-requests"), [
      { name: "requests", values: hist.req, color: COLORS[0] },
      { name: "ws in", values: hist.wsIn, color: COLORS[3] },
      { name: "ws out", values: hist.wsOut, color: COLORS[1] },
    ], perSec, noProto);
    lineChart($("c-latency"), [
      { name: "mean", values: hist.mean, color: COLORS[0] },
      { name: "p99", values: hist.p99, color: COLORS[1] },
    ], ms, s.http && s.http.latency ? "" : "no HTTP latency histogram registered");
    lineChart($("c-memory"), [
      { name: "RSS / conn", values: hist.mem, color: COLORS[3] },
      { name: "Go heap / conn", values: hist.heapPer, color: COLORS[6] },
    ], bytes, s.active > 0 ? "" : "no open connections");
    barChart($("c-loops"), (s.loops || []).map((l, i) => ({ label: "loop " + i + (l.host !== undefined && l.host !== i ? " (on " + l.host + ")" : ""), value: l.conns, color: COLORS[0] })), int);
    lineChart($("c-bytes"), [
      { name: "received", values: hist.in, color: COLORS[2] },
      { name: "sent", values: hist.out, color: COLORS[0] },
    ], bytesPerSec);
    if (s.mqtt) {
      $("mqtt-card").hidden = false;
      $("mqtt-packets-card").hidden = false;
      lineChart($("c-mqtt"), [
        { name: "clients", values: hist.mqClients, color: COLORS[0] },
        { name: "sessions online", values: hist.mqOnline, color: COLORS[2] },
        { name: "subscriptions", values: hist.mqSubs, color: COLORS[3] },
        { name: "queued", values: hist.mqQueued, color: COLORS[5] },
      ], int);
      lineChart($("c-mqtt-packets"), [
        { name: "in", values: hist.mqIn, color: COLORS[2] },
        { name: "out", values: hist.mqOut, color: COLORS[0] },
        { name: "dropped", values: hist.mqDrop, color: COLORS[4] },
      ], perSec);
    }
    if (prevUp && prevUp.clusters && prevUp.clusters.length) {
      $("upstream-card").hidden = false;
      lineChart($("c-upstream"), [
        { name: "requests", values: hist.upRq, color: COLORS[0] },
        { name: "retries", values: hist.upRetry, color: COLORS[5] },
        { name: "hedges", values: hist.upHedge, color: COLORS[3] },
        { name: "failures", values: hist.upFail, color: COLORS[4] },
      ], perSec);
    }
    lineChart($("c-workers"), [
      { name: "busy", values: hist.busy, color: COLORS[0] },
      { name: "queued", values: hist.queue, color: COLORS[5] },
    ], int);
  }

  function tiles(s) {
    const rejected = Object.values(s.rejected).reduce((a, b) => a + b, 0);
    $("t-active").textContent = si(s.active);
    $("t-accepted").textContent = si(s.accepted);
    $("t-closed").textContent = si(s.closed_total);
    $("t-rejected").textContent = si(rejected);
    $("t-rss").textContent = bytes(s.rss_bytes);
    $("t-mem").textContent = s.active > 0 ? bytes(s.memory_per_connection_bytes) : "–";
    $("t-workers").textContent = si(s.workers_busy) + " / " + si(s.worker_queue);
    $("t-queued").textContent = bytes(s.queued_bytes);
    $("t-idle").textContent = dur(s.idle_timeout_seconds);
    $("t-overload").textContent = s.overload > 0 ? String(s.overload) : "normal";
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function busiest(s) {
    const table = $("busiest"), body = table.tBodies[0];
    const rows = s.top || [];
    body.replaceChildren();
    table.dataset.rows = String(rows.length);
    if (!rows.length) {
      const tr = body.insertRow();
      cell(tr, "no live connections", "empty").colSpan = 12;
      return;
    }
    for (const c of rows) {
      const tr = body.insertRow();
      cell(tr, c.id); cell(tr, c.remote); cell(tr, c.state); cell(tr, c.protocol); cell(tr, c.loop);
      cell(tr, dur(c.age_seconds)); cell(tr, dur(c.idle_seconds).replace("off", "0 s"));
      cell(tr, bytes(c.bytes_in)); cell(tr, bytes(c.bytes_out)); cell(tr, si(c.served));
      cell(tr, bytes(c.read_buffer_bytes) + " / " + bytes(c.write_buffer_bytes));
      const b = document.createElement("button");
      b.textContent = "close";
      b.title = "close this connection (reason: admin)";
      b.addEventListener("click", () => closeConn(c.id, c.remote));
      cell(tr, "").appendChild(b);
    }
  }

  function closeConn(id, remote) {
    if (!confirm("Close connection " + id + " from " + remote + "?")) return;
    api("debug/conns/" + id + "/close", { method: "POST" }).then((r) => {
      if (!r.ok) r.json().then((e) => alert(e.error || r.statusText), () => alert(r.statusText));
    });
  }

  function extra(s, p, dt) {
    const card = $("extra-card"), body = $("extra").tBodies[0];
    const list = s.extra || [];
    card.hidden = list.length === 0;
    body.replaceChildren();
    const before = new Map(((p && p.extra) || []).map((e) => [e.name, e.value]));
    for (const e of list) {
      const tr = body.insertRow();
      cell(tr, e.name); cell(tr, si(e.value));
      cell(tr, e.counter ? si(rate(e.value, before.get(e.name), dt)) : "");
    }
  }

  // ---- MQTT panel ---------------------------------------------------------
  function mqttTable(s, p, dt) {
    const q = s.mqtt, pq = p && p.mqtt;
    $("mqtt-section").hidden = !q;
    if (!q) return;
    const table = $("mqtt"), body = table.tBodies[0];
    body.replaceChildren();
    let rows = 0;
    const group = (name) => { const tr = body.insertRow(); tr.className = "group"; cell(tr, name).colSpan = 3; };
    const row = (name, v, pv, counter, fmt, cls) => {
      const tr = body.insertRow();
      cell(tr, name); cell(tr, (fmt || si)(v), cls);
      cell(tr, counter ? si(rate(v, pv, dt)) : "");
      rows++;
    };
    const sumv = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
    group("clients and sessions");
    for (const [ver, n] of Object.entries(q.connections)) row("clients, MQTT " + ver, n);
    row("connections before CONNECT", q.pending);
    row("sessions online", q.sessions_online);
    row("sessions offline", q.sessions_offline);
    row("subscriptions", q.subscriptions);
    row("retained messages", q.retained);
    row("queued messages (inflight included)", q.queued_messages);
    row("queued bytes", q.queued_bytes, null, false, bytes);
    group("packets by type");
    const types = new Set([...Object.keys(q.packets_in), ...Object.keys(q.packets_out)]);
    for (const ty of types) {
      const i = q.packets_in[ty] || 0, o = q.packets_out[ty] || 0;
      if (i === 0 && o === 0) continue;
      if (i > 0) row(ty.toUpperCase() + " in", i, pq && pq.packets_in[ty], true);
      if (o > 0) row(ty.toUpperCase() + " out", o, pq && pq.packets_out[ty], true);
    }
    for (const [qos, n] of Object.entries(q.publishes_in)) if (n > 0) row("PUBLISH in, QoS " + qos, n, pq && pq.publishes_in[qos], true);
    for (const [qos, n] of Object.entries(q.publishes_out)) if (n > 0) row("PUBLISH out, QoS " + qos, n, pq && pq.publishes_out[qos], true);
    group("drops and refusals by reason");
    row("messages dropped", sumv(q.dropped), pq && sumv(pq.dropped), true, si, sumv(q.dropped) > 0 ? "warn" : "");
    for (const [r, n] of Object.entries(q.dropped)) if (n > 0) row("dropped: " + r, n, pq && pq.dropped[r], true, si, "warn");
    row("CONNECTs refused", q.connects_refused, pq && pq.connects_refused, true, si, q.connects_refused > 0 ? "warn" : "");
    for (const [r, n] of Object.entries(q.refused_by_reason)) row("refused by the gateway: " + r, n, pq && pq.refused_by_reason[r], true);
    for (const [r, n] of Object.entries(q.closes_by_reason || {})) row("closed with reason code: " + r, n, pq && pq.closes_by_reason && pq.closes_by_reason[r], true);
    row("sessions taken over", q.takeovers, pq && pq.takeovers, true);
    row("keep-alive timeouts", q.keepalive_timeouts, pq && pq.keepalive_timeouts, true);
    row("protocol errors", q.protocol_errors, pq && pq.protocol_errors, true);
    row("rate limited", q.rate_limited, pq && pq.rate_limited, true);
    row("wills published", q.wills_published, pq && pq.wills_published, true);
    table.dataset.rows = String(rows);
  }

  // ---- upstream panel -----------------------------------------------------
  // One block per cluster: its breaker, counters and resource thresholds,
  // then a row per host.
  function upstreamPanel(u, pu, dt) {
    const clusters = (u && u.clusters) || [];
    const box = $("upstream");
    $("upstream-section").hidden = clusters.length === 0;
    box.dataset.clusters = String(clusters.length);
    box.replaceChildren();
    const before = new Map(((pu && pu.clusters) || []).map((c) => [c.name, c]));
    for (const c of clusters) {
      const p = before.get(c.name);
      const div = document.createElement("div");
      div.className = "cluster";
      div.dataset.cluster = c.name;
      const h = document.createElement("h3");
      h.textContent = "cluster " + c.name;
      const pill = (state, text) => {
        const sp = document.createElement("span");
        sp.className = "pill"; sp.dataset.state = state; sp.textContent = text;
        h.appendChild(sp);
      };
      pill(c.breaker_state, "breaker " + c.breaker_state.replace("_", "-"));
      if (c.panic) pill("panic", "panic: all hosts used");
      div.appendChild(h);
      const kv = document.createElement("div");
      kv.className = "kv";
      const fails = Object.values(c.rq_failures || {}).reduce((a, b) => a + b, 0);
      const pf = p ? Object.values(p.rq_failures || {}).reduce((a, b) => a + b, 0) : null;
      for (const [k, v] of [
        ["requests/s", si(rate(c.rq_total, p && p.rq_total, dt))], ["active", si(c.rq_active)],
        ["pending", si(c.rq_pending_active)], ["connections", si(c.cx_active)],
        ["retries", si(c.rq_retry)], ["hedged / won", si(c.rq_hedged) + " / " + si(c.rq_hedge_won)],
        ["throttled / rate limited", si(c.rq_throttled) + " / " + si(c.rq_rate_limited)],
        ["failures", si(fails) + (pf != null ? " (" + si(rate(fails, pf, dt)) + "/s)" : "")],
        ["timeouts", si(c.rq_timeout)], ["ejected now / total", si(c.outlier_ejected) + " / " + si(c.outlier_ejections)],
        ["breaker rejected", si(c.breaker_rejected)],
      ]) {
        const sp = document.createElement("span");
        sp.textContent = k + " ";
        const b = document.createElement("b");
        b.textContent = v;
        sp.appendChild(b);
        kv.appendChild(sp);
      }
      div.appendChild(kv);

      // Resource thresholds: the cluster's and each host's, and how often hit.
      const th = document.createElement("table");
      th.className = "thresholds";
      th.innerHTML = "<thead><tr><th>threshold</th><th>cluster in use / limit</th><th>cluster refusals</th><th>per-host limit</th><th>per-host hits</th></tr></thead><tbody></tbody>";
      const lim = (v) => (v < 0 ? "none" : si(v));
      for (const r of ["connections", "pending", "requests", "retries"]) {
        const cb = (c.circuit_breakers || {})[r] || {};
        const tr = th.tBodies[0].insertRow();
        cell(tr, r);
        cell(tr, si(cb.active) + " / " + lim(cb.limit));
        cell(tr, si(cb.overflow), cb.overflow > 0 ? "warn" : "");
        const hl = (c.host_limits || {})[r], ho = (c.host_overflow || {})[r];
        cell(tr, hl === undefined ? "–" : lim(hl));
        cell(tr, ho === undefined ? "–" : si(ho), ho > 0 ? "warn" : "");
      }
      div.appendChild(th);

      const ht = document.createElement("table");
      ht.className = "hosts";
      ht.innerHTML = "<thead><tr><th>host</th><th>address</th><th>state</th><th>active</th><th>assigned</th>" +
        "<th>conns open / idle</th><th>pending</th><th>requests</th><th>failed</th><th>5xx</th>" +
        "<th>threshold hits c / p / r / rt</th><th>checks ok / failed</th></tr></thead><tbody></tbody>";
      for (const x of c.hosts || []) {
        const tr = ht.tBodies[0].insertRow();
        const state = x.draining ? "draining" : x.ejected ? "ejected" : x.healthy ? "healthy" : "unhealthy";
        cell(tr, x.name); cell(tr, x.addr);
        cell(tr, state, state === "healthy" ? "ok" : state === "draining" ? "warn" : "bad");
        cell(tr, si(x.rq_active)); cell(tr, si(x.rq_assigned));
        cell(tr, si(x.cx_active) + " / " + si(x.cx_idle)); cell(tr, si(x.rq_pending));
        cell(tr, si(x.rq_total)); cell(tr, si(x.rq_failed));
        cell(tr, si((x.rq_status || {})["5xx"]));
        const o = x.overflow || {};
        cell(tr, si(o.connections) + " / " + si(o.pending) + " / " + si(o.requests) + " / " + si(o.retries),
          (o.pending || 0) + (o.requests || 0) + (o.retries || 0) > 0 ? "warn" : "");
        cell(tr, si(x.health_check_success) + " / " + si(x.health_check_failure));
      }
      ht.dataset.rows = String((c.hosts || []).length);
      div.appendChild(ht);
      box.appendChild(div);
    }
  }

  function status(state, text) {
    const el = $("status");
    el.dataset.state = state;
    el.textContent = text;
  }

  // ---- polling --------------------------------------------------------------
  let timer = 0, polls = 0;
  // /api/upstream is served where there are clusters (warren proxy, warren
  // serve -upstream); elsewhere it is 404, and asked again only now and then.
  let prevUp = null, prevUpTime = 0, upSkip = 0;

  function fetchUpstream() {
    if (upSkip > 0) { upSkip--; return Promise.resolve(null); }
    return api("api/upstream").then((r) => {
      if (r.status === 404) { upSkip = 30; return null; }
      return r.ok ? r.json() : null;
    }).catch(() => null);
  }

  function poll() {
    clearTimeout(timer);
    Promise.all([api("api/stats?top=" + TOP), fetchUpstream()]).then(([r, u]) => {
      if (r.status === 401) {
        status("unauthorized", "token needed");
        authForm.hidden = false;
        $("token").focus();
        return null; // wait for the form
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json().then((s) => [s, u]);
    }).then((su) => {
      if (!su) return;
      const [s, u] = su;
      const dt = prev ? s.time - prev.time : 0;
      record(s, u);
      const udt = u && prevUp ? s.time - prevUpTime : 0;
      upstreamPanel(u, prevUp, udt);
      if (u) { prevUp = u; prevUpTime = s.time; }
      draw(s);
      tiles(s);
      busiest(s);
      extra(s, prev, dt);
      mqttTable(s, prev, dt);
      prev = s;
      polls++;
      document.body.dataset.polls = String(polls);
      status(s.draining ? "draining" : "live", s.draining ? "draining" : "live");
      $("updated").textContent = "updated " + new Date(s.time * 1000).toLocaleTimeString();
      timer = setTimeout(poll, POLL_MS);
    }).catch((err) => {
      status("error", "unreachable: " + err.message);
      timer = setTimeout(poll, POLL_MS * 2);
    });
  }

  window.addEventListener("resize", () => { if (prev) draw(prev); });
  poll();
})();
