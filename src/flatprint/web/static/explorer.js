// flatprint explorer: the little JavaScript the server-rendered pages need (no network beyond this server).
"use strict";

const DATASET = document.body.dataset.dataset;
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

// Plots are drawn just after the page's load event (the tables and text show first); when every
// plot is drawn the page marks performance 'flatprint-ready' and sets body[data-ready].
let pending = 0;
const loaded = new Promise((resolve) => window.addEventListener("load", () => setTimeout(resolve, 0)));
// plotly.js (from the plotly Python package, served by this server) is fetched after the page has
// loaded, so tables and text never wait for it.
const plotlyReady = loaded.then(() => new Promise((resolve) => {
  const src = document.body.dataset.plotly;
  if (!src || window.Plotly) { resolve(); return; }
  const script = document.createElement("script");
  script.src = src;
  script.onload = resolve;
  script.onerror = resolve;  // drawFigure reports it
  document.head.appendChild(script);
}));
function started() { pending += 1; }
function finished() {
  pending -= 1;
  if (pending <= 0 && !document.body.dataset.ready) {
    performance.mark("flatprint-ready");
    document.body.dataset.ready = "1";
  }
}

function drawFigure(el, fig) {
  if (!window.Plotly) { el.textContent = "plotly.js did not load"; return; }
  if (!fig.data || fig.data.length === 0) {
    el.innerHTML = '<p class="empty">' + esc((fig.layout && fig.layout.title && fig.layout.title.text) || "nothing to draw") + "</p>";
    return;
  }
  Plotly.newPlot(el, fig.data, fig.layout || {}, {responsive: true, displaylogo: false});
  if (fig.bodies) {  // path graph: click a node to open the neuron
    el.on("plotly_click", (ev) => {
      const p = ev.points && ev.points[0];
      if (p && p.customdata) location.href = "/explorer/neuron/" + p.customdata + "?dataset=" + encodeURIComponent(DATASET);
    });
  }
  el.dataset.drawn = "1";
}

function drawEmbedded() {
  document.querySelectorAll("[data-figure]").forEach((el) => {
    const src = document.getElementById(el.dataset.figure);
    if (!src) return;
    started();
    try { drawFigure(el, JSON.parse(src.textContent)); } finally { finished(); }
  });
}

function drawFetched() {
  document.querySelectorAll(".plot[data-src]").forEach((el) => {
    started();
    fetch(el.dataset.src).then((r) => r.json()).then((fig) => plotlyReady.then(() => fig)).then((fig) => {
      if (fig.error) { el.innerHTML = '<p class="error">' + esc(fig.error) + "</p>"; return; }
      el.innerHTML = ""; drawFigure(el, fig);
    }).catch((e) => { el.innerHTML = '<p class="error">' + esc(e) + "</p>"; }).finally(finished);
  });
}

// ---------------------------------------------------------------- 3D view of a neuron
// A fixed camera distance clips long, thin neurons at the view's edges: move the camera back until
// the scene's box (with room for the tick labels) fits the view's height and width.
function fit3d(el) {
  const scene = el._fullLayout && el._fullLayout.scene;
  if (!scene || !scene.aspectratio) return;
  const ar = scene.aspectratio, dom = scene.domain;
  const width = el.clientWidth * (dom.x[1] - dom.x[0]), height = el.clientHeight * (dom.y[1] - dom.y[0]);
  // plotly's 3D camera has a 45° vertical field of view; the box spans ±aspectratio/2 around the centre
  const tanHalf = Math.tan(Math.PI / 8), room = 1.7;
  const distance = ar.z / 2 + room * Math.max(ar.y / 2 / tanHalf, ar.x / 2 / (tanHalf * width / height));
  Plotly.relayout(el, {"scene.camera.eye": {x: 0, y: 0, z: -distance}});
}

