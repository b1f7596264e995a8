// rft view: the page. Vanilla JS, no dependencies; every text goes through textContent.
"use strict";

const S = {
  runs: [],          // /api/runs
  run: 0,            // the run shown in Rollouts and Evals
  tab: "rollouts",
  offset: 0,
  limit: 20,
  status: {},        // run id -> last /api/status entry
  metrics: {},       // run id -> {generation, records}
  evals: {},         // run id -> /api/runs/{id}/eval
  curveRuns: new Set(),
  extra: [],         // extra metric keys the user added
  hoverTimer: null,
  lastHover: null,
};

const COLORS = ["#1f6feb", "#e36209", "#1a7f37", "#8250df", "#cf222e", "#0598bc", "#bf8700", "#6e7781", "#d63384", "#20c997"];
const DASHES = ["", "6 3", "2 3", "10 3 2 3"];

// ---------------------------------------------------------------------------- helpers
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}
const $ = (sel) => document.querySelector(sel);
function fmt(x, d = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2);
  return x.toFixed(d);
}
async function api(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || `${path}: HTTP ${r.status}`);
  return body;
}
function promptText(p) {
  if (typeof p === "string") return p;
  if (Array.isArray(p)) {
    for (let i = p.length - 1; i >= 0; i--) if (p[i] && p[i].role === "user") return typeof p[i].content === "string" ? p[i].content : JSON.stringify(p[i].content);
  }
  return JSON.stringify(p);
}

// ---------------------------------------------------------------------------- start
async function start() {
  S.runs = await api("/api/runs");
  const sel = $("#run");
  S.runs.forEach((r) => sel.append(h("option", { value: r.id }, `${r.name}  (${r.path})`)));
  sel.addEventListener("change", () => { S.run = Number(sel.value); S.offset = 0; onRunChanged(); });
  if (S.runs.length < 2) sel.parentElement.hidden = true;
  S.runs.forEach((r) => S.curveRuns.add(r.id));
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("#filters").addEventListener("submit", (e) => { e.preventDefault(); S.offset = 0; loadGroups(); });
  $("#filters").addEventListener("change", (e) => { if (e.target.name !== "q") { S.offset = 0; loadGroups(); } });
  $("#reset").addEventListener("click", () => { $("#filters").reset(); S.offset = 0; loadGroups(); });
  $("#prev").addEventListener("click", () => { S.offset = Math.max(0, S.offset - S.limit); loadGroups(); });
  $("#next").addEventListener("click", () => { S.offset += S.limit; loadGroups(); });
  $("#modal-close").addEventListener("click", closeModal);
  $("#modal").addEventListener("click", (e) => { if (e.target.id === "modal") closeModal(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeModal(); });
  $("#smooth").addEventListener("input", () => { $("#smooth-v").textContent = $("#smooth").value; drawCharts(); });
  $("#extra").addEventListener("change", () => { const v = $("#extra").value; if (v && !S.extra.includes(v)) S.extra.push(v); $("#extra").value = ""; drawCharts(); });
  $("#only-regressed").addEventListener("change", drawEvalRows);
  $("#only-changed").addEventListener("change", drawEvalRows);
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("run")) { S.run = Number(hash.get("run")); sel.value = S.run; }
  if (hash.get("tab")) showTab(hash.get("tab"));
  await onRunChanged(hash);
  await Promise.all(S.runs.map((r) => loadMetrics(r.id, true)));
  await Promise.all(S.runs.map((r) => loadEval(r.id)));
  drawCharts(); drawEvals();
  poll();
}

function showTab(tab) {
  S.tab = tab;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  for (const t of ["rollouts", "curves", "evals"]) $(`#tab-${t}`).hidden = t !== tab;
  if (tab === "curves") drawCharts();
  if (tab === "evals") drawEvals();
}

