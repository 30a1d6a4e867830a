// taskledger task monitor: plain JS over the JSON API and the SSE stream (no build step).
// The page shows one page of tasks at a time (50 rows), never all of them, so it stays
// fast with 10,000 tasks; live events only touch the rows and sessions on screen.
"use strict";

const PAGE = 50;
const FINAL = ["completed", "failed", "cancelled", "skipped"];
const UNFINISHED = ["pending_approval", "blocked", "queued", "running", "retry_wait"];
const CHIPS = ["queued", "running", "pending_approval", "completed", "failed", "cancelled"];
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// For the browser tests: when each state change arrived (SSE latency is measured from it).
window.__tl = { received: [], ready: false };

const state = {
  filters: {},
  cursors: [null], // cursor of each page seen, for "newer"
  page: 0,
  nextCursor: null,
  detailId: null,
  goalId: null,
  sessionCursor: null,
};

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = data && data.detail !== undefined ? JSON.stringify(data.detail) : "";
    throw new Error(`${(data && data.error) || response.status}: ${detail}`);
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function toast(message, isError = false) {
  const box = $("#toast");
  box.textContent = message;
  box.className = "toast" + (isError ? " error" : "");
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.hidden = true), 3500);
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const short = (id) => String(id).slice(0, 8);
const json = (value) => JSON.stringify(value, null, 1);
const stateTag = (s) => el("span", { class: `state ${s}` }, s.replace("_", " "));

// -- sessions -------------------------------------------------------------------------------

function progressOf(counts) {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const done = FINAL.reduce((a, s) => a + (counts[s] || 0), 0);
  return { done, total };
}

function sessionCard(id) {
  let card = $(`#sessions .session[data-session="${CSS.escape(id)}"]`);
  if (card) return card;
  $("#sessions .empty")?.remove();
  card = el(
    "section",
    { class: "session", dataset: { session: id } },
    el("header", {}, el("h3", {}, id), el("span", { class: "progress-text" }, "Processing 0/0")),
    el("div", { class: "bar" }, el("i", { style: "width:0%" })),
    el(
      "div",
      { class: "chips" },
      CHIPS.map((k) =>
        el("span", { class: `chip ${k}`, dataset: { count: k } }, k.replace("_", " ") + " ", el("b", {}, "0")),
      ),
    ),
    el(
      "div",
      { class: "actions" },
      el("button", { class: "cancel-all danger" }, "Cancel all"),
      el("button", { class: "filter-session" }, "Show tasks"),
    ),
  );
  $("#sessions").prepend(card);
  return card;
}

function setCounts(id, counts) {
  const card = sessionCard(id);
  card._counts = counts;
  for (const chip of $$(".chip", card)) $("b", chip).textContent = counts[chip.dataset.count] || 0;
  const { done, total } = progressOf(counts);
  $(".progress-text", card).textContent = `Processing ${done}/${total}`;
  $(".bar i", card).style.width = total ? `${Math.round((100 * done) / total)}%` : "0%";
}

// A session's budget and what it has spent (jobs/budgets.py), under its progress bar.
function setBudget(id, budget) {
  const card = sessionCard(id);
  let line = $(".budget", card);
  if (!budget) return line && line.remove();
  if (!line) {
    line = el("p", { class: "budget" });
    $(".bar", card).after(line);
  }
  const parts = [];
  if (budget.max_tokens != null) parts.push(`tokens ${budget.tokens_used}/${budget.max_tokens}`);
  if (budget.max_cost != null) parts.push(`cost ${budget.cost_used.toFixed(2)}/${budget.max_cost}`);
  if (budget.max_tasks != null) parts.push(`tasks ${budget.tasks_used}/${budget.max_tasks}`);
  line.textContent = `Budget: ${parts.join(", ")}${budget.exceeded ? " (exceeded)" : ""}`;
  line.classList.toggle("over", Boolean(budget.exceeded));
}

async function loadSessions(more = false) {
  const query = new URLSearchParams({ limit: 50 });
  if (more && state.sessionCursor) query.set("cursor", state.sessionCursor);
  const page = await api(`/api/sessions?${query}`);
  if (!more) $("#sessions").replaceChildren();
  for (const s of page.items) {
    setCounts(s.id, s.counts);
    setBudget(s.id, s.budget);
  }
  if (!page.items.length && !more) $("#sessions").append(el("p", { class: "empty" }, "No sessions yet."));
  state.sessionCursor = page.next_cursor;
  $("#more-sessions").hidden = !page.next_cursor;
}

