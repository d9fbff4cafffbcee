// report.html behaviour: sortable tables, the per-image table and the per-image comparison view.
// Plain browser JavaScript, no library, no network: the page works opened from disk.
"use strict";

const DATA = JSON.parse(document.getElementById("report-data").textContent);

// ---- sortable tables: click a header; numbers sort as numbers, n/a last -------------------------
function cellKey(cell) {
  const raw = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
  const num = parseFloat(raw);
  return raw === "" || raw === "n/a" || Number.isNaN(num) ? { num: null, text: raw } : { num, text: raw };
}

function sortTable(table, col, dir) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellKey(a.cells[col]);
    const y = cellKey(b.cells[col]);
    if (x.num === null && y.num === null) return dir * x.text.localeCompare(y.text);
    if (x.num === null) return 1;
    if (y.num === null) return -1;
    return dir * (x.num - y.num);
  });
  rows.forEach((r) => body.appendChild(r));
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    th.setAttribute("aria-sort", i === col ? (dir > 0 ? "ascending" : "descending") : "none");
  });
}

function makeSortable(table) {
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    th.setAttribute("aria-sort", "none");
    th.title = (th.title ? th.title + " · " : "") + "click to sort";
    th.addEventListener("click", () => {
      const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      sortTable(table, i, dir);
    });
  });
}

// ---- per-image table ---------------------------------------------------------------------------
function fmt(v, metric) {
  if (v === null || v === undefined) return "n/a";
  const spec = DATA.metrics[metric];
  return Number(v).toFixed(spec ? spec.decimals : 4);
}

function buildPerImage() {
  const holder = document.getElementById("per-image");
  if (!holder) return;
  const dsSelect = document.getElementById("pi-dataset");
  const mSelect = document.getElementById("pi-metric");
  Object.keys(DATA.per_image).forEach((ds) => dsSelect.add(new Option(ds, ds)));
  const render = () => {
    const ds = dsSelect.value;
    const block = DATA.per_image[ds];
    if (!block) return;
    // the first metric at first; afterwards the reader's choice ("" = all metrics) where this set has it
    const current = mSelect.options.length ? mSelect.value : block.metrics[0] || "";
    mSelect.innerHTML = "";
    mSelect.add(new Option("all metrics", ""));
    block.metrics.forEach((m) => mSelect.add(new Option(m, m)));
    mSelect.value = current === "" || block.metrics.includes(current) ? current : block.metrics[0] || "";
    const show = block.columns.map((c, i) => [c, i]).filter(([c]) => !mSelect.value || c[1] === mSelect.value);
    const table = document.createElement("table");
    table.className = "sortable per-image";
    const head = table.createTHead().insertRow();
    head.insertCell().outerHTML = "<th>image</th>";
    show.forEach(([c]) => {
      const th = document.createElement("th");
      const spec = DATA.metrics[c[1]] || {};
      th.textContent = `${block.runs[c[0]]} · ${c[1]} ${spec.arrow || ""}`;
      head.appendChild(th);
    });
    const body = table.createTBody();
    block.rows.forEach((r) => {
      const tr = body.insertRow();
      const a = document.createElement("a");
      a.href = `#view/${encodeURIComponent(ds)}/${encodeURIComponent(r[0])}`;
      a.textContent = r[0];
      const nameCell = tr.insertCell();
      nameCell.appendChild(a);
      const note = (block.notes || {})[r[0]];
      if (note) {
        nameCell.title = note;
        nameCell.classList.add("noted");
      }
      show.forEach(([c, i]) => {
        const td = tr.insertCell();
        td.textContent = fmt(r[i + 1], c[1]);
        if (r[i + 1] !== null) td.dataset.v = r[i + 1];
      });
    });
    holder.innerHTML = "";
    holder.appendChild(table);
    makeSortable(table);
  };
  dsSelect.addEventListener("change", render);
  mSelect.addEventListener("change", render);
  render();
}

// ---- comparison view ---------------------------------------------------------------------------
const view = { ds: null, name: null };

function sourceLabel(ds, key) {
  return DATA.labels[key] || DATA.views.datasets[ds].runs[key] || key;
}

function setZoom(z) {
  document.querySelectorAll(".zoomable").forEach((el) => {
    const size = Number(el.dataset.size);
    el.style.width = `${size * z}px`;
    el.style.height = `${size * z}px`;
  });
  document.getElementById("zoom-value").textContent = `${z}x`;
}

function setSplit(p) {
  document.getElementById("cmp-top").style.clipPath = `inset(0 0 0 ${p}%)`;
  document.getElementById("cmp-bar").style.left = `${p}%`;
}

