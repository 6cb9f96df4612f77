// The JSON API with the session token; a 401 ends the session and shows the sign-in form.

import { currentSession, endSession } from "./session.js";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onSignedOut = () => {};
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

export function authHeaders() {
  const session = currentSession();
  if (!session) {
    onSignedOut();
    throw new ApiError(401, "signed out");
  }
  return { Authorization: `Bearer ${session.token}` };
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function request(path, params, { signal } = {}) {
  const response = await fetch(path + query(params), { headers: authHeaders(), signal });
  if (response.status === 401) {
    endSession();
    onSignedOut();
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, body?.error?.message || `HTTP ${response.status}`);
  }
  return body;
}

const enc = encodeURIComponent;
const PRED = "/api/training/predictions";

export const api = {
  jobs: (params) => request("/api/training/jobs", params),
  job: (id) => request(`/api/training/jobs/${enc(id)}`),
  page: (id, params, options) => request(`${PRED}/${enc(id)}`, params, options),
  epochs: (id) => request(`${PRED}/${enc(id)}/epochs`),
  trends: (id, groupBy = "epoch") => request(`${PRED}/${enc(id)}/trends`, { group_by: groupBy }),
  sample: (id, index) => request(`${PRED}/${enc(id)}/samples/${enc(index)}`),
  compare: (id, from, to, toJob = null) =>
    request(`${PRED}/${enc(id)}/compare`, { from_epoch: from, to_epoch: to, to_job: toJob }),
  matrix: (id, metric, limit, offset) =>
    request(`${PRED}/${enc(id)}/matrix`, { metric, limit, offset }),
  streamPath: (id) => `${PRED}/${enc(id)}/stream`,
  usage: (params) => request("/api/analytics/data", params),
  traces: (params) => request("/api/analytics/traces", params),
  jobServing: (id) => request(`/api/analytics/jobs/${enc(id)}`),
  models: () => request("/api/models"),
  exportPath: (id, format) => `${PRED}/${enc(id)}/export${query({ format })}`,
};

// Downloads need the Authorization header, so a plain link cannot do: fetch, then save the blob.
export async function download(path, filename) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(response.status, body?.error?.message || `HTTP ${response.status}`);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