function draw3d(el) {
  started();
  fetch(el.dataset.src).then((r) => r.json()).then((d) => plotlyReady.then(() => d)).then((d) => {
    if (d.error) { el.innerHTML = '<p class="error">' + esc(d.error) + "</p>"; return; }
    const traces = [];
    (d.meshes || []).forEach((m, i) => traces.push({type: "mesh3d", name: m.roi, x: m.x, y: m.y, z: m.z, i: m.i, j: m.j, k: m.k,
      opacity: 0.12, color: ["#8c564b", "#9467bd", "#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#ff7f0e", "#2ca02c"][i % 8],
      hoverinfo: "name", showlegend: true}));
    if (d.skeleton) traces.push({type: "scatter3d", mode: "lines", name: "skeleton", x: d.skeleton.x, y: d.skeleton.y, z: d.skeleton.z,
      line: {color: "#333", width: 3}, hoverinfo: "skip"});
    const colors = {pre: "#d62728", post: "#1f77b4"};
    for (const kind of ["pre", "post"]) {
      const s = d.synapses[kind];
      if (s && s.x.length) traces.push({type: "scatter3d", mode: "markers", name: kind + " (" + s.x.length + ")", x: s.x, y: s.y, z: s.z,
        marker: {size: 2, color: colors[kind], opacity: 0.8}, hoverinfo: "skip"});
    }
    el.innerHTML = "";
    const axis = (t) => ({title: {text: t + " (" + d.units + ")"}, showbackground: false});
    // the legend gets its own column left of the scene, so it never covers the neuron
    Plotly.newPlot(el, traces, {margin: {l: 0, r: 0, t: 0, b: 0}, height: 420, legend: {x: 0, y: 1},
      scene: {domain: {x: [0.2, 1], y: [0, 1]}, aspectmode: "data", xaxis: axis("x"), yaxis: axis("y"), zaxis: axis("z"),
        camera: {up: {x: 0, y: -1, z: 0}, eye: {x: 0, y: 0, z: -2}}}},
      {responsive: true, displaylogo: false});
    fit3d(el);
    el.dataset.drawn = "1";
    el.dataset.traces = traces.map((t) => t.name).join("|");
    const notes = document.getElementById("view3d-notes");
    if (notes) notes.textContent = (d.notes || []).join("; ");
  }).catch((e) => { el.innerHTML = '<p class="error">' + esc(e) + "</p>"; }).finally(finished);
}

// ---------------------------------------------------------------- autocomplete over every text property
let suggestBox = null, suggestTimer = null;
function closeSuggest() { if (suggestBox) { suggestBox.remove(); suggestBox = null; } }

function attachSuggest(input) {
  input.addEventListener("input", () => {
    clearTimeout(suggestTimer);
    suggestTimer = setTimeout(() => runSuggest(input), 120);
  });
  input.addEventListener("keydown", (ev) => {
    if (!suggestBox) return;
    const items = [...suggestBox.querySelectorAll("li")];
    let i = items.findIndex((li) => li.classList.contains("sel"));
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      if (i >= 0) items[i].classList.remove("sel");
      i = ev.key === "ArrowDown" ? Math.min(i + 1, items.length - 1) : Math.max(i - 1, 0);
      if (items[i]) items[i].classList.add("sel");
    } else if (ev.key === "Enter" && i >= 0) {
      ev.preventDefault(); items[i].dispatchEvent(new MouseEvent("mousedown"));
    } else if (ev.key === "Escape") closeSuggest();
  });
  input.addEventListener("blur", () => setTimeout(closeSuggest, 150));
}

function runSuggest(input) {
  const q = input.value.trim();
  let prop = "";
  if (input.dataset.suggest === "prop") {
    const row = input.closest(".filter");
    prop = row ? row.querySelector("select[name=p]").value : "";
  }
  const url = "/explorer/api/suggest?dataset=" + encodeURIComponent(DATASET) + "&q=" + encodeURIComponent(q) + (prop ? "&prop=" + encodeURIComponent(prop) : "");
  fetch(url).then((r) => r.json()).then((d) => {
    closeSuggest();
    if (!d.results || !d.results.length || document.activeElement !== input) return;
    suggestBox = document.createElement("ul");
    suggestBox.className = "suggest";
    suggestBox.setAttribute("role", "listbox");
    for (const hit of d.results) {
      const li = document.createElement("li");
      li.innerHTML = '<span class="v">' + esc(hit.value) + '</span> <span class="p">' + esc(hit.prop) + '</span> <span class="n">' + hit.neurons + "</span>";
      li.dataset.prop = hit.prop; li.dataset.value = hit.value;
      li.addEventListener("mousedown", (ev) => { ev.preventDefault(); pick(input, hit); });
      suggestBox.appendChild(li);
    }
    const r = input.getBoundingClientRect();
    suggestBox.style.left = (r.left + window.scrollX) + "px";
    suggestBox.style.top = (r.bottom + window.scrollY) + "px";
    suggestBox.style.minWidth = r.width + "px";
    document.body.appendChild(suggestBox);
  }).catch(() => {});
}