// `#step=3&grader=format&sort=spread…` in the address sets the filters (links to a view).
function applyHashFilters(hash) {
  const f = $("#filters");
  for (const el of f.elements) {
    if (!el.name || !hash.has(el.name)) continue;
    if (el.type === "checkbox") el.checked = ["1", "true", "on"].includes(hash.get(el.name));
    else el.value = hash.get(el.name);
  }
}

async function onRunChanged(hash) {
  const run = S.runs[S.run];
  const gsel = $("#filters [name=grader]");
  gsel.replaceChildren(h("option", { value: "" }, "reward (combined)"), ...run.graders.map((g) => h("option", { value: g }, g)));
  await loadSteps();
  if (hash) applyHashFilters(hash);
  await loadGroups();
  drawEvals();
}

// ---------------------------------------------------------------------------- rollouts
async function loadSteps() {
  const steps = await api(`/api/runs/${S.run}/steps`);
  const sel = $("#filters [name=step]");
  const keep = sel.value;
  sel.replaceChildren(h("option", { value: "" }, `all (${steps.length} steps)`),
    ...steps.filter((s) => s.step !== null).map((s) => h("option", { value: s.step },
      `${s.step} · ${s.completions} completions · reward ${fmt(s.mean_reward, 2)}${s.zero_variance ? ` · ${s.zero_variance} zero-var` : ""}`)));
  sel.value = keep;
}

function filterParams() {
  const f = new FormData($("#filters"));
  const p = new URLSearchParams();
  for (const [k, v] of f.entries()) if (v !== "" && k !== "zero_variance") p.set(k, v);
  if (f.get("zero_variance")) p.set("zero_variance", "true");
  p.set("offset", S.offset); p.set("limit", S.limit);
  return p;
}

async function loadGroups(quiet) {
  let page;
  try {
    page = await api(`/api/runs/${S.run}/groups?${filterParams()}`);
  } catch (err) {
    $("#groups").replaceChildren(h("div", { class: "problems" }, String(err.message)));
    return;
  }
  if (quiet && page.total === S.lastTotal && page.lines === S.lastLines) return;
  S.lastTotal = page.total; S.lastLines = page.lines;
  $("#count").textContent = `${page.total} group${page.total === 1 ? "" : "s"} match · ${page.lines} rollout lines`;
  const pages = Math.max(1, Math.ceil(page.total / S.limit));
  $("#page").textContent = `page ${Math.floor(S.offset / S.limit) + 1} / ${pages}`;
  $("#prev").disabled = S.offset === 0;
  $("#next").disabled = S.offset + S.limit >= page.total;
  const graders = S.runs[S.run].graders;
  $("#groups").replaceChildren(...(page.groups.length ? page.groups.map((g) => groupCard(g, graders))
    : [h("p", { class: "muted" }, page.lines ? "No completion matches these filters." : "No rollouts yet: rollouts.jsonl appears once the RFT stage scores its first batch.")]));
}

function spreadBar(g) {
  const bar = h("span", { class: "spreadbar", title: `rewards: ${g.completions.map((c) => fmt(c.reward, 2)).join(", ")}` });
  const rs = g.completions.map((c) => c.reward).filter((r) => typeof r === "number");
  const lo = Math.min(0, ...rs), hi = Math.max(1, ...rs);
  for (const r of rs) bar.append(h("i", { style: `left:${((r - lo) / (hi - lo || 1)) * 100}%` }));
  return bar;
}

function graderCell(o) {
  if (!o) return h("td", {}, "–");
  const kids = [];
  if (o.score !== null && o.score !== undefined) kids.push(h("span", { class: "score" }, fmt(o.score)));
  if (o.kind && o.kind !== "score") kids.push(" ", h("span", { class: `tag ${o.kind === "not_applicable" ? "na" : "err"}` }, o.kind));
  if (o.reason) kids.push(h("span", { class: "reason" }, o.reason));
  if (o.error) kids.push(h("span", { class: "reason" }, o.error));
  return h("td", { class: "num" }, kids);
}

