/**
 * The dashboard page: HTML, CSS and one plain browser module, as strings (no build step, nothing
 * read from disk at run time, so the published package needs no extra files). The script builds
 * every element with `textContent`, never `innerHTML`, so nothing from the database is parsed as
 * markup, and it runs under a Content-Security-Policy that allows only these same-origin files.
 *
 * Stable `data-testid` attributes name what tests read: `connection`, `last-update`, `error`,
 * `latest-position`, `append-rate`, `leader`, `schema`, `worker-row` (`data-worker-id`),
 * `worker-live`, `worker-heartbeat`, `worker-consumers`, `consumer-row` (`data-consumer`),
 * `consumer-worker`, `consumer-checkpoint`, `consumer-lag`, `consumer-rate`, `lag-chart`,
 * `lag-line` (`data-consumer`, `data-points`), `gap-wait` (`data-consumer`), `gap-blocker`
 * (`data-pid`), `dead-letter` (`data-consumer`, `data-position`), `redrive`, `action-result`,
 * `encryption`, `token-form`.
 *
 * @module
 */

/**
 * The HTML shell; the script fills it in.
 *
 * @example
 * ```ts
 * new Response(PAGE_HTML, { headers: { "content-type": "text/html; charset=utf-8" } });
 * ```
 */
export const PAGE_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>eventsalsa dashboard</title>
<link rel="stylesheet" href="dashboard.css">
<script type="module" src="dashboard.js"></script>
</head>
<body>
<header>
  <h1>eventsalsa <span class="muted">dashboard</span></h1>
  <span class="pill" data-testid="connection">connecting</span>
  <span class="muted" data-testid="last-update"></span>
  <span class="pill" data-testid="mode"></span>
</header>
<form id="token-form" data-testid="token-form" hidden>
  <label>Token <input id="token-input" type="password" autocomplete="off" size="40"></label>
  <button type="submit">Use token</button>
  <span class="muted">printed by <code>eventsalsa dashboard</code> at start</span>
</form>
<div class="error" data-testid="error" hidden></div>
<main>
  <section class="summary">
    <div><div class="label">latest position</div><div class="big" data-testid="latest-position">-</div></div>
    <div><div class="label">appended/s</div><div class="big" data-testid="append-rate">-</div></div>
    <div><div class="label">leader</div><div class="big" data-testid="leader">-</div></div>
    <div class="wide"><div class="label">schema</div><div data-testid="schema">-</div></div>
  </section>
  <section>
    <h2>Workers</h2>
    <table>
      <thead><tr><th>worker</th><th>state</th><th>last heartbeat</th><th>started</th><th>consumers</th></tr></thead>
      <tbody id="workers"></tbody>
    </table>
  </section>
  <section>
    <h2>Consumers</h2>
    <table>
      <thead><tr><th>consumer</th><th>worker</th><th class="num">checkpoint</th><th class="num">lag</th><th class="num">events/s</th><th>dead letters</th><th class="num">gap skips</th><th>state</th></tr></thead>
      <tbody id="consumers"></tbody>
    </table>
  </section>
  <section>
    <h2>Lag <span class="muted" id="chart-window"></span></h2>
    <svg data-testid="lag-chart" id="chart" viewBox="0 0 900 220" preserveAspectRatio="none" role="img" aria-label="lag per consumer over time"></svg>
    <div class="legend" id="legend"></div>
  </section>
  <section>
    <h2>Gap waits</h2>
    <p class="muted">A consumer waits at a position that an open transaction may still commit; ending that transaction lets it go on.</p>
    <div id="gaps"></div>
  </section>
  <section>
    <h2>Dead letters <span class="muted" id="dead-letter-count"></span></h2>
    <div class="muted" data-testid="action-result" id="action-result"></div>
    <table>
      <thead><tr><th>consumer</th><th class="num">position</th><th>state</th><th>event</th><th>aggregate</th><th class="num">attempts</th><th>error</th><th>since</th><th></th></tr></thead>
      <tbody id="dead-letters"></tbody>
    </table>
  </section>
  <section>
    <h2>Encryption</h2>
    <div data-testid="encryption" id="encryption">-</div>
  </section>
