// The newest evaluation: a confusion matrix (rows: true class, columns: predicted; cells shaded
// by the share of their row) and a gallery of misclassified test images.

import { h, clear, fmtPct } from "./dom.js";

export class ConfusionMatrix {
  constructor(root) {
    this.root = root;
    this.caption = h("p", { class: "muted small" }, "No evaluation yet.");
    this.wrap = h("div", { class: "table-wrap" });
    clear(root).append(this.caption, this.wrap);
    this.drawn = null;
  }
  reset() { this.drawn = null; clear(this.wrap); this.caption.textContent = "No evaluation yet."; }
  update(state) {
    const ev = state && state.lastEval;
    if (!ev) { if (this.drawn !== null) this.reset(); return; }
    if (ev === this.drawn) return;
    this.drawn = ev;
    const names = state.classNames || ev.confusion.map((_, i) => String(i));
    const short = names.map((n) => (n.length > 6 ? n.slice(0, 5) + "…" : n));
    const head = h("tr", {}, h("th", { scope: "col", class: "corner" }, "true \\ pred"),
      ...short.map((n, j) => h("th", { scope: "col", title: names[j] }, n)));
    const rows = ev.confusion.map((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      return h("tr", {}, h("th", { scope: "row", title: names[i] }, short[i]), ...row.map((v, j) => {
        const share = v / total;
        const diag = i === j;
        // blue for correct, orange for confusions, blended with white by the row share; the
        // text takes whichever of white or near-black contrasts more with the cell
        const [bg, fg] = !v ? ["transparent", "inherit"]
          : diag ? cellColours([0, 114, 178], 0.08 + 0.92 * share) : cellColours([213, 94, 0], Math.min(1, 0.12 + 3 * share));
        return h("td", { class: "num", style: { background: bg, color: fg }, title: `true ${names[i]}, predicted ${names[j]}: ${v} (${fmtPct(share, 1)} of ${names[i]})` }, String(v));
      }));
    });
    clear(this.wrap).append(h("table", { class: "confusion" },
      h("caption", { class: "sr-only" }, "Confusion matrix: rows are true classes, columns predicted classes"),
      h("thead", {}, head), h("tbody", {}, ...rows)));
    this.caption.textContent = `Test set at step ${ev.step.toLocaleString("en-US")}: accuracy ${fmtPct(ev.test_accuracy)}, loss ${ev.test_loss == null ? "–" : ev.test_loss.toFixed(4)}.`;
  }
}

export class MisclassifiedGallery {
  constructor(root, samples) {
    this.root = root;
    this.samples = samples;
    this.caption = h("p", { class: "muted small" }, "No evaluation yet.");
    this.grid = h("ul", { class: "gallery", "aria-label": "Misclassified test images" });
    clear(root).append(this.caption, this.grid);
    this.drawn = null;
  }
  reset() { this.drawn = null; clear(this.grid); this.caption.textContent = "No evaluation yet."; }
  update(state) {
    const ev = state && state.lastEval;
    if (!ev) { if (this.drawn !== null) this.reset(); return; }
    if (ev === this.drawn) return;
    this.drawn = ev;
    const names = state.classNames || [];
    const ds = state.config ? state.config.dataset.name : "mnist";
    const total = ev.confusion.reduce((a, row, i) => a + row.reduce((b, v, j) => b + (i === j ? 0 : v), 0), 0);
    this.caption.textContent = ev.misclassified.length
      ? `${total.toLocaleString("en-US")} test images wrong at step ${ev.step.toLocaleString("en-US")}; the first ${ev.misclassified.length} (true → predicted):`
      : `No test image is misclassified at step ${ev.step.toLocaleString("en-US")}.`;
    clear(this.grid);
    for (const m of ev.misclassified) {
      const c = h("canvas", { class: "thumb", width: 28, height: 28 });
      const t = names[m.label] ?? m.label, p = names[m.predicted] ?? m.predicted;
      this.grid.append(h("li", { title: `test image #${m.index}: true ${t}, predicted ${p}` },
        c, h("span", { class: "small" }, `${short(t)} → ${short(p)}`)));
      this.samples.draw(ds, m.index, c);
    }
  }
}

function luminance([r, g, b]) {
  const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}

/** [background, text colour] for a colour blended with white at `alpha`. */
export function cellColours(rgb, alpha) {
  const mix = rgb.map((c) => Math.round(255 + (c - 255) * alpha));
  const L = luminance(mix);
  const onWhite = 1.05 / (L + 0.05), onDark = (L + 0.05) / (luminance([28, 36, 48]) + 0.05);
  return [`rgb(${mix.join(",")})`, onWhite > onDark ? "#fff" : "#1c2430"];
}

function short(n) { n = String(n); return n.length > 7 ? n.slice(0, 6) + "…" : n; }