function groupCard(g, graders) {
  const anyFilter = [...new FormData($("#filters")).entries()].some(([k, v]) => v !== "" && !["sort"].includes(k));
  const head = h("div", { class: "group-head" },
    h("span", { class: "tag" }, `step ${g.step ?? "?"}`),
    h("span", { class: "prompt" }, g.prompt),
    spreadBar(g),
    h("span", { class: "tag", title: "mean ± std of the group's rewards" }, `${fmt(g.mean_reward, 2)} ± ${fmt(g.std_reward, 2)}`),
    g.zero_variance ? h("span", { class: "tag zero", title: "every completion got the same reward: no learning signal" }, "zero variance") : null);
  const rows = g.completions.map((c) => h("tr", {
    class: `completion${anyFilter && c.match ? " match" : ""}${anyFilter && !c.match ? " dim" : ""}`,
    "data-line": c.line, onclick: () => openRollout(S.run, c.line),
  },
  h("td", { class: "num" }, c.index ?? ""),
  h("td", { class: "num" }, h("span", { class: "score" }, fmt(c.reward))),
  ...graders.map((gid) => graderCell(c.graders[gid])),
  h("td", { class: "text" }, c.completion)));
  return h("div", { class: "group" }, head,
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "reward"), ...graders.map((gid) => h("th", {}, gid)), h("th", {}, "completion"))),
      h("tbody", {}, rows)));
}

async function openRollout(runId, line) {
  const data = await api(`/api/runs/${runId}/rollouts/${line}`);
  const rec = data.record;
  const prompt = Array.isArray(rec.prompt) ? rec.prompt.map((m) => h("div", { class: "msg" }, h("div", { class: "role" }, m.role || "?"),
    h("div", { class: "text" }, typeof m.content === "string" ? m.content : JSON.stringify(m.content, null, 2))))
    : [h("div", { class: "msg text" }, typeof rec.prompt === "string" ? rec.prompt : JSON.stringify(rec.prompt, null, 2))];
  const graders = Object.entries(rec.graders || {}).map(([gid, o]) => h("tr", {},
    h("td", {}, gid), h("td", { class: "num" }, fmt(o.score)), h("td", {}, o.kind || ""),
    h("td", { class: "text" }, [o.reason, o.error].filter(Boolean).join("\n"))));
  const known = new Set(["step", "index", "prompt", "completion", "reward", "graders", "completion_messages", "episode", "state"]);
  // an agent's episode: every turn, with its tool calls and the tools' results
  const turns = Array.isArray(rec.completion_messages) && rec.episode ? rec.completion_messages.map((m) => h("div", { class: "msg" },
    h("div", { class: "role" }, m.role === "tool" ? `tool${m.name ? ` · ${m.name}` : ""}` : (m.role || "?")),
    m.content ? h("div", { class: "text" }, typeof m.content === "string" ? m.content : JSON.stringify(m.content, null, 2)) : null,
    ...(m.tool_calls || []).map((tc) => h("div", { class: "text toolcall" },
      `→ ${(tc.function || {}).name}(${JSON.stringify((tc.function || {}).arguments)})`)))) : null;
  const ep = rec.episode ? h("p", {}, `${rec.episode.environment} · ${rec.episode.turns} turn(s) · ${rec.episode.tool_calls} tool call(s) · ${rec.episode.tool_errors} tool error(s) · success: ${rec.episode.success ?? "no signal"}`) : null;
  const extra = Object.fromEntries(Object.entries(rec).filter(([k]) => !known.has(k)));
  const pos = data.group.indexOf(line);
  const nav = h("div", { class: "pager" },
    h("span", {}, `step ${rec.step ?? "?"} · completion ${pos + 1} of ${data.group.length} in its group · rollouts.jsonl line ${line + 1}`),
    h("button", { type: "button", disabled: pos <= 0, onclick: () => openRollout(runId, data.group[pos - 1]) }, "◀"),
    h("button", { type: "button", disabled: pos >= data.group.length - 1, onclick: () => openRollout(runId, data.group[pos + 1]) }, "▶"));
  $("#modal-body").replaceChildren(nav,
    h("h2", {}, "Prompt"), ...prompt,
    ...(turns ? [h("h2", {}, `Episode · reward ${fmt(rec.reward)}`), ep, ...turns,
      h("h2", {}, "Final state"), h("pre", { class: "raw" }, JSON.stringify(rec.state, null, 2))]
      : [h("h2", {}, `Completion · reward ${fmt(rec.reward)}`), h("div", { class: "msg text", id: "full-completion" }, typeof rec.completion === "string" ? rec.completion : JSON.stringify(rec.completion, null, 2))]),
    h("h2", {}, "Graders"), h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "grader"), h("th", {}, "score"), h("th", {}, "kind"), h("th", {}, "reason / error"))), h("tbody", {}, graders)),
    ...(Object.keys(extra).length ? [h("h2", {}, "Other fields"), h("pre", { class: "raw" }, JSON.stringify(extra, null, 2))] : []));
  $("#modal").hidden = false;
}
function closeModal() { $("#modal").hidden = true; }

