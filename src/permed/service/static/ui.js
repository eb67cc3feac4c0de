// permed browser UI: a thin client of /api/v1. All text from the server is put in the page with
// textContent (never innerHTML): file names and medication lists are typed by users.
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const LANGUAGE_NAMES = { en: "English", zh: "中文" };
// open: the uploaded file shown; name: which of its VCF samples (a file can hold several patients)
const state = { token: sessionStorage.getItem("permed-token"), role: null, open: null, name: null, poll: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, { as = "json", ...opts } = {}) {
  const headers = { ...(opts.headers || {}), Authorization: `Bearer ${state.token}` };
  const r = await fetch(API + path, { ...opts, headers });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail ?? detail; } catch (_) { /* not JSON */ }
    if (r.status === 401) signOut("Your token is no longer valid: sign in again.");
    throw new ApiError(r.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return as === "json" ? r.json() : as === "text" ? r.text() : as === "blob" ? r.blob() : r;
}

// --- sign in / out ---------------------------------------------------------------------------
async function signIn(token) {
  state.token = token;
  const me = await api("/me");
  const kb = await api("/kb");
  sessionStorage.setItem("permed-token", token);
  state.role = me.role;
  $("who").textContent = `${me.name} (${me.role})`;
  $("kb").textContent = `knowledge base ${kb.kb_version}`;
  $("report-lang").replaceChildren(...kb.report_languages.map((l) => el("option", { value: l }, LANGUAGE_NAMES[l] ?? l)));
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("upload").hidden = !["lab", "admin"].includes(me.role);
  await loadSamples();
}

function signOut(message = "") {
  sessionStorage.removeItem("permed-token");
  state.token = null;
  clearTimeout(state.poll);
  $("app").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("who").textContent = "";
  $("kb").textContent = "";
  $("signin-error").textContent = message;
  closeDetail();
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("signin-error").textContent = "";
  try {
    await signIn($("token").value.trim());
    $("token").value = "";
  } catch (e) {
    if (e.status !== 401) signOut(`Cannot sign in: ${e.message}`);
  }
});
$("signout").addEventListener("click", () => signOut());

// --- upload ------------------------------------------------------------------------------------
$("upload-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const form = new FormData();
  form.append("vcf", $("vcf").files[0]);
  if ($("outside").files[0]) form.append("outside_calls", $("outside").files[0]);
  if ($("meds").value.trim()) form.append("medications", $("meds").value.trim());
  const xhr = new XMLHttpRequest();  // fetch() has no upload progress events
  const bar = $("upload-progress");
  const status = $("upload-status");
  bar.hidden = false;
  bar.value = 0;
  status.textContent = "Uploading…";
  $("upload-button").disabled = true;
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) {
      bar.value = Math.round((100 * e.loaded) / e.total);
      status.textContent = `Uploading… ${bar.value}%`;
    }
  });
  xhr.addEventListener("loadend", () => {
    $("upload-button").disabled = false;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 201 || xhr.status === 200) {
      bar.value = 100;
      status.textContent = xhr.status === 201
        ? `Uploaded as sample ${body.id}; the job is ${body.job.state}.`
        : `Already uploaded as sample ${body.id}; the job is ${body.job.state}.`;
      $("upload-form").reset();
      loadSamples();
    } else if (xhr.status === 0) {
      status.textContent = "Upload failed: the server could not be reached.";
    } else {
      status.textContent = `Upload refused: ${body.detail ?? xhr.statusText}`;
      if (xhr.status === 401) signOut("Your token is no longer valid: sign in again.");
    }
  });
  xhr.open("POST", `${API}/samples`);
  xhr.setRequestHeader("Authorization", `Bearer ${state.token}`);
  xhr.send(form);
});

// --- sample list -------------------------------------------------------------------------------
function stateBadge(job) {
  const s = job ? job.state : "none";
  const badge = el("span", { class: `state state-${s}` }, s);
  if (job && job.error) badge.title = job.error;
  return badge;
}

async function loadSamples() {
  clearTimeout(state.poll);
  if (!state.token) return;
  const params = new URLSearchParams({ limit: "200" });
  if ($("search").value.trim()) params.set("q", $("search").value.trim());
  if ($("state-filter").value) params.set("state", $("state-filter").value);
  let rows;
  let total;
  try {
    const r = await api(`/samples?${params}`, { as: "response" });
    rows = await r.json();
    total = r.headers.get("X-Total-Count") ?? rows.length;
  } catch (e) {
    $("samples-count").textContent = `Cannot list samples: ${e.message}`;
    return;
  }
  const body = $("sample-rows");
  body.replaceChildren(...rows.map((x) => {
    // reports and advice are the clinician's (and admin's): a lab token follows its jobs only
    let open = "";
    if (["clinician", "admin"].includes(state.role)) {
      open = el("button", { type: "button" }, "Open report");
      open.disabled = !(x.job && x.job.state === "done");
      open.addEventListener("click", () => openSample(x));
    }
    const tr = el("tr", { "data-sample": x.id },
      el("td", {}, x.id), el("td", {}, x.filename), el("td", {}, x.medications ?? ""),
      el("td", {}, x.created_at.replace("T", " ").slice(0, 19)), el("td", {}, stateBadge(x.job)), el("td", {}, open));
    if (x.job && x.job.error) tr.append(el("td", { class: "error" }, x.job.error));
    return tr;
  }));
  $("samples-count").textContent = `${rows.length} of ${total} shown`;
  const busy = rows.some((x) => x.job && ["queued", "running"].includes(x.job.state));
  state.poll = setTimeout(loadSamples, busy ? 1500 : 10000);
}