</main>
</body>
</html>
`;

/**
 * The style sheet.
 *
 * @example
 * ```ts
 * new Response(PAGE_CSS, { headers: { "content-type": "text/css; charset=utf-8" } });
 * ```
 */
export const PAGE_CSS: string = `:root {
  color-scheme: light;
  --fg: #1d2330; --muted: #6b7383; --line: #e3e6ec; --bg: #f6f7f9; --card: #fff;
  --ok: #13795b; --bad: #b42318; --warn: #b54708; --accent: #3451b2;
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 12px; align-items: center; padding: 10px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0 8px 0 0; }
h2 { font-size: 15px; margin: 0 0 8px; }
main { padding: 16px 20px; display: grid; gap: 16px; max-width: 1400px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; overflow-x: auto; }
.summary { display: flex; gap: 32px; flex-wrap: wrap; }
.summary .wide { flex: 1; min-width: 300px; }
.label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.big { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); font-weight: normal; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px 5px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:last-child td { border-bottom: none; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; background: var(--line); }
.pill.ok { background: #d1fadf; color: var(--ok); }
.pill.bad { background: #fee4e2; color: var(--bad); }
.pill.warn { background: #fef0c7; color: var(--warn); }
.error { margin: 12px 20px 0; padding: 8px 12px; border-radius: 6px; background: #fee4e2; color: var(--bad); }
#token-form { margin: 12px 20px 0; padding: 8px 12px; border-radius: 6px; background: #fef0c7; }
#chart { width: 100%; height: 220px; display: block; background: #fbfbfd; border: 1px solid var(--line); border-radius: 4px; }
.legend { display: flex; gap: 16px; flex-wrap: wrap; margin-top: 6px; font-size: 12px; }
.swatch { display: inline-block; width: 12px; height: 3px; margin-right: 5px; vertical-align: middle; }
.gap { border-left: 3px solid var(--warn); padding: 4px 10px; margin-bottom: 10px; }
.gap ul { margin: 4px 0 0; padding-left: 18px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.error-text { max-width: 420px; white-space: pre-wrap; word-break: break-word; }
button { font: inherit; padding: 2px 10px; border: 1px solid var(--line); border-radius: 4px; background: var(--card); cursor: pointer; }
button:hover { border-color: var(--accent); color: var(--accent); }
.c0 { background: #3451b2; } .c1 { background: #d9480f; } .c2 { background: #2b8a3e; } .c3 { background: #9c36b5; }
.c4 { background: #0b7285; } .c5 { background: #c2255c; } .c6 { background: #5c940d; } .c7 { background: #495057; }
`;

/**
 * The browser module: reads the event stream (server-sent events) with `fetch`, so it can send
 * the token header, which `EventSource` cannot, and renders each snapshot.
 *
 * @example
 * ```ts
 * new Response(PAGE_JS, { headers: { "content-type": "text/javascript; charset=utf-8" } });
 * ```
 */
export const PAGE_JS: string = String.raw`// eventsalsa dashboard: plain module, no framework.
const COLORS = ["#3451b2", "#d9480f", "#2b8a3e", "#9c36b5", "#0b7285", "#c2255c", "#5c940d", "#495057"];
const SVG = "http://www.w3.org/2000/svg";
const state = { config: null, snapshot: null, samples: [], colors: new Map() };
const $ = (id) => document.getElementById(id);
const byTestId = (id) => document.querySelector("[data-testid='" + id + "']");

// The token: from the URL fragment the CLI printed (never sent to the server as part of a URL),
// kept for this tab only.
(function takeToken() {
  const match = /(?:^#|&)token=([0-9A-Za-z._~-]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("eventsalsa-token", match[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
})();
const token = () => sessionStorage.getItem("eventsalsa-token");
function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h["X-Eventsalsa-Token"] = token();
  return h;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, String(value));
  }
  return node;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "?";
  if (ms < 60000) return (ms / 1000).toFixed(1) + "s";
  const s = Math.floor(ms / 1000);
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
}
const number = (n) => n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US");
const rate = (r) => r === null || r === undefined ? "-" : (r >= 100 ? r.toFixed(0) : r.toFixed(1));
const time = (iso) => iso ? new Date(iso).toLocaleTimeString() : "-";
function colorOf(name) {
  if (!state.colors.has(name)) state.colors.set(name, state.colors.size % COLORS.length);
  return state.colors.get(name);
}

function setConnection(text, kind) {
  const node = byTestId("connection");
  node.textContent = text;
  node.className = "pill " + (kind || "");
}

function renderSummary(s) {
  byTestId("latest-position").textContent = number(s.latestPosition);
  byTestId("append-rate").textContent = rate(s.appendRate);
  byTestId("leader").textContent = s.leader ? s.leader.workerId + " (" + s.leader.strategy + ")" : "none";
  byTestId("schema").textContent = s.schema ? s.schema.summary.replace(/^schema: /, "") : "-";
  byTestId("last-update").textContent = "updated " + time(s.at);
  const error = byTestId("error");
  error.hidden = !s.error;
  error.textContent = s.error ? "last poll failed: " + s.error : "";
}

function renderWorkers(s) {
  const leader = s.leader ? s.leader.workerId : null;
  $("workers").replaceChildren(...(s.workers.length === 0
    ? [el("tr", {}, el("td", { colspan: 5, class: "muted", text: "no worker registered" }))]
    : s.workers.map((w) => el("tr", { "data-testid": "worker-row", "data-worker-id": w.workerId },
      el("td", {}, el("code", { text: w.workerId }), w.workerId === leader ? el("span", { class: "pill ok", text: "leader" }) : null),
      el("td", {}, el("span", { class: "pill " + (w.live ? "ok" : "bad"), "data-testid": "worker-live", text: w.live ? "live" : "dead" })),
      el("td", { "data-testid": "worker-heartbeat", text: duration(w.heartbeatAgeMs) + " ago" }),
      el("td", { text: time(w.startedAt) }),
      el("td", { "data-testid": "worker-consumers", text: w.consumers.join(", ") || "-" }),
    ))));
}

function renderConsumers(s) {
  $("consumers").replaceChildren(...(s.consumers.length === 0
    ? [el("tr", {}, el("td", { colspan: 8, class: "muted", text: "no consumer has run yet" }))]
    : s.consumers.map((c) => {
      const dl = c.deadLetters.blocking + c.deadLetters.skipped === 0 ? "-"
        : c.deadLetters.blocking + " blocking, " + c.deadLetters.skipped + " skipped";
      const status = c.gap ? el("span", { class: "pill warn", text: "waiting at " + c.gap.position })
        : c.deadLetters.blocking > 0 ? el("span", { class: "pill bad", text: "blocked" })
        : c.lag === 0 ? el("span", { class: "pill ok", text: "caught up" })
        : el("span", { class: "pill", text: "behind" });
      return el("tr", { "data-testid": "consumer-row", "data-consumer": c.name },
        el("td", {}, el("span", { class: "swatch c" + colorOf(c.name) }), c.name),
        el("td", { "data-testid": "consumer-worker" }, c.workerId ? el("code", { text: c.workerId }) : el("span", { class: "muted", text: "(unassigned)" })),
        el("td", { class: "num", "data-testid": "consumer-checkpoint", text: c.checkpoint }),
        el("td", { class: "num", "data-testid": "consumer-lag", text: c.lag }),
        el("td", { class: "num", "data-testid": "consumer-rate", text: rate(c.rate) }),
        el("td", { text: dl }),
        el("td", { class: "num", text: c.gapSkips }),
        el("td", {}, status),
      );
    })));
}

function renderChart() {
  const chart = $("chart");
  const W = 900, H = 220, left = 48, right = 10, top = 10, bottom = 22;
  const samples = state.samples;
  const names = state.snapshot ? state.snapshot.consumers.map((c) => c.name) : [];
  chart.replaceChildren();
  if (samples.length === 0) {
    chart.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#6b7383", text: "no samples yet" }));
    return;
  }
  const t1 = samples[samples.length - 1].t;
  const t0 = Math.min(samples[0].t, t1 - 1000);
  let max = 1;
  for (const s of samples) for (const n of names) max = Math.max(max, s.lags[n] || 0);
  const x = (t) => left + (W - left - right) * (t - t0) / (t1 - t0);
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    chart.append(svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), stroke: "#e3e6ec", "stroke-width": 1 }));
    chart.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7383", text: number(v) }));
  }
  chart.append(svg("text", { x: left, y: H - 6, "font-size": 11, fill: "#6b7383", text: "-" + duration(t1 - t0) }));
  chart.append(svg("text", { x: W - right, y: H - 6, "text-anchor": "end", "font-size": 11, fill: "#6b7383", text: "now" }));
  names.forEach((name) => {
    const points = samples.filter((s) => name in s.lags).map((s) => x(s.t).toFixed(1) + "," + y(s.lags[name]).toFixed(1));
    chart.append(svg("polyline", {
      points: points.join(" "), fill: "none", stroke: COLORS[colorOf(name)], "stroke-width": 2,
      "stroke-linejoin": "round", "data-testid": "lag-line", "data-consumer": name, "data-points": points.length,
    }));
  });
  $("chart-window").textContent = "last " + duration(t1 - t0) + ", max " + number(max);
  $("legend").replaceChildren(...names.map((name) => el("span", {}, el("span", { class: "swatch c" + colorOf(name) }), name)));
}

function renderGaps(s) {
  const waiting = s.consumers.filter((c) => c.gap);
  $("gaps").replaceChildren(...(waiting.length === 0
    ? [el("div", { class: "muted", text: "no consumer waits at a gap" })]
    : waiting.map((c) => el("div", { class: "gap", "data-testid": "gap-wait", "data-consumer": c.name },
      el("strong", { text: c.name }), " waits at position ", el("strong", { text: c.gap.position }),
      " for " + duration(c.gap.waitingMs),
      el("ul", {}, ...(c.gap.blockers.length === 0
        ? [el("li", { class: "muted", text: "no blocking transaction seen (resolving)" })]
        : c.gap.blockers.map((b) => el("li", { "data-testid": "gap-blocker", "data-pid": b.pid === null ? "" : b.pid },
          "pid ", el("strong", { class: "mono", text: b.pid === null ? "?" : b.pid }),
          b.xid ? ", xid " + b.xid : "",
          b.database ? ", database " + b.database : "",
          b.transactionAgeMs === null ? "" : ", open " + duration(b.transactionAgeMs),
          b.state ? ", " + b.state : "",
          b.applicationName ? ", application " + b.applicationName : "",
          b.query ? el("div", { class: "mono muted", text: b.query }) : null,
        )))),
    ))));
}

function renderDeadLetters(s) {
  const actions = state.config && state.config.actions;
  $("dead-letter-count").textContent = s.deadLetters.open + " open" +
    (s.deadLetters.shown.length < s.deadLetters.open ? ", first " + s.deadLetters.shown.length + " shown" : "");
  $("dead-letters").replaceChildren(...(s.deadLetters.shown.length === 0
    ? [el("tr", {}, el("td", { colspan: 9, class: "muted", text: "no open dead letters" }))]
    : s.deadLetters.shown.map((d) => {
      const canRedrive = actions && actions.enabled && d.state === "skipped" && actions.redrive.includes(d.consumer);
      return el("tr", { "data-testid": "dead-letter", "data-consumer": d.consumer, "data-position": d.globalPosition },
        el("td", { text: d.consumer }),
        el("td", { class: "num", text: d.globalPosition }),
        el("td", {}, el("span", { class: "pill " + (d.state === "blocking" ? "bad" : "warn"), text: d.state })),
        el("td", { text: d.eventType }),
        el("td", { class: "mono", text: d.aggregate }),
        el("td", { class: "num", text: d.attempts }),
        el("td", { class: "error-text mono", title: d.error, text: d.error.split("\n")[0] }),
        el("td", { text: time(d.createdAt) }),
        el("td", {}, canRedrive ? el("button", { "data-testid": "redrive", onclick: () => redrive(d) , text: "redrive" }) : null),
      );
    })));
}

function renderEncryption(s) {
  const e = s.encryption;
  const box = $("encryption");
  if (!e) { box.textContent = "-"; return; }
  if (!e.installed) {
    box.replaceChildren(el("span", { class: "muted", "data-testid": "encryption-state", text: "not installed (no table " + e.table + ")" }));
    return;
  }
  box.replaceChildren(
    el("div", { class: "summary" },
      el("div", {}, el("div", { class: "label", text: "subjects with keys" }), el("div", { class: "big", "data-testid": "encryption-subjects", text: number(e.subjects) })),
      el("div", {}, el("div", { class: "label", text: "data keys (active)" }), el("div", { class: "big", text: number(e.keys) + " (" + number(e.activeKeys) + ")" })),
      el("div", {}, el("div", { class: "label", text: "destroyed subjects" }), el("div", { class: "big", "data-testid": "encryption-destroyed", text: e.destroyedSubjects === null ? "-" : number(e.destroyedSubjects) })),
    ),
    el("table", {},
      el("thead", {}, el("tr", {}, el("th", { text: "system key" }), el("th", { class: "num", text: "data keys" }), el("th", { class: "num", text: "subjects" }))),
      el("tbody", {}, ...e.bySystemKey.map((k) => el("tr", { "data-testid": "system-key", "data-system-key": k.systemKeyId },
        el("td", {}, el("code", { text: k.systemKeyId })), el("td", { class: "num", text: number(k.keys) }), el("td", { class: "num", text: number(k.subjects) }))))),
    el("div", { class: "muted", text: "table " + e.table + ", counted " + time(e.checkedAt) + "; counts only: no key material, no subject ids" }),
  );
}

function render() {
  const s = state.snapshot;
  if (!s) return;
  renderSummary(s);
  renderWorkers(s);
  renderConsumers(s);
  renderChart();
  renderGaps(s);
  renderDeadLetters(s);
  renderEncryption(s);
}

function addSample(sample) {
  if (!sample) return;
  state.samples.push(sample);
  const history = state.config ? state.config.historyMs : 600000;
  const oldest = sample.t - history;
  while (state.samples.length > 0 && state.samples[0].t < oldest) state.samples.shift();
}

async function redrive(d) {
  const result = $("action-result");
  result.textContent = "redriving " + d.consumer + " at " + d.globalPosition + "...";
  try {
    const response = await fetch("api/actions/redrive", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ consumer: d.consumer, position: d.globalPosition }),
    });
    const body = await response.json().catch(() => ({}));
    result.textContent = response.ok ? body.message : "refused (" + response.status + "): " + (body.error || "");
  } catch (error) {
    result.textContent = "failed: " + error;
  }
}