// ---------------------------------------------------------------------------- curves
async function loadMetrics(runId, full) {
  const have = S.metrics[runId];
  const start = full || !have ? 0 : have.records.length;
  const m = await api(`/api/runs/${runId}/metrics?start=${start}`);
  if (!have || full || m.generation !== have.generation) {
    if (start !== 0) return loadMetrics(runId, true);
    S.metrics[runId] = { generation: m.generation, records: m.records };
  } else {
    have.records.push(...m.records);
  }
}
async function loadEval(runId) { S.evals[runId] = await api(`/api/runs/${runId}/eval`); }

function series(runId, key, stage) {
  const recs = (S.metrics[runId] || { records: [] }).records;
  const pts = [];
  for (const r of recs) {
    if (stage && r.stage !== stage) continue;
    if ("train_runtime" in r) continue;
    let v = key.startsWith("=") ? derived(key, r) : r[key];
    if (typeof v === "number" && Number.isFinite(v)) pts.push([r.step, v]);
  }
  return pts;
}
function derived(key, r) {
  if (key === "=informative") return typeof r.frac_reward_zero_std === "number" ? 1 - r.frac_reward_zero_std : null;
  return null;
}
function smooth(pts, w) {
  if (!w) return pts;
  let last = 0, n = 0;
  return pts.map(([x, y]) => { last = last * w + (1 - w) * y; n++; return [x, last / (1 - Math.pow(w, n))]; });
}
function allKeys() {
  const keys = new Set();
  for (const id of S.curveRuns) for (const r of (S.metrics[id] || { records: [] }).records) for (const [k, v] of Object.entries(r)) if (typeof v === "number") keys.add(k);
  keys.delete("step");
  return [...keys].sort();
}
function graderKeys(pattern) {
  return allKeys().filter((k) => pattern.test(k));
}

function chartSpecs() {
  const rewardKeys = ["reward", ...graderKeys(/^rewards\/.+\/mean$/)];
  const specs = [
    { title: "Reward per grader (RFT)", keys: rewardKeys, stage: "rft", smooth: true, evals: true, id: "reward" },
    { title: "Loss", keys: ["loss"], stages: ["sft", "rft"], smooth: true, id: "loss" },
    { title: "KL", keys: ["kl"], stage: "rft", smooth: true, id: "kl" },
    { title: "Completion length (tokens)", keys: ["completions/mean_length", "completions/max_length"], stage: "rft", id: "length" },
    { title: "Grader latency p95 (s)", keys: graderKeys(/^graders\/.+\/latency_p95$/), stage: "rft", id: "latency" },
    { title: "Grader error rate", keys: graderKeys(/^graders\/.+\/error_rate$/), stage: "rft", id: "errors" },
    { title: "Informative groups (reward spread > 0)", keys: ["=informative"], stage: "rft", id: "informative" },
    { title: "Reward std within groups", keys: ["reward_std"], stage: "rft", id: "reward_std" },
  ];
  for (const k of S.extra) specs.push({ title: k, keys: [k], stages: ["sft", "rft"], smooth: true, id: `extra-${k}` });
  return specs;
}

