"use strict";
(() => {
const D = JSON.parse(document.getElementById("mgc-data").textContent);
const N = D.x.length, canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
const tip = document.getElementById("tip"), info = document.getElementById("info");
const hidden = new Set();
let view = {cx: 0.5, cy: 0.5, zoom: 1}, W = 0, H = 0, S = 1, hover = -1, selected = -1;
let drawn = 0;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
const sx = (i) => (D.x[i] - view.cx) * view.zoom * S + W / 2;
const sy = (i) => (view.cy - D.y[i]) * view.zoom * S + H / 2;
const radius = () => {
  const base = 3 * Math.sqrt(view.zoom) * Math.min(1, 60 / Math.sqrt(N + 1));
  return Math.max(2, Math.min(6, base));
};

function resize() {
  const r = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  W = r.width; H = r.height; S = Math.min(W, H) * 0.92;
  canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  draw();
}

function draw() {
  ctx.clearRect(0, 0, W, H);
  const r = radius();
  drawn = 0;
  for (let g = D.genres.length - 1; g >= 0; g--) {
    if (hidden.has(g)) continue;
    ctx.fillStyle = D.colors[g];
    ctx.beginPath();
    for (let i = 0; i < N; i++) {
      if (D.g[i] !== g) continue;
      const x = sx(i), y = sy(i);
      if (x < -r || y < -r || x > W + r || y > H + r) continue;
      ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI);
      drawn++;
    }
    ctx.fill();
  }
  for (const [i, color] of [[hover, "#000"], [selected, "#d00"]]) {
    if (i < 0 || hidden.has(D.g[i])) continue;
    ctx.strokeStyle = color; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(sx(i), sy(i), r + 3, 0, 2 * Math.PI); ctx.stroke();
  }
  canvas.dataset.drawn = String(drawn);
}

function nearest(px, py) {
  const r = radius() + 4;
  let best = -1, bd = r * r;
  for (let i = 0; i < N; i++) {
    if (hidden.has(D.g[i])) continue;
    const dx = sx(i) - px, dy = sy(i) - py, d = dx * dx + dy * dy;
    if (d <= bd) { bd = d; best = i; }
  }
  return best;
}

function describe(box, i) {
  const tags = el("div", D.tags[i] || "no genre");
  box.replaceChildren(el("b", D.title[i]), el("span", D.artist[i]), tags);
}

function copy(text) {
  const fallback = () => {
    const t = el("textarea"); t.value = text; document.body.append(t); t.select();
    try { document.execCommand("copy"); } catch (e) { /* selection stays for Ctrl-C */ }
    t.remove();
  };
  if (!navigator.clipboard || !window.isSecureContext) return fallback();
  navigator.clipboard.writeText(text).catch(fallback);
}

function select(i) {
  selected = i;
  if (i < 0) { info.replaceChildren(el("p", "No track selected.", "help")); draw(); return; }
  describe(info, i);
  info.append(el("code", D.path[i]), el("p", "Path copied to the clipboard.", "help"));
  copy(D.path[i]);
  draw();
}

function legend() {
  const ul = document.getElementById("legend"), counts = D.genres.map(() => 0);
  for (const g of D.g) counts[g]++;
  ul.replaceChildren(...D.genres.map((name, g) => {
    const li = el("li"), sw = el("span", undefined, "sw");
    sw.style.background = D.colors[g];
    li.append(sw, el("span", name), el("span", String(counts[g]), "n"));
    li.dataset.genre = String(g);
    li.setAttribute("role", "button");
    li.setAttribute("aria-pressed", "true");
    li.addEventListener("click", () => toggle(g));
    return li;
  }));
}

function toggle(g, show) {
  const on = show === undefined ? hidden.has(g) : show;
  if (on) hidden.delete(g); else hidden.add(g);
  const li = document.querySelector(`#legend li[data-genre="${g}"]`);
  li.classList.toggle("off", !on);
  li.setAttribute("aria-pressed", String(on));
  draw();
}

let drag = null;
canvas.addEventListener("mousedown", (e) => { drag = {x: e.offsetX, y: e.offsetY, moved: false}; });
window.addEventListener("mouseup", (e) => {
  if (drag && !drag.moved && e.target === canvas) select(nearest(e.offsetX, e.offsetY));
  drag = null;
});
canvas.addEventListener("mousemove", (e) => {
  if (drag) {
    const dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    if (drag.moved) {
      view.cx -= dx / (view.zoom * S); view.cy += dy / (view.zoom * S);
      drag.x = e.offsetX; drag.y = e.offsetY; tip.hidden = true; draw(); return;
    }
  }
  const i = nearest(e.offsetX, e.offsetY);
  if (i !== hover) { hover = i; draw(); }
  if (i < 0) { tip.hidden = true; return; }
  describe(tip, i);
  tip.hidden = false;
  tip.style.left = Math.min(e.offsetX + 14, W - tip.offsetWidth - 4) + "px";
  tip.style.top = Math.min(e.offsetY + 14, H - tip.offsetHeight - 4) + "px";
});
canvas.addEventListener("mouseleave", () => { tip.hidden = true; hover = -1; draw(); });
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const f = Math.exp(-e.deltaY * 0.0015), z = Math.min(500, Math.max(0.5, view.zoom * f));
  const ox = e.offsetX - W / 2, oy = e.offsetY - H / 2;
  const wx = view.cx + ox / (view.zoom * S), wy = view.cy - oy / (view.zoom * S);
  view = {cx: wx - ox / (z * S), cy: wy + oy / (z * S), zoom: z};
  draw();
}, {passive: false});
const onClick = (id, fn) => document.getElementById(id).addEventListener("click", fn);
onClick("reset", () => { view = {cx: 0.5, cy: 0.5, zoom: 1}; draw(); });
onClick("all", () => D.genres.forEach((_, g) => toggle(g, true)));
onClick("none", () => D.genres.forEach((_, g) => toggle(g, false)));
window.addEventListener("resize", resize);
legend();
resize();
// for scripts and tests (tools/checks/map_browser.py): counts and canvas coordinates
window.mgcMap = {points: N, drawn: () => drawn, screen: (i) => [sx(i), sy(i)], toggle, select};
})();
