// The page's remembered settings (localStorage): chart options and the unsaved design. Storage
// may be unavailable (a private window, a full quota): then nothing is remembered, nothing fails.

const KEY = "backprop-lab.prefs.v1";

/** Every remembered setting, {} when there are none. */
export function loadPrefs() {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || "{}");
    return v && typeof v === "object" && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

/** Remember `value` under `key` (undefined forgets it). */
export function savePref(key, value) {
  try {
    const p = loadPrefs();
    if (value === undefined) delete p[key]; else p[key] = value;
    localStorage.setItem(KEY, JSON.stringify(p));
  } catch { /* not remembered */ }
}