function label(key) {
  if (key === "=informative") return "informative share";
  const m = key.match(/^(?:rewards|graders)\/(.+)\/(?:mean|latency_p95|error_rate)$/);
  return m ? m[1] : key;
}

function drawCharts() {
  if (S.tab !== "curves") return;
  const box = $("#curve-runs");
  if (S.runs.length > 1) {
    box.replaceChildren(...S.runs.map((r, i) => h("label", {}, h("input", { type: "checkbox", checked: S.curveRuns.has(r.id),
      onchange: (e) => { e.target.checked ? S.curveRuns.add(r.id) : S.curveRuns.delete(r.id); drawCharts(); } }),
    ` ${r.name} `, h("span", { class: "muted" }, DASHES[i % DASHES.length] ? "(dashed)" : "(solid)"))));
  }
  const extraSel = $("#extra");
  const known = new Set(chartSpecs().flatMap((s) => s.keys));
  extraSel.replaceChildren(h("option", { value: "" }, "add a metric…"), ...allKeys().filter((k) => !known.has(k)).map((k) => h("option", { value: k }, k)));
  const w = Number($("#smooth").value);
  $("#charts").replaceChildren(...chartSpecs().map((spec) => {
    const lines = [];
    let ci = 0;
    spec.keys.forEach((key) => {
      const color = COLORS[ci++ % COLORS.length];
      [...S.curveRuns].sort().forEach((runId) => {
        const runName = S.runs.length > 1 ? `${S.runs[runId].name}: ` : "";
        for (const stage of spec.stages || [spec.stage]) {
          const pts = series(runId, key, stage);
          if (!pts.length) continue;
          const stageName = spec.stages ? ` (${stage})` : "";
          const dash = DASHES[(runId + (spec.stages ? spec.stages.indexOf(stage) : 0)) % DASHES.length];
          if (spec.smooth && w > 0 && pts.length > 2) {
            lines.push({ name: `${runName}${label(key)}${stageName} raw`, color, dash, pts, faint: true });
            lines.push({ name: `${runName}${label(key)}${stageName}`, color, dash, pts: smooth(pts, w) });
          } else {
            lines.push({ name: `${runName}${label(key)}${stageName}`, color, dash, pts });
          }
        }
      });
    });
    const markers = [];
    if (spec.evals) {
      [...S.curveRuns].forEach((runId) => {
        const ev = S.evals[runId];
        if (!ev) return;
        const rftSteps = series(runId, "reward", "rft").map((p) => p[0]);
        const last = rftSteps.length ? Math.max(...rftSteps) : 1;
        ev.phases.forEach((ph, i) => {
          const v = ev.summary[ph].mean_reward;
          if (typeof v === "number") markers.push({ x: ph === "rft" ? last : 0, y: v, label: `eval ${ph}${S.runs.length > 1 ? ` (${S.runs[runId].name})` : ""}: ${fmt(v)}`, shape: i });
        });
      });
    }
    return lineChart(spec, lines, markers);
  }));
}

function niceTicks(lo, hi, n) {
  const span = hi - lo || 1;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / n)));
  const err = span / n / step0;
  const step = step0 * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function tickLabel(t, ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  if (step < 1e-3 || Math.abs(t) >= 1e5) return t === 0 ? "0" : t.toExponential(1);
  return t.toFixed(Math.max(0, -Math.floor(Math.log10(step))));
}