function askForToken() {
  const form = $("token-form");
  form.hidden = false;
  return new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      sessionStorage.setItem("eventsalsa-token", $("token-input").value.trim());
      form.hidden = true;
      resolve();
    };
  });
}

function modeText() {
  const c = state.config;
  const mode = byTestId("mode");
  mode.textContent = c.actions.enabled ? "actions allowed" : "read-only";
  mode.className = "pill " + (c.actions.enabled ? "warn" : "");
}

function onEvent(name, data) {
  if (name === "hello") {
    state.config = data.config;
    state.samples = data.samples.slice();
    state.snapshot = data.snapshot;
    modeText();
  } else if (name === "snapshot") {
    addSample(data.sample);
    state.snapshot = data.snapshot;
  }
  render();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Server-sent events over fetch: the same text/event-stream, read frame by frame.
async function stream() {
  for (;;) {
    try {
      const response = await fetch("api/events", { headers: headers(), cache: "no-store" });
      if (response.status === 401) {
        setConnection("token needed", "bad");
        await askForToken();
        continue;
      }
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      setConnection("live", "ok");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          const data = [];
          for (const line of frame.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length > 0) onEvent(event, JSON.parse(data.join("\n")));
        }
      }
    } catch (error) {
      console.warn("event stream:", error);
    }
    setConnection("reconnecting", "warn");
    await sleep(1000);
  }
}

stream();
`;