function showView(ds, name) {
  const entry = DATA.views.datasets[ds] && DATA.views.datasets[ds].images[name];
  const section = document.getElementById("view");
  if (!entry) {
    section.hidden = false;
    document.getElementById("view-title").textContent = `${ds} / ${name}: no images for this view`;
    document.getElementById("view-note").hidden = true;
    return;
  }
  view.ds = ds;
  view.name = name;
  section.hidden = false;
  document.getElementById("view-title").textContent = `${ds} / ${name}`;
  const note = document.getElementById("view-note");
  note.textContent = entry.note || "";
  note.hidden = !entry.note;
  const keys = Object.keys(entry.files);
  const left = document.getElementById("cmp-left");
  const right = document.getElementById("cmp-right");
  for (const sel of [left, right]) {
    const old = sel.value;
    sel.innerHTML = "";
    keys.forEach((k) => sel.add(new Option(sourceLabel(ds, k), k)));
    if (keys.includes(old)) sel.value = old;
  }
  if (!keys.includes(left.dataset.chosen)) left.value = keys[0];
  if (!keys.includes(right.dataset.chosen)) right.value = keys.includes("gt") ? "gt" : keys[keys.length - 1];
  const size = entry.crop[2];
  document.querySelectorAll(".zoomable").forEach((el) => { el.dataset.size = size; });
  const update = () => {
    document.getElementById("cmp-bottom").src = entry.files[left.value];
    document.getElementById("cmp-top").src = entry.files[right.value];
    document.getElementById("cmp-left-label").textContent = sourceLabel(ds, left.value);
    document.getElementById("cmp-right-label").textContent = sourceLabel(ds, right.value);
  };
  left.onchange = () => { left.dataset.chosen = left.value; update(); };
  right.onchange = () => { right.dataset.chosen = right.value; update(); };
  update();
  // the whole image with the crop box
  const thumb = document.getElementById("view-thumb");
  thumb.src = entry.thumb;
  const box = document.getElementById("view-box");
  const [h, w] = entry.size;
  box.style.top = `${(100 * entry.crop[0]) / h}%`;
  box.style.left = `${(100 * entry.crop[1]) / w}%`;
  box.style.width = `${(100 * size) / w}%`;
  box.style.height = `${(100 * size) / h}%`;
  // every source side by side, same zoom
  const strip = document.getElementById("view-strip");
  strip.innerHTML = "";
  keys.forEach((k) => {
    const fig = document.createElement("figure");
    const holder = document.createElement("div");
    holder.className = "zoomable";
    holder.dataset.size = size;
    const img = document.createElement("img");
    img.src = entry.files[k];
    img.alt = sourceLabel(ds, k);
    holder.appendChild(img);
    const cap = document.createElement("figcaption");
    cap.textContent = sourceLabel(ds, k);
    fig.append(holder, cap);
    strip.appendChild(fig);
  });
  setZoom(Number(document.getElementById("zoom").value));
  setSplit(Number(document.getElementById("split").value));
  // this image's scores
  const block = DATA.per_image[ds];
  const row = block && block.rows.find((r) => r[0] === name);
  const scores = document.getElementById("view-scores");
  scores.innerHTML = "";
  if (row) {
    const table = document.createElement("table");
    table.className = "sortable";
    const head = table.createTHead().insertRow();
    head.insertCell().outerHTML = "<th>method</th>";
    block.metrics.forEach((m) => {
      const th = document.createElement("th");
      th.textContent = `${m} ${(DATA.metrics[m] || {}).arrow || ""}`;
      head.appendChild(th);
    });
    const body = table.createTBody();
    Object.entries(block.runs).forEach(([key, label]) => {
      const tr = body.insertRow();
      tr.insertCell().textContent = label;
      block.metrics.forEach((m) => {
        const i = block.columns.findIndex((c) => c[0] === key && c[1] === m);
        const td = tr.insertCell();
        const v = i < 0 ? null : row[i + 1];
        td.textContent = fmt(v, m);
        if (v !== null) td.dataset.v = v;
      });
    });
    scores.appendChild(table);
    makeSortable(table);
  }
  // previous / next image of this data set
  const names = Object.keys(DATA.views.datasets[ds].images);
  const i = names.indexOf(name);
  const link = (id, j) => {
    const a = document.getElementById(id);
    a.hidden = j < 0 || j >= names.length;
    if (!a.hidden) a.href = `#view/${encodeURIComponent(ds)}/${encodeURIComponent(names[j])}`;
  };
  link("view-prev", i - 1);
  link("view-next", i + 1);
  section.scrollIntoView();
}

function route() {
  const m = window.location.hash.match(/^#view\/([^/]+)\/(.+)$/);
  if (m) showView(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
  else document.getElementById("view").hidden = true;
}

// ---- paired comparisons: show one metric or all -------------------------------------------------
function filterPairs() {
  const select = document.getElementById("pair-metric");
  if (!select) return;
  select.addEventListener("change", () => {
    document.querySelectorAll("table.pairwise tbody tr").forEach((tr) => {
      tr.hidden = select.value !== "" && tr.dataset.metric !== select.value;
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  filterPairs();
  buildPerImage();
  document.getElementById("zoom").addEventListener("input", (e) => setZoom(Number(e.target.value)));
  document.getElementById("split").addEventListener("input", (e) => setSplit(Number(e.target.value)));
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "1";
});