function legendLine(l) {
  const s = svg("svg", { width: 18, height: 6, class: "key" });
  s.append(svg("line", { x1: 0, x2: 18, y1: 3, y2: 3, stroke: l.color, "stroke-width": 2, "stroke-dasharray": l.dash }));
  return s;
}

function lineChart(spec, lines, markers) {
  const wrap = h("div", { class: "chart", "data-chart": spec.id }, h("h3", {}, spec.title));
  if (!lines.length && !markers.length) { wrap.append(h("div", { class: "empty" }, "not logged in this run")); return wrap; }
  const W = 460, H = 220, L = 46, R = 10, T = 8, B = 24;
  const xs = [], ys = [];
  for (const l of lines) for (const [x, y] of l.pts) { xs.push(x); ys.push(y); }
  for (const m of markers) { xs.push(m.x); ys.push(m.y); }
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  const axis = svg("g", { class: "axis" });
  const yTicks = niceTicks(y0, y1, 4);
  for (const t of yTicks) {
    axis.append(svg("line", { x1: L, x2: W - R, y1: Y(t), y2: Y(t) }));
    const tx = svg("text", { x: L - 4, y: Y(t) + 3, "text-anchor": "end" }); tx.textContent = tickLabel(t, yTicks); axis.append(tx);
  }
  for (const t of niceTicks(x0, x1, 6).filter((t) => Number.isInteger(t))) {
    const tx = svg("text", { x: X(t), y: H - 6, "text-anchor": "middle" }); tx.textContent = t; axis.append(tx);
  }
  s.append(axis);
  for (const l of lines) {
    const d = l.pts.map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
    s.append(svg("path", { d, fill: "none", stroke: l.color, "stroke-width": l.faint ? 1 : 2, "stroke-opacity": l.faint ? 0.3 : 1, "stroke-dasharray": l.dash }));
    if (l.pts.length <= 60 && !l.faint) for (const [x, y] of l.pts) s.append(svg("circle", { cx: X(x), cy: Y(y), r: 2.2, fill: l.color }));
  }
  for (const m of markers) {
    const g = svg("g", { class: "eval-marker" });
    const cx = X(m.x), cy = Y(m.y);
    g.append(m.shape === 1 ? svg("rect", { x: cx - 5, y: cy - 5, width: 10, height: 10, fill: "#ffd166", stroke: "#1d2733" })
      : svg("path", { d: `M${cx},${cy - 6}L${cx + 6},${cy + 5}L${cx - 6},${cy + 5}Z`, fill: m.shape === 0 ? "#fff" : "#7fd1b9", stroke: "#1d2733" }));
    const title = svg("title", {}); title.textContent = m.label; g.append(title);
    s.append(g);
  }
  const cursor = svg("line", { y1: T, y2: H - B, stroke: "#999", "stroke-dasharray": "3 3", visibility: "hidden" });
  s.append(cursor);
  const tip = h("div", { class: "tip", hidden: true });
  const steps = [...new Set(lines.flatMap((l) => l.pts.map((p) => p[0])))].sort((a, b) => a - b);
  const nearest = (ev) => {
    const rect = s.getBoundingClientRect();
    const x = x0 + ((ev.clientX - rect.left) / rect.width * W - L) / (W - L - R) * (x1 - x0);
    let best = steps[0];
    for (const st of steps) if (Math.abs(st - x) < Math.abs(best - x)) best = st;
    return best;
  };
  s.addEventListener("mousemove", (ev) => {
    if (!steps.length) return;
    const st = nearest(ev);
    cursor.setAttribute("x1", X(st)); cursor.setAttribute("x2", X(st)); cursor.setAttribute("visibility", "visible");
    const vals = lines.filter((l) => !l.faint).map((l) => { const p = l.pts.find((q) => q[0] === st); return p ? `${l.name}: ${fmt(p[1])}` : null; }).filter(Boolean);
    tip.replaceChildren(h("b", {}, `step ${st}`), ...vals.flatMap((v) => [h("br"), v]));
    const rect = wrap.getBoundingClientRect();
    tip.style.left = `${Math.min(ev.clientX - rect.left + 12, rect.width - 180)}px`;
    tip.style.top = `${ev.clientY - rect.top + 12}px`;
    tip.hidden = false;
    hoverStep(st);
  });
  s.addEventListener("mouseleave", () => { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); });
  s.addEventListener("click", (ev) => { if (steps.length) openStep(nearest(ev)); });
  const legend = h("div", { class: "legend" }, lines.filter((l) => !l.faint).map((l) => h("span", {}, legendLine(l), " ", l.name)),
    markers.length ? h("span", {}, "△ base · ■ sft · ▲ rft (held-out eval)") : null);
  wrap.append(s, tip, legend);
  return wrap;
}