let searchTimer = null;
$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(loadSamples, 250); });
$("state-filter").addEventListener("change", loadSamples);

// --- report and advice -------------------------------------------------------------------------
// query string naming the open VCF sample, for the report and advice routes
const named = (params = {}) => new URLSearchParams({ ...params, sample: state.name });

async function openSample(sample) {
  state.open = sample;
  state.name = null;
  $("detail").hidden = false;
  $("detail-title").textContent = `Sample ${sample.id}: ${sample.filename}`;
  $("detail-error").textContent = "";
  $("advice").replaceChildren();
  try {
    const { samples } = await api(`/samples/${sample.id}/reports`);
    if (!samples.length) throw new Error("This upload has no report.");
    const several = samples.length > 1;
    $("vcf-sample").replaceChildren(...samples.map((n) => el("option", { value: n }, n)));
    for (const id of ["vcf-sample", "vcf-sample-label"]) $(id).hidden = !several;
    await showPatient(samples[0]);
  } catch (e) {
    $("detail-error").textContent = e.message;
  }
  $("detail").scrollIntoView({ behavior: "smooth" });
}

async function showPatient(name) {
  state.name = name;
  $("advice").replaceChildren();
  const [, report] = await Promise.all([showReport(), api(`/samples/${state.open.id}/report?${named()}`)]);
  $("drug-list").replaceChildren(...Object.keys(report.drugs || {}).sort().map((d) => el("option", { value: d })));
}
$("vcf-sample").addEventListener("change", () => {
  if (state.open) showPatient($("vcf-sample").value).catch((e) => { $("detail-error").textContent = e.message; });
});

async function showReport() {
  const frame = freshFrame();
  const params = named({ format: "html", lang: $("report-lang").value || "en" });
  frame.srcdoc = await api(`/samples/${state.open.id}/report?${params}`, { as: "text" });
}
$("report-lang").addEventListener("change", () => {
  if (state.open) showReport().catch((e) => { $("detail-error").textContent = e.message; });
});

// a new frame per report: a reused sandboxed frame can keep showing an emptied document in Chromium
function freshFrame() {
  const old = $("report-frame");
  const frame = el("iframe", { id: "report-frame", title: old.title, sandbox: old.getAttribute("sandbox") });
  old.replaceWith(frame);
  return frame;
}

function closeDetail() {
  state.open = null;
  state.name = null;
  $("detail").hidden = true;
  freshFrame();
  $("advice").replaceChildren();
}
$("close-detail").addEventListener("click", closeDetail);

function recommendationItem(rec) {
  const li = el("li", {}, el("span", { class: "action" }, rec.action_label), ` (${rec.source}`,
    rec.strength && rec.strength !== "N/A" ? `, ${rec.strength.toLowerCase()}` : "", ")",
    rec.population ? ` — ${rec.population}` : "", ": ", rec.summary);
  const genotype = (rec.genotype || []).map((g) => `${g.gene} ${g.diplotype ?? ""} ${g.phenotype ?? ""}`.trim());
  if (genotype.length) li.append(el("div", { class: "muted" }, `Based on ${genotype.join("; ")}`));
  if (rec.url) {
    li.append(" ", el("a", { href: rec.url, target: "_blank", rel: "noopener noreferrer" }, "guideline"));
  }
  return li;
}

function renderAdvice(a) {
  const box = el("div", { class: `drug${a.actionable ? " actionable" : ""}`, "data-drug": a.drug },
    el("h3", {}, `${a.drug}: ${a.actionable ? "actionable — change of therapy advised" : "no change advised"}`));
  if (a.on_medication_list) box.append(el("p", { class: "muted" }, "On the patient's medication list."));
  for (const [source, s] of Object.entries(a.sources || {})) {
    if (!s.matched) {
      const why = (s.messages || []).join(" ") || (s.missing_genes?.length ? `missing: ${s.missing_genes.join(", ")}` : "");
      box.append(el("p", {}, `${source}: no matching recommendation${why ? ` (${why})` : ""}.`));
      continue;
    }
    box.append(el("ul", {}, ...(s.recommendations || []).map(recommendationItem)));
  }
  return box;
}

$("advice-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!state.open) return;
  const drug = $("drug").value.trim();
  $("detail-error").textContent = "";
  try {
    const a = await api(`/samples/${state.open.id}/advice?${named({ drug })}`);
    $("advice").replaceChildren(renderAdvice(a));
  } catch (e) {
    $("advice").replaceChildren(el("p", { class: "error" }, e.message));
  }
});

async function download(format) {
  if (!state.open) return;
  try {
    const params = named(format === "pdf" ? { format, lang: $("report-lang").value || "en" } : { format });
    const blob = await api(`/samples/${state.open.id}/report?${params}`, { as: "blob" });
    const file = `sample-${state.open.id}-${state.name.replace(/[^\w.-]+/g, "_")}.report.${format}`;
    const a = el("a", { href: URL.createObjectURL(blob), download: file });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    $("detail-error").textContent = e.message;
  }
}
$("dl-pdf").addEventListener("click", () => download("pdf"));
$("dl-json").addEventListener("click", () => download("json"));

if (state.token) signIn(state.token).catch(() => signOut(""));
