// Tiny DOM helpers (no framework): h("button", {class: "x", onclick}, "Start").

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function fmtNum(v, digits = 4) {
  if (v == null || Number.isNaN(v)) return "–";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return String(+v.toPrecision(digits));
}

export function fmtPct(v, digits = 2) {
  return v == null || Number.isNaN(v) ? "–" : (v * 100).toFixed(digits) + "%";
}

export function fmtInt(v) { return v == null ? "–" : Math.round(v).toLocaleString("en-US"); }

export function fmtDuration(s) {
  if (s == null || !Number.isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return (hh ? hh + ":" + String(mm).padStart(2, "0") : mm) + ":" + String(ss).padStart(2, "0");
}

export function shapeStr(shape) {
  if (!shape) return "?";
  return "(" + shape.join(", ") + (shape.length === 1 ? "," : "") + ")";
}

/** Size a canvas for crisp drawing at the device pixel ratio; returns the 2d context. */
export function fitCanvas(canvas, cssW, cssH) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(cssW * dpr)), hgt = Math.max(1, Math.round(cssH * dpr));
  if (canvas.width !== w || canvas.height !== hgt) {
    canvas.width = w; canvas.height = hgt;
    canvas.style.width = cssW + "px"; canvas.style.height = cssH + "px";
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

export function debounce(fn, ms) {
  let t = null;
  const d = (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
  d.cancel = () => clearTimeout(t);
  return d;
}