// A logged step N holds the rewards of the completions generated at trainer step N-1.
function rolloutStep(loggedStep) { return loggedStep - 1; }

function hoverStep(st) {
  if (S.lastHover === st) return;
  S.lastHover = st;
  clearTimeout(S.hoverTimer);
  S.hoverTimer = setTimeout(async () => {
    const panel = $("#hover-samples");
    const runId = [...S.curveRuns].sort()[0] ?? S.run;
    let page;
    try { page = await api(`/api/runs/${runId}/groups?step=${rolloutStep(st)}&limit=3&sort=spread`); } catch (err) { panel.replaceChildren(String(err.message)); return; }
    const graders = S.runs[runId].graders;
    panel.replaceChildren(h("h2", {}, `Samples of logged step ${st} (rollout step ${rolloutStep(st)}, ${S.runs[runId].name}): ${page.total} groups, widest reward spread first`),
      ...(page.groups.length ? page.groups.map((g) => groupCard(g, graders)) : [h("p", { class: "muted" }, "no rollouts at this step")]));
  }, 200);
}
function openStep(st) {
  const f = $("#filters");
  f.reset();
  f.elements.step.value = String(rolloutStep(st));
  S.offset = 0;
  showTab("rollouts");
  loadGroups();
}

// ---------------------------------------------------------------------------- evals
function drawEvals() {
  if (S.tab !== "evals") return;
  const summary = $("#eval-summary");
  const ids = S.runs.map((r) => r.id).filter((id) => S.evals[id] && S.evals[id].phases.length);
  if (!ids.length) { summary.replaceChildren(h("p", { class: "muted" }, "No eval.json yet: it is written after each stage's held-out evaluation.")); $("#eval-rows").replaceChildren(); return; }
  const cols = ids.flatMap((id) => S.evals[id].phases.map((ph) => ({ id, ph })));
  const graders = [...new Set(cols.flatMap(({ id, ph }) => Object.keys(S.evals[id].summary[ph].graders || {})))];
  const metricRows = [["held-out rows", (s) => s.n], ["mean reward", (s) => s.mean_reward], ["pass rate", (s) => s.pass_rate]];
  for (const g of graders) {
    metricRows.push([`${g}: mean`, (s) => (s.graders?.[g] || {}).mean], [`${g}: pass rate`, (s) => (s.graders?.[g] || {}).pass_rate], [`${g}: errors`, (s) => (s.graders?.[g] || {}).errors]);
  }
  const multi = ids.length > 1;
  summary.replaceChildren(h("h2", {}, "Held-out eval, base → SFT → RFT, with the run's graders"),
    h("table", { class: "eval-summary" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), ...cols.map(({ id, ph }) => h("th", {}, multi ? `${S.runs[id].name} · ${ph}` : ph)))),
      h("tbody", {}, metricRows.map(([name, get]) => h("tr", {}, h("td", {}, name), ...cols.map(({ id, ph }, i) => {
        const v = get(S.evals[id].summary[ph]);
        const prev = i > 0 && cols[i - 1].id === id ? get(S.evals[id].summary[cols[i - 1].ph]) : null;
        const cls = typeof v === "number" && typeof prev === "number" && !name.endsWith("errors") && name !== "held-out rows" ? (v > prev ? "up" : v < prev ? "down" : "") : "";
        return h("td", { class: `num ${cls}` }, fmt(v));
    }))))));
  drawEvalRows();
}

