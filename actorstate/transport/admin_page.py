"""The operator page at ``/admin``: live charts, a principal's sessions, a session's view, ending one.

Everything it needs is served by the process (``/admin``, ``/admin/page.js``,
``/admin/page.css``), nothing from another origin (the Content-Security-Policy
says so to the browser), so it works on a machine with no internet. The page
itself holds no data: it asks the operator's API (:mod:`.admin_api`) with the
bearer token the operator pastes into it (kept in the tab's sessionStorage),
so without an operator's token it shows the API's refusal and nothing else.
A browser cannot send a bearer token when it navigates, which is why the
page's shell is served to anyone.

The charts poll ``/admin/api/figures`` every second (``?interval=MS`` to
change it) and draw the last two minutes on canvases: calls per second,
commit latency p50/p99, resident actors against the cap, memory (RSS and
accounted) against the budget, evictions and restarts per second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

__all__ = ["page_routes"]

# Only this origin, no inline script or style, never framed.
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>actorstate operator</title>
<link rel="stylesheet" href="/admin/page.css">
<script src="/admin/page.js" defer></script>
</head>
<body data-polls="0">
<header>
  <h1>actorstate</h1>
  <form id="token-form">
    <label for="token">Operator token</label>
    <input id="token" type="password" autocomplete="off" placeholder="paste a token made with --operator">
    <button type="submit">Use</button>
  </form>
  <p id="status" role="status">Paste an operator's token to begin.</p>
</header>
<main>
  <section id="charts">
    <figure><figcaption>Calls per second</figcaption><canvas id="chart-calls" width="360" height="140"></canvas></figure>
    <figure><figcaption>Commit latency (ms): p50, p99</figcaption><canvas id="chart-commit" width="360" height="140"></canvas></figure>
    <figure><figcaption>Resident actors / cap</figcaption><canvas id="chart-resident" width="360" height="140"></canvas></figure>
    <figure><figcaption>Memory (MB): RSS, accounted / budget</figcaption><canvas id="chart-memory" width="360" height="140"></canvas></figure>
    <figure><figcaption>Evictions and restarts per second</figcaption><canvas id="chart-churn" width="360" height="140"></canvas></figure>
  </section>
  <section id="sessions-panel">
    <h2>Sessions</h2>
    <form id="search-form">
      <label for="principal">Principal</label>
      <input id="principal" placeholder="issuer|subject|client, e.g. tokens-file|alice|alice">
      <button type="submit">Search</button>
    </form>
    <table id="sessions"><thead><tr><th>Session</th><th>Created</th><th>Last activity</th></tr></thead><tbody></tbody></table>
    <button id="next-page" hidden>Next page</button>
    <p id="notice" role="status"></p>
  </section>
  <section id="session-view" hidden>
    <h2>Session <code id="view-id"></code></h2>
    <p id="view-total"></p>
    <h3>Metadata</h3>
    <pre id="view-metadata"></pre>
    <h3>Recent events</h3>
    <ol id="view-events"></ol>
    <button id="end-session" class="danger">End this session</button>
  </section>
</main>
</body>
</html>
"""

PAGE_CSS = """
body { font: 14px system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { display: flex; flex-wrap: wrap; gap: 1em; align-items: center; padding: .5em 1em; background: #243; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
header form { display: flex; gap: .5em; align-items: center; }
#status { margin: 0; flex: 1; }
#status.error { color: #fbb; }
#notice.error { color: #a22; }
main { padding: 1em; }
#charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: .5em; }
figcaption { font-size: .9em; color: #555; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { text-align: left; padding: .2em .8em; border-bottom: 1px solid #ddd; }
td a { font-family: monospace; }
pre { background: #fff; border: 1px solid #ddd; padding: .5em; max-width: 60em; overflow: auto; }
.danger { background: #a22; color: #fff; border: 0; padding: .4em .8em; cursor: pointer; }
"""

