/* Batch details: poll the session's progress JSON every few seconds while it runs.
 * Rows and counters are redrawn with textContent only (error messages are server
 * text, never HTML). When the session ends the page reloads once, so the final
 * buttons (Retry failed) come from the server with their permission checks. */
(function () {
  "use strict";
  const root = document.querySelector(".wf-session");
  if (!root || root.dataset.running !== "1") {
    return;
  }
  const url = root.dataset.progressUrl;
  const interval = parseInt(root.dataset.pollMs, 10) || 2000;

  function setText(id, value) {
    const el = document.getElementById(id);
    if (el) {
      el.textContent = value;
    }
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) {
      td.className = className;
    }
    td.textContent = text;
    return td;
  }

  function row(r) {
    const tr = document.createElement("tr");
    tr.dataset.record = r.id;
    const name = document.createElement("td");
    name.className = "wf-record-instance";
    if (r.instance_url) {
      const a = document.createElement("a");
      a.href = r.instance_url;
      a.textContent = r.instance;
      name.appendChild(a);
    } else {
      name.textContent = r.instance;
    }
    tr.appendChild(name);
    const status = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = "wf-badge wf-badge-" + r.status;
    badge.textContent = r.status_display;
    status.appendChild(badge);
    tr.appendChild(status);
    tr.appendChild(cell(r.started_at, "nowrap"));
    tr.appendChild(cell(r.completed_at, "nowrap"));
    tr.appendChild(cell(r.duration, "num"));
    tr.appendChild(cell(String(r.synced), "num"));
    tr.appendChild(cell(String(r.added), "num"));
    tr.appendChild(cell(String(r.modified), "num"));
    tr.appendChild(cell(String(r.removed), "num"));
    const error = cell("", "wf-outcome");
    if (r.error_kind) {
      const text = document.createElement("span");
      text.className = "wf-error";
      const kind = document.createElement("span");
      kind.className = "wf-error-kind";
      kind.title = r.error_kind_display || "";
      kind.textContent = "[" + r.error_kind + "]";
      text.append(kind, " " + r.error_message);
      error.appendChild(text);
    }
    (r.gaps || []).forEach(function (g) {
      const line = document.createElement("div");
      line.className = "wf-gap wf-gap-" + g.kind;
      const kind = document.createElement("span");
      kind.className = "wf-gap-kind";
      kind.textContent = g.kind_display || g.kind;
      const scope = document.createElement("code");
      scope.textContent = g.scope;
      line.append(kind, " ", scope, ": " + g.reason + (g.fix ? " — " + g.fix : ""));
      error.appendChild(line);
    });
    tr.appendChild(error);
    return tr;
  }

  function bar(data) {
    const total = Math.max(data.total, 0);
    const ok = total ? (100 * data.succeeded) / total : 0;
    const failed = total ? (100 * data.failed) / total : 0;
    const wrap = document.querySelector("#wf-progress .wf-progress");
    if (!wrap) {
      return;
    }
    wrap.setAttribute("aria-valuenow", String(data.succeeded + data.failed));
    wrap.querySelector(".wf-progress-ok").style.width = ok + "%";
    const red = wrap.querySelector(".wf-progress-failed");
    red.style.left = ok + "%";
    red.style.width = failed + "%";
    const label = document.querySelector("#wf-progress .wf-progress-label");
    if (label) {
      label.textContent = data.succeeded + data.failed + "/" + total;
    }
  }

  function render(data) {
    const status = document.getElementById("wf-status");
    if (status) {
      status.className = "wf-badge wf-badge-" + data.status;
      status.textContent = data.status_display;
    }
    setText("wf-duration", data.duration);
    setText("wf-completed", data.completed_at);
    setText("wf-total", String(data.total));
    setText("wf-succeeded", String(data.succeeded));
    setText("wf-failed", String(data.failed));
    setText("wf-waiting", String(data.pending + data.running_records));
    setText("wf-accounts", String(data.accounts));
    bar(data);
    const body = document.querySelector("#wf-records tbody");
    if (body) {
      body.replaceChildren.apply(body, data.records.map(row));
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        render(data);
        if (data.running) {
          window.setTimeout(poll, interval);
        } else {
          window.location.reload();
        }
      })
      .catch(function () {
        window.setTimeout(poll, interval * 2);
      });
  }

  window.setTimeout(poll, interval);
})();
