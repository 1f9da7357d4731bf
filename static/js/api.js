// Commands go over HTTP (server/API.md). One small client; every call returns parsed JSON or
// throws an ApiError carrying the server's `detail` list ({loc, msg}).

const params = new URLSearchParams(location.search);
/** A token given in the page URL (?token=T) is kept for every request and socket. */
export const token = params.get("token");

export class ApiError extends Error {
  constructor(status, detail) {
    const msgs = Array.isArray(detail) ? detail.map((d) => d.msg).join("; ")
      : (typeof detail === "string" ? detail : `HTTP ${status}`);
    super(msgs || `HTTP ${status}`);
    this.status = status;
    this.detail = Array.isArray(detail) ? detail : [{ loc: [], msg: this.message }];
  }
}

export function withToken(url) {
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

export async function request(method, url, body, { signal, raw } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body: payload, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "cannot reach the server: " + err.message);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) throw new ApiError(res.status, data && data.detail !== undefined ? data.detail : data);
  return raw ? res : data;
}

export const api = {
  spec: () => request("GET", "/api/spec"),
  presets: () => request("GET", "/api/presets"),
  datasets: () => request("GET", "/api/datasets"),
  samples: (name, q) => request("GET", `/api/datasets/${encodeURIComponent(name)}/samples?${new URLSearchParams(q)}`),
  validate: (body, signal) => request("POST", "/api/models/validate", body, { signal }),
  runs: () => request("GET", "/api/runs"),
  run: (id) => request("GET", `/api/runs/${id}`),
  createRun: (body) => request("POST", "/api/runs", body),
  deleteRun: (id) => request("DELETE", `/api/runs/${id}`),
  command: (id, what) => request("POST", `/api/runs/${id}/${what}`, what === "step" ? { steps: 1 } : undefined),
  checkpoints: (id) => request("GET", `/api/runs/${id}/checkpoints`),
  fork: (id, body) => request("POST", `/api/runs/${id}/fork`, body),
  notes: (id, body) => request("POST", `/api/runs/${id}/notes`, body),
  tempo: (id, stepsPerSecond) => request("POST", `/api/runs/${id}/tempo`, { steps_per_second: stepsPerSecond }),
  patch: (id, body) => request("PATCH", `/api/runs/${id}`, body),
  health: () => request("GET", "/api/health"),
  sweeps: () => request("GET", "/api/sweeps"),
  sweep: (id) => request("GET", `/api/sweeps/${id}`),
  createSweep: (spec) => request("POST", "/api/sweeps", spec),
  sweepCommand: (id, what, body) => request("POST", `/api/sweeps/${id}/${what}`, body),
  deleteSweep: (id) => request("DELETE", `/api/sweeps/${id}`),
  sweepPresets: () => request("GET", "/api/sweep-presets"),
  predict: (id, image) => request("POST", `/api/runs/${id}/predict`, { image }),
  inspect: (id, body) => request("POST", `/api/runs/${id}/inspect`, body),
  snapshots: (id, step) => request("GET", `/api/runs/${id}/snapshots${step == null ? "" : `?step=${step}`}`),
  gradcheck: (body) => request("POST", "/api/gradcheck", body),
  weightsUrl: (id) => withToken(`/api/runs/${id}/weights`),
};

export function wsUrl(path) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return withToken(`${proto}//${location.host}${path}`);
}
