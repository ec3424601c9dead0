// The dashboard's entry point: picks the view for the address, follows in-page links
// without reloading, and asks for an API key when the server wants one.

import { UNAUTHORIZED, signIn, signOut, signedIn, forgetSignIn, Problem } from "./api.js";
import { listView } from "./list.js";
import { jobView } from "./job.js";
import { h, problemBox, relative } from "./ui.js";

const main = document.getElementById("main");
const signOutButton = document.getElementById("sign-out");
let view = null;
let viewPath = null;

function route() {
  const path = location.pathname;
  if (view && path === viewPath && view.update) {
    view.update();
    return;
  }
  if (view) view.close();
  view = null;
  viewPath = path;
  document.title = "Port Authority";
  const job = path.match(/^\/jobs\/([^/]+)$/);
  if (path === "/") view = listView(main, navigate);
  else if (job) view = jobView(main, decodeURIComponent(job[1]), navigate);
  else main.replaceChildren(problemBox(new Problem({ status: 404, title: "Not Found", detail: `The dashboard has no page at ${path}.` })));
}

export function navigate(href) {
  history.pushState(null, "", href);
  route();
}

// Links marked data-nav stay in the page (a modified click opens a tab as usual).
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  const pathChanges = new URL(a.href).pathname !== location.pathname;
  navigate(a.getAttribute("href"));
  if (pathChanges) main.focus({ preventScroll: false });
});
window.addEventListener("popstate", route);

// Relative times ("2 minutes ago") age while the page is open.
setInterval(() => {
  for (const t of document.querySelectorAll("time[datetime]")) t.textContent = relative(t.getAttribute("datetime"));
}, 30000);

// A 401 from any call: the server wants a key. The form takes it once; the server keeps
// it in an HttpOnly cookie and the view loads again.
let asking = false;
document.addEventListener(UNAUTHORIZED, (e) => {
  if (asking) return;
  asking = true;
  forgetSignIn();
  showSignOut();
  if (view) view.close();
  view = null;
  viewPath = null;
  main.replaceChildren(signInForm(e.detail));
  main.querySelector("input").focus();
});

function signInForm(problem) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true, spellcheck: "false", placeholder: "pa_…" });
  const msg = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "sign-in card", "aria-labelledby": "h-sign-in" },
    h("h1", { id: "h-sign-in" }, "Sign in"),
    h("p", {}, problem && problem.detail ? problem.detail : "This server needs an API key."),
    h("label", { for: "token" }, "API key"),
    input,
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Sign in")),
    msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await signIn(input.value.trim());
    } catch (err) {
      // A refused key is a 401 too; `asking` keeps this form up.
      msg.replaceChildren(problemBox(err));
      input.select();
      return;
    }
    asking = false;
    showSignOut();
    route();
  });
  return form;
}

function showSignOut() {
  signOutButton.hidden = !signedIn();
}

signOutButton.addEventListener("click", async () => {
  try {
    await signOut();
  } catch {
    // Signed out here whatever the server said; the next call shows what it wants.
  }
  showSignOut();
  viewPath = null;
  route();
});

showSignOut();
route();