PAGE_JS = r"""
"use strict";
const HISTORY = 120;
const params = new URLSearchParams(location.search);
const interval = Number(params.get("interval")) || 1000;
let token = sessionStorage.getItem("actorstate-token") || "";
let previous = null;
let polls = 0;
let cursor = null;
let viewing = null;
const series = {};

function say(text, error) {
  show("status", text, error);
}

// What the operator did (search, view, end): apart from the polling's status line.
function notify(text, error) {
  show("notice", text, error);
}

function show(id, text, error) {
  const line = document.getElementById(id);
  line.textContent = text;
  line.className = error ? "error" : "";
}

async function api(path, options) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const reply = await fetch("/admin/api" + path, Object.assign({ headers: headers }, options || {}));
  const body = await reply.json();
  if (!reply.ok) {
    throw new Error(body.error || ("HTTP " + reply.status));
  }
  return body;
}

function push(name, value) {
  const values = series[name] || (series[name] = []);
  values.push(value);
  if (values.length > HISTORY) values.shift();
}

function draw(id, lines, ceiling) {
  const canvas = document.getElementById(id);
  const context = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height;
  context.clearRect(0, 0, width, height);
  let top = ceiling || 0;
  for (const line of lines) for (const v of series[line.name] || []) if (v !== null && v > top) top = v;
  top = top > 0 ? top * 1.1 : 1;
  context.fillStyle = "#555";
  context.font = "11px sans-serif";
  context.fillText(top.toPrecision(3), 2, 11);
  if (ceiling) {
    const y = height - (ceiling / top) * height;
    context.strokeStyle = "#c33";
    context.setLineDash([4, 3]);
    context.beginPath(); context.moveTo(0, y); context.lineTo(width, y); context.stroke();
    context.setLineDash([]);
  }
  for (const line of lines) {
    const values = series[line.name] || [];
    context.strokeStyle = line.color;
    context.beginPath();
    values.forEach(function (v, i) {
      const x = (i / (HISTORY - 1)) * width;
      const y = height - ((v || 0) / top) * height;
      if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
    const last = values.length ? values[values.length - 1] : null;
    canvas.dataset[line.name] = last === null ? "" : String(last);
  }
}

async function poll() {
  if (!token) return;
  try {
    const figures = await api("/figures");
    if (previous) {
      const seconds = Math.max(figures.time - previous.time, 0.001);
      push("calls", (figures.calls - previous.calls) / seconds);
      push("evictions", (figures.evictions - previous.evictions) / seconds);
      push("restarts", (figures.restarts - previous.restarts) / seconds);
    }
    push("p50", figures.commitLatencyMsP50);
    push("p99", figures.commitLatencyMsP99);
    push("resident", figures.residentActors);
    push("rss", (figures.rssBytes || 0) / 1048576);
    push("accounted", figures.accountedBytes / 1048576);
    previous = figures;
    polls += 1;
    document.body.dataset.polls = String(polls);
    draw("chart-calls", [{ name: "calls", color: "#246" }]);
    draw("chart-commit", [{ name: "p50", color: "#246" }, { name: "p99", color: "#b60" }]);
    draw("chart-resident", [{ name: "resident", color: "#246" }], figures.maxResident);
    draw("chart-memory", [{ name: "rss", color: "#246" }, { name: "accounted", color: "#b60" }],
         figures.memoryBudgetBytes / 1048576);
    draw("chart-churn", [{ name: "evictions", color: "#246" }, { name: "restarts", color: "#b60" }]);
    say("Connected: " + figures.calls + " calls so far.", false);
  } catch (error) {
    say("Refused: " + error.message, true);
  }
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

async function search(more) {
  const principal = document.getElementById("principal").value.trim();
  const query = "?principal=" + encodeURIComponent(principal) + (more && cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
  try {
    const page = await api("/sessions" + query);
    const body = document.querySelector("#sessions tbody");
    if (!more) body.replaceChildren();
    for (const session of page.sessions) {
      const row = document.createElement("tr");
      const link = document.createElement("a");
      link.href = "#" + session.sessionId;
      link.textContent = session.sessionId;
      link.addEventListener("click", function (event) { event.preventDefault(); view(session.sessionId); });
      cell(row, "").appendChild(link);
      cell(row, session.createdAt);
      cell(row, session.lastActivity);
      body.appendChild(row);
    }
    cursor = page.nextCursor || null;
    document.getElementById("next-page").hidden = !cursor;
    notify(page.sessions.length + " sessions of " + principal + (cursor ? " (more on the next page)" : "") + ".", false);
  } catch (error) {
    notify("Refused: " + error.message, true);
  }
}

async function view(sessionId) {
  try {
    const session = await api("/sessions/" + encodeURIComponent(sessionId));
    viewing = sessionId;
    document.getElementById("view-id").textContent = session.sessionId;
    document.getElementById("view-total").textContent = session.totalEvents + " events in all.";
    document.getElementById("view-metadata").textContent = JSON.stringify(session.metadata, null, 2);
    const events = document.getElementById("view-events");
    events.replaceChildren();
    for (const event of session.recentEvents) {
      const item = document.createElement("li");
      item.textContent = event.time + " " + event.type + " " + JSON.stringify(event.payload);
      events.appendChild(item);
    }
    document.getElementById("session-view").hidden = false;
  } catch (error) {
    notify("Refused: " + error.message, true);
  }
}

async function endViewed() {
  const ending = viewing;
  if (!ending || !confirm("End session " + ending + "? Its owner's next call will answer: Session not found or expired.")) return;
  try {
    await api("/sessions/" + encodeURIComponent(ending) + "/end", { method: "POST" });
    document.getElementById("session-view").hidden = true;
    viewing = null;
    await search(false);
    notify("Session " + ending + " ended.", false);
  } catch (error) {
    notify("Refused: " + error.message, true);
  }
}

document.addEventListener("DOMContentLoaded", function () {
  document.getElementById("token").value = token;
  document.getElementById("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    token = document.getElementById("token").value.trim();
    sessionStorage.setItem("actorstate-token", token);
    previous = null;
    poll();
  });
  document.getElementById("search-form").addEventListener("submit", function (event) {
    event.preventDefault();
    search(false);
  });
  document.getElementById("next-page").addEventListener("click", function () { search(true); });
  document.getElementById("end-session").addEventListener("click", endViewed);
  poll();
  setInterval(poll, interval);
});
"""


def page_routes() -> list[Route]:
    """``/admin`` and its script and style, served to anyone: the data is behind the API's token."""
    from starlette.responses import Response
    from starlette.routing import Route

    headers = {
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "x-content-type-options": "nosniff",
        "cache-control": "no-cache",
    }

    def serve(body: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return Response(body, 200, headers, media_type=media_type)

        return endpoint

    return [
        Route("/admin", serve(PAGE_HTML, "text/html; charset=utf-8"), methods=["GET"]),
        Route("/admin/page.js", serve(PAGE_JS, "text/javascript; charset=utf-8"), methods=["GET"]),
        Route("/admin/page.css", serve(PAGE_CSS, "text/css; charset=utf-8"), methods=["GET"]),
    ]