function confirmDialog(text) {
  return new Promise((resolve) => {
    const dialog = $("#confirm");
    $("#confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function cancelAll(id) {
  // Fresh numbers: the confirmation states exactly how many tasks it will cancel.
  const session = await api(`/api/sessions/${encodeURIComponent(id)}`);
  setCounts(id, session.counts);
  if (!session.unfinished) return toast(`Session ${id} has nothing left to cancel.`);
  const n = session.unfinished.toLocaleString("en-US");
  if (!(await confirmDialog(`Cancel ${n} unfinished tasks in session ${id}?`))) return;
  const result = await api(`/api/sessions/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  toast(`Cancelled ${result.cancelled.toLocaleString("en-US")} tasks in ${id}.`);
  refreshSoon();
}

// -- task list ------------------------------------------------------------------------------

function taskRow(t) {
  return el(
    "tr",
    { dataset: { id: t.id, session: t.session_id || "" } },
    el("td", { class: "mono", title: t.id }, short(t.id)),
    el("td", {}, t.name),
    el("td", {}, t.session_id || "–"),
    el("td", { class: "state-cell" }, stateTag(t.state)),
    el("td", {}, t.priority),
    el("td", { class: "attempts" }, t.attempts),
    el("td", {}, when(t.created_at)),
    el(
      "td",
      {},
      UNFINISHED.includes(t.state) ? el("button", { class: "row-cancel" }, "Cancel") : "",
    ),
  );
}

function filterQuery() {
  const query = new URLSearchParams({ limit: PAGE });
  for (const [key, value] of Object.entries(state.filters)) if (value) query.set(key, value);
  return query;
}

async function loadTasks() {
  const query = filterQuery();
  const cursor = state.cursors[state.page];
  if (cursor) query.set("cursor", cursor);
  const page = await api(`/api/tasks?${query}`);
  $("#tasks tbody").replaceChildren(...page.items.map(taskRow));
  if (!page.items.length)
    $("#tasks tbody").append(el("tr", {}, el("td", { colspan: 8, class: "empty" }, "No tasks.")));
  state.nextCursor = page.next_cursor;
  $("#older").disabled = !page.next_cursor;
  $("#newer").disabled = state.page === 0;
  $("#page-info").textContent = `page ${state.page + 1}`;
}

function matchesFilters(ev) {
  const f = state.filters;
  if (f.state && f.state !== ev.state) return false;
  if (f.session_id && f.session_id !== ev.session_id) return false;
  if (f.name && f.name !== ev.name) return false;
  if (f.since && new Date(ev.at) < new Date(f.since)) return false;
  if (f.until && new Date(ev.at) >= new Date(f.until)) return false;
  return true;
}

const newRows = new Set();

function applyToRow(ev) {
  const row = $(`#tasks tbody tr[data-id="${ev.id}"]`);
  if (row) {
    if (state.filters.state && state.filters.state !== ev.state) return row.remove();
    $(".state-cell", row).replaceChildren(stateTag(ev.state));
    if (ev.state === "running") $(".attempts", row).textContent = Number($(".attempts", row).textContent) + 1;
    if (!UNFINISHED.includes(ev.state)) $(".row-cancel", row)?.remove();
    row.classList.remove("flash");
    void row.offsetWidth;
    row.classList.add("flash");
  } else if (ev.event === "task_created" && state.page === 0 && matchesFilters(ev)) {
    newRows.add(ev.id); // fetched in one go below, not one request per event
  }
}

async function insertNewRows() {
  if (!newRows.size) return;
  if (newRows.size > 5) {
    // A burst (a batch enqueue): one page request instead of one per new task.
    newRows.clear();
    return reloadPageSoon();
  }
  const ids = [...newRows];
  newRows.clear();
  const tasks = await Promise.all(ids.map((id) => api(`/api/tasks/${id}`).catch(() => null)));
  const body = $("#tasks tbody");
  $(".empty", body)?.closest("tr")?.remove();
  for (const t of tasks) {
    if (!t || $(`tr[data-id="${t.id}"]`, body) || (state.filters.state && state.filters.state !== t.state)) continue;
    const row = taskRow(t);
    row.classList.add("flash");
    body.prepend(row);
  }
  while (body.rows.length > PAGE) body.lastElementChild.remove();
  $("#older").disabled = !state.nextCursor && body.rows.length < PAGE;
  if (body.rows.length >= PAGE && !state.nextCursor) loadTasks();
}

// -- detail ---------------------------------------------------------------------------------

async function showDetail(id) {
  state.detailId = id;
  const [t, events] = await Promise.all([
    api(`/api/tasks/${id}`),
    api(`/api/tasks/${id}/events?limit=200`),
  ]);
  const box = $("#detail");
  const fields = [
    ["state", stateTag(t.state)],
    ["name", t.name],
    ["session", t.session_id || "–"],
    ["goal", t.goal_id ? el("a", { href: `#goal/${t.goal_id}` }, `${short(t.goal_id)} step ${t.step_index}`) : "–"],
    ["priority", t.priority],
    ["attempts", `${t.attempts} (retries ${t.retries}/${t.max_retries})`],
    ["worker", t.worker || "–"],
    ["outcome", t.outcome || "–"],
    ["policy decision", t.policy_decision ? el("pre", {}, json(t.policy_decision)) : "–"],
    ["created", when(t.created_at)],
    ["scheduled for", when(t.scheduled_for)],
    ["started", when(t.started_at)],
    ["finished", when(t.finished_at)],
    ["args", el("pre", { class: "args-stored" }, json(t.args))],
    ["kwargs", el("pre", {}, json(t.kwargs))],
    [t.error ? "error" : "result", el("pre", { class: t.error ? "error" : "" }, t.error || json(t.result))],
  ];
  const actions = el("div", { class: "actions" });
  if (UNFINISHED.includes(t.state))
    actions.append(el("button", { class: "do-cancel danger", onclick: () => act(t.id, "cancel") }, "Cancel"));
  if (t.state === "failed")
    actions.append(el("button", { class: "do-requeue", onclick: () => act(t.id, "requeue") }, "Requeue"));
  const approval = t.state === "pending_approval" ? approvalForm(t) : null;
  box.replaceChildren(
    el("button", { class: "close", onclick: closeDetail }, "×"),
    el("h3", { class: "mono" }, t.id),
    el("dl", {}, fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    actions,
    approval,
    el("h4", {}, `Events (${events.items.length})`),
    el(
      "ol",
      { class: "events" },
      events.items.map((e) =>
        el("li", {}, el("span", { class: "mono" }, when(e.created_at)), " ", el("b", {}, e.event_type), " ",
          Object.keys(e.payload).length ? el("span", { class: "mono" }, JSON.stringify(e.payload)) : ""),
      ),
    ),
  );
  box.hidden = false;
}

function closeDetail() {
  state.detailId = null;
  $("#detail").hidden = true;
}

function approvalForm(t) {
  const args = el("textarea", { class: "args", spellcheck: "false" }, JSON.stringify(t.args));
  const kwargs = el("textarea", { class: "kwargs", spellcheck: "false" }, JSON.stringify(t.kwargs));
  const reason = el("input", { class: "reason", placeholder: "reason (optional)" });
  const approve = async () => {
    let body;
    try {
      body = { args: JSON.parse(args.value), kwargs: JSON.parse(kwargs.value) };
    } catch (err) {
      return toast(`args and kwargs must be JSON: ${err.message}`, true);
    }
    await act(t.id, "approve", body);
  };
  return el(
    "div",
    { class: "approval card", dataset: { id: t.id } },
    el("div", {}, el("b", {}, t.name), " ", el("span", { class: "mono" }, short(t.id)), " ", t.session_id || ""),
    t.policy_decision ? el("div", { class: "mono" }, JSON.stringify(t.policy_decision)) : "",
    el("label", {}, "args (JSON)", args),
    el("label", {}, "kwargs (JSON)", kwargs),
    el(
      "div",
      { class: "actions" },
      el("button", { class: "approve ok", onclick: approve }, "Approve"),
      reason,
      el("button", { class: "deny danger", onclick: () => act(t.id, "deny", { reason: reason.value }) }, "Deny"),
    ),
  );
}

async function act(id, verb, body) {
  try {
    await api(`/api/tasks/${id}/${verb}`, { method: "POST", body });
    toast(`${verb}: ${short(id)} done`);
  } catch (err) {
    toast(err.message, true);
  }
  if (state.detailId === id) showDetail(id);
  refreshSoon();
}

// -- approvals and the badge ----------------------------------------------------------------

async function refreshBadge() {
  const page = await api("/api/approvals?limit=1");
  const badge = $("#badge");
  badge.textContent = page.pending;
  badge.classList.toggle("zero", page.pending === 0);
}

async function loadApprovals() {
  const page = await api("/api/approvals?limit=50");
  const box = $("#approvals");
  box.replaceChildren(...page.items.map(approvalForm));
  if (!page.items.length) box.append(el("p", { class: "empty" }, "Nothing is waiting for approval."));
  else if (page.pending > page.items.length)
    box.append(el("p", { class: "empty" }, `…and ${page.pending - page.items.length} more.`));
}

// -- goals ----------------------------------------------------------------------------------

async function loadGoals(more = false) {
  const query = new URLSearchParams({ limit: 50 });
  if (more && loadGoals.cursor) query.set("cursor", loadGoals.cursor);
  const page = await api(`/api/goals?${query}`);
  const box = $("#goals");
  if (!more) box.replaceChildren();
  for (const g of page.items)
    box.append(
      el(
        "div",
        { class: "card goal", dataset: { id: g.id } },
        el("a", { href: `#goal/${g.id}` }, el("b", {}, g.title)), " ", stateTag(g.status), " ",
        el("span", { class: "progress-text" }, g.progress.text),
        el("div", { class: "bar" }, el("i", { style: `width:${g.progress.total ? (100 * g.progress.done) / g.progress.total : 0}%` })),
      ),
    );
  if (!page.items.length && !more) box.append(el("p", { class: "empty" }, "No goals yet."));
  loadGoals.cursor = page.next_cursor;
  $("#more-goals").hidden = !page.next_cursor;
}

async function showGoal(id) {
  state.goalId = id;
  const g = await api(`/api/goals/${id}`);
  const box = $("#view-goal");
  box.replaceChildren(
    el("p", {}, el("a", { href: "#goals" }, "‹ all goals")),
    el("h2", {}, g.title, " ", stateTag(g.status)),
    el("p", { class: "progress-text" }, g.progress.text),
    el("div", { class: "bar" }, el("i", { style: `width:${g.progress.total ? (100 * g.progress.done) / g.progress.total : 0}%` })),
    g.description ? el("p", {}, g.description) : "",
    el(
      "ol",
      { class: "steps" },
      g.steps.map((s) =>
        el("li", { dataset: { id: s.id }, onclick: () => showDetail(s.id) },
          el("span", { class: "idx" }, s.step_index), stateTag(s.state), el("b", {}, s.name),
          el("span", { class: "mono" }, JSON.stringify(s.args)), s.error ? el("span", { class: "error" }, s.error) : ""),
      ),
    ),
    el(
      "div",
      { class: "actions" },
      ["failed", "open", "in_progress"].includes(g.status)
        ? el("button", { onclick: () => goalAct(g.id, "resume") }, "Resume") : "",
      ["open", "in_progress", "failed"].includes(g.status)
        ? el("button", { class: "danger", onclick: () => goalAct(g.id, "delete") }, "Cancel goal") : "",
    ),
  );
}

async function goalAct(id, verb) {
  try {
    if (verb === "delete") await api(`/api/goals/${id}`, { method: "DELETE" });
    else await api(`/api/goals/${id}/${verb}`, { method: "POST" });
  } catch (err) {
    toast(err.message, true);
  }
  showGoal(id);
}

// -- live updates ---------------------------------------------------------------------------

let pending = [];
let flushTimer = null;

function onEvent(message) {
  const ev = JSON.parse(message.data);
  const received = Date.now();
  if (window.__tl.received.length > 20000) window.__tl.received.splice(0, 10000);
  window.__tl.received.push({ id: ev.id, state: ev.state, event_id: ev.event_id, at: ev.at, received });
  pending.push(ev);
  // Bursts (a 5,000-task cancel) are applied in batches, one repaint each.
  if (!flushTimer) flushTimer = setTimeout(flush, 40);
}

function flush() {
  flushTimer = null;
  const batch = pending;
  pending = [];
  const counts = new Map();
  let badge = false;
  const goals = new Set();
  for (const ev of batch) {
    if (ev.session_id) counts.set(ev.session_id, ev.counts);
    applyToRow(ev);
    if (ev.state === "pending_approval" || ["task_approved", "task_denied", "task_cancelled"].includes(ev.event)) badge = true;
    if (ev.goal_id) goals.add(ev.goal_id);
    if (state.detailId === ev.id) detailSoon();
  }
  for (const [id, c] of counts) setCounts(id, c);
  insertNewRows();
  if (badge) badgeSoon();
  if (state.goalId && goals.has(state.goalId)) showGoal(state.goalId);
  if (current() === "approvals" && badge) loadApprovals();
}

const debounce = (fn, ms) => {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(() => fn().catch((err) => console.warn(err)), ms);
  };
};
const badgeSoon = debounce(refreshBadge, 150);
const reloadPageSoon = debounce(loadTasks, 300);
const detailSoon = debounce(() => showDetail(state.detailId), 200);
const refreshSoon = debounce(async () => {
  await Promise.all([refreshBadge(), loadTasks()]);
  if (current() === "approvals") await loadApprovals();
}, 100);

function connect() {
  // The browser's EventSource reconnects by itself and sends Last-Event-ID: no change is lost.
  const source = new EventSource("/api/tasks/stream");
  source.addEventListener("task", onEvent);
  source.addEventListener("ready", () => {
    window.__tl.ready = true;
    $("#live").className = "live on";
    $("#live").textContent = "live";
  });
  source.onerror = () => {
    $("#live").className = "live off";
    $("#live").textContent = "reconnecting…";
  };
}

// -- views ----------------------------------------------------------------------------------

const current = () => (location.hash.slice(1) || "tasks").split("/")[0];

function route() {
  const [view, id] = (location.hash.slice(1) || "tasks").split("/");
  for (const section of $$(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of $$("nav.top a[data-view]"))
    link.classList.toggle("active", link.dataset.view === view || (view === "goal" && link.dataset.view === "goals"));
  state.goalId = null;
  if (view === "goals") loadGoals();
  if (view === "goal" && id) showGoal(id);
  if (view === "approvals") loadApprovals();
}

function wire() {
  $("#filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    state.filters = {};
    for (const [key, value] of data.entries()) {
      if (!value) continue;
      state.filters[key] = key === "since" || key === "until" ? new Date(value).toISOString() : value;
    }
    state.cursors = [null];
    state.page = 0;
    loadTasks().catch((err) => toast(err.message, true));
  });
  $("#filters").addEventListener("reset", () => {
    state.filters = {};
    state.cursors = [null];
    state.page = 0;
    setTimeout(loadTasks, 0);
  });
  $("#older").addEventListener("click", () => {
    state.cursors[state.page + 1] = state.nextCursor;
    state.page += 1;
    loadTasks();
  });
  $("#newer").addEventListener("click", () => {
    state.page = Math.max(0, state.page - 1);
    loadTasks();
  });
  $("#tasks tbody").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-id]");
    if (!row) return;
    if (event.target.closest(".row-cancel")) act(row.dataset.id, "cancel");
    else showDetail(row.dataset.id);
  });
  $("#sessions").addEventListener("click", (event) => {
    const card = event.target.closest(".session");
    if (!card) return;
    if (event.target.closest(".cancel-all")) cancelAll(card.dataset.session).catch((err) => toast(err.message, true));
    if (event.target.closest(".filter-session")) {
      $("#filters [name=session_id]").value = card.dataset.session;
      $("#filters").requestSubmit();
    }
  });
  $("#more-sessions").addEventListener("click", () => loadSessions(true));
  $("#more-goals").addEventListener("click", () => loadGoals(true));
  window.addEventListener("hashchange", route);
}

wire();
route();
Promise.all([loadTasks(), loadSessions(), refreshBadge()]).catch((err) => toast(err.message, true));
connect();