function pick(input, hit) {
  closeSuggest();
  if (input.id === "quick") {  // header box: search that property for the value
    document.getElementById("quick-p").value = hit.prop;
    input.value = hit.value;
    input.form.submit();
    return;
  }
  if (input.dataset.suggest === "all" && input.form && input.form.action.indexOf("/search") < 0) {
    input.value = (hit.prop === "type" || hit.prop === "instance") ? hit.value : hit.prop + "=" + hit.value;
    return;
  }
  const row = input.closest(".filter");
  if (row) {
    const mode = row.querySelector("select[name=m]");
    if (mode.value === "list" && input.value.includes(",")) {
      const parts = input.value.split(",").slice(0, -1).map((s) => s.trim()).filter(Boolean);
      parts.push(hit.value); input.value = parts.join(", ");
    } else { input.value = hit.value; if (mode.value === "regex") mode.value = "exact"; }
  } else input.value = hit.value;
}

// ---------------------------------------------------------------- search form rows
function setupFilters() {
  const add = document.getElementById("add-filter");
  if (!add) return;
  const holder = document.getElementById("filters");
  add.addEventListener("click", () => {
    const node = document.getElementById("filter-row").content.firstElementChild.cloneNode(true);
    holder.appendChild(node);
    node.querySelectorAll("[data-suggest]").forEach(attachSuggest);
  });
  holder.addEventListener("click", (ev) => {
    if (ev.target.classList.contains("remove")) {
      const rows = holder.querySelectorAll(".filter");
      if (rows.length > 1) ev.target.closest(".filter").remove();
      else ev.target.closest(".filter").querySelector("input").value = "";
    }
  });
}

// ---------------------------------------------------------------- Cypher console
const HISTORY_KEY = "flatprint.cypher.history";
function setupCypher() {
  const area = document.getElementById("cypher-q");
  if (!area) return;
  const list = document.getElementById("cypher-history");
  const load = () => { try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch (e) { return []; } };
  const save = (h) => localStorage.setItem(HISTORY_KEY, JSON.stringify(h.slice(0, 50)));
  const show = () => {
    list.innerHTML = "";
    for (const q of load()) {
      const li = document.createElement("li");
      li.textContent = q.length > 120 ? q.slice(0, 117) + "…" : q; li.title = q;
      li.addEventListener("click", () => { area.value = q; area.focus(); });
      list.appendChild(li);
    }
  };
  const ran = new URLSearchParams(location.search).get("q");
  if (ran && ran.trim()) save([ran, ...load().filter((x) => x !== ran)]);
  show();
  document.getElementById("history-clear").addEventListener("click", () => { save([]); show(); });
  area.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); area.form.submit(); } });
  if (area.dataset.line) {  // put the cursor on the construct the error points at
    const lines = area.value.split("\n");
    let pos = 0;
    for (let i = 0; i < Number(area.dataset.line) - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    pos += Number(area.dataset.column) - 1;
    area.focus();
    area.setSelectionRange(pos, pos + Math.max(1, Number(area.dataset.length) || 1));
    area.classList.add("has-error");
  }
}

// ---------------------------------------------------------------- copy buttons
function setupCopy() {
  document.querySelectorAll("button.copy").forEach((b) => b.addEventListener("click", () => {
    const text = document.getElementById(b.dataset.copy).textContent;
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(() => { b.textContent = "Copied"; }).catch(() => {});
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  started();  // released once the plots below have been started
  drawFetched();  // data fetched from the server: ask early, draw when it arrives
  document.querySelectorAll(".plot3d[data-src]").forEach(draw3d);
  plotlyReady.then(() => { try { drawEmbedded(); } finally { finished(); } });
  document.querySelectorAll("[data-suggest]").forEach(attachSuggest);
  setupFilters();
  setupCypher();
  setupCopy();
});
