// Entry point: sign-in gate and a tiny hash router (#/, #/jobs/<id>?<view state>,
// #/analytics?<filters> and #/traces/<trace id>).

import { whenSignedOut } from "./api.js";
import { clear, h } from "./dom.js";
import { parseHash } from "./route.js";
import {
  askOtherTabs, currentSession, endSession, sessionAllows, signIn, whenSessionChanges,
} from "./session.js";
import { showAnalytics } from "./views/analytics.js";
import { showJob } from "./views/job.js";
import { showJobs } from "./views/jobs.js";
import { showTrace } from "./views/trace.js";

const app = document.getElementById("app");
const nav = document.getElementById("nav");
let current = null; // the shown view: {path, close(), apply?(params)}

function closeView() {
  current?.close?.();
  current = null;
}

function signInForm(message) {
  closeView();
  clear(nav);
  const key = h("input", { id: "api-key", type: "password", autocomplete: "off",
    placeholder: "flk_…", required: true, "aria-label": "API key" });
  const error = h("p", { class: "error", role: "alert" }, message || "");
  const form = h("form", { id: "sign-in", class: "card narrow" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" },
      "Paste an API key (finetune-lab keys create). It is exchanged for a session token " +
      "shared with this site's other open tabs; the key itself is not stored."),
    key,
    h("button", { type: "submit" }, "Sign in"),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = key.value.trim();
    key.value = "";
    try {
      await signIn(value);
      route();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  clear(app).append(form);
  key.focus();
}

function renderNav(session) {
  clear(nav).append(
    h("a", { href: "#/" }, "Jobs"),
    sessionAllows("production") ? h("a", { href: "#/analytics", id: "nav-analytics" },
      "Analytics") : null,
    h("span", { class: "muted user" }, session.user),
    h("button", { class: "link", id: "sign-out", title: "Signs out every tab of this site",
      onclick: () => { endSession({ everywhere: true }); signInForm(); } }, "Sign out"),
  );
}

function route() {
  const session = currentSession();
  if (!session) {
    signInForm();
    return;
  }
  const { path, params } = parseHash();
  if (current && current.path === path && current.apply) {
    current.apply(params); // same view, new state (back/forward, an edited link)
    return;
  }
  renderNav(session);
  closeView();
  clear(app);
  const idAfter = (prefix) => {
    try {
      return path.startsWith(prefix) ? decodeURIComponent(path.slice(prefix.length)) || null
        : null;
    } catch {
      return null; // a malformed escape: show the jobs list rather than nothing
    }
  };
  const jobId = idAfter("/jobs/");
  const traceId = idAfter("/traces/");
  if (jobId !== null) current = showJob(app, jobId, params);
  else if (traceId !== null) current = showTrace(app, traceId);
  else if (path === "/analytics") current = showAnalytics(app, params);
  else current = showJobs(app);
  current.path = path;
}

whenSignedOut(() => signInForm("Your session ended: sign in again."));
whenSessionChanges((state) => {
  if (state === "signed-out") signInForm("Signed out (in another tab).");
  else if (!current) route(); // another tab signed in while this one showed the form
});
window.addEventListener("hashchange", route);

(async () => {
  if (!currentSession()) await askOtherTabs(); // a link opened in a new tab
  route();
})();