function drawEvalRows() {
  const ev = S.evals[S.run];
  const box = $("#eval-rows");
  if (!ev || !ev.rows.length) { box.replaceChildren(); return; }
  let rows = ev.rows;
  if ($("#only-regressed").checked) rows = rows.filter((r) => r.regressed);
  if ($("#only-changed").checked) rows = rows.filter((r) => r.completion_changed);
  const regressed = ev.rows.filter((r) => r.regressed).length;
  box.replaceChildren(h("h2", {}, `Per held-out row (${S.runs[S.run].name}): ${ev.rows.length} kept samples, ${regressed} regressed`),
    h("table", { class: "eval-rows" },
      h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "prompt"), ...ev.phases.map((ph) => h("th", {}, ph)), h("th", {}, "change"))),
      h("tbody", {}, rows.map((r) => h("tr", { class: r.regressed ? "regressed" : "" },
        h("td", { class: "num" }, r.row),
        h("td", { class: "text" }, r.prompt),
        ...ev.phases.map((ph) => {
          const p = r.phases[ph];
          if (!p) return h("td", {}, "–");
          return h("td", {}, h("div", { class: "text" }, p.completion), h("div", { class: "muted" },
            `reward ${fmt(p.reward)}`, ...Object.entries(p.scores || {}).map(([g, v]) => ` · ${g} ${fmt(v, 2)}`)));
        }),
        h("td", { class: `num ${r.change > 0 ? "up" : r.change < 0 ? "down" : ""}` }, r.change === null ? "–" : (r.change > 0 ? "+" : "") + fmt(r.change)))))));
}

// ---------------------------------------------------------------------------- live
async function poll() {
  try {
    const all = await api("/api/status");
    let curves = false;
    for (const st of all) {
      const old = S.status[st.id];
      S.status[st.id] = st;
      if (!old) continue;
      if (st.metrics_lines !== old.metrics_lines || st.metrics_generation !== old.metrics_generation) {
        await loadMetrics(st.id, st.metrics_generation !== old.metrics_generation); curves = true;
      }
      if (st.eval_mtime !== old.eval_mtime) { await loadEval(st.id); curves = true; drawEvals(); }
      if (st.id === S.run && (st.rollout_lines !== old.rollout_lines || st.rollouts_generation !== old.rollouts_generation)) {
        await loadSteps();
        if ($("#modal").hidden) await loadGroups(true);
      }
      if (!old.finished && st.finished) S.runs = await api("/api/runs");
    }
    if (curves) drawCharts();
    const cur = S.status[S.run];
    const live = $("#live");
    const lastStep = (S.metrics[S.run]?.records || []).filter((r) => r.stage === "rft").map((r) => r.step).pop();
    live.className = cur.finished ? "live" : "live on";
    live.textContent = `${cur.finished ? "finished" : "following"} · ${cur.rollout_lines} rollouts${lastStep !== undefined ? ` · rft step ${lastStep}` : ""} · ${new Date().toLocaleTimeString()}`;
    const problems = all.flatMap((s) => s.problems.map((p) => `${S.runs[s.id].name}: ${p}`));
    $("#problems").hidden = !problems.length;
    $("#problems").textContent = problems.join("\n");
  } catch (err) {
    $("#live").className = "live";
    $("#live").textContent = `viewer unreachable (${err.message}); retrying`;
  }
  setTimeout(poll, 2000);
}

start().catch((err) => { document.body.prepend(h("div", { class: "problems" }, `rft view failed to start: ${err.message}`)); });
