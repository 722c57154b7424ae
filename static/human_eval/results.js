// The results page follows the evaluators live over /ws/human-eval/<task>/ (the task's outbox, read by
// id: experiments/human_eval/consumers.py). Each update says the status, progress, rating count and
// what happened; on a rating (or a status the page does not show yet) the page reads itself once and
// swaps the results in. A
// dropped socket reconnects with ?after=<last id> and gets exactly what it missed; HTTP polling only
// when the socket cannot open at all.
(function () {
  "use strict";
  const root = () => document.getElementById("results");
  const taskId = root().dataset.task;
  let refreshing = null;
  let again = false;

  async function refresh() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async () => {
      try {
        const response = await fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
        if (!response.ok) return;
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = doc.getElementById("results");
        if (fresh && root()) root().replaceWith(fresh);
      } catch (e) { /* the next update tries again */ }
    })();
    await refreshing;
    refreshing = null;
    if (again) { again = false; await refresh(); }
  }

  function stale(update) {
    const shown = root().dataset;
    return String(update.ratings) !== shown.ratings || update.status !== shown.status;
  }

  function showProgress(update) {
    const bar = document.getElementById("he-progress");
    if (bar) bar.value = update.progress;
  }

  function poll() {
    setInterval(refresh, 3000);
    const live = document.getElementById("he-live");
    if (live) live.textContent = "updates every 3 s";
  }

  let lastId = null;
  let retries = 0;
  function connect() {
    const after = lastId === null ? "" : "?after=" + lastId;
    let socket;
    try {
      socket = new WebSocket(window.t4dm.wsURL("/ws/human-eval/" + encodeURIComponent(taskId) + "/" + after));
    } catch (err) { poll(); return; }
    let opened = false;
    socket.onopen = () => { opened = true; retries = 0; };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "human_eval") return;
      lastId = message.id;
      const update = message.human_eval;
      showProgress(update);
      // The snapshot on connect (no kind) and generation progress: read the page only if it is behind;
      // a rating submitted or changed (a change keeps the count): read it.
      const quiet = !update.kind || update.kind === "human_eval.progress";
      if (!quiet || stale(update)) refresh();
    };
    socket.onclose = () => {
      if (!opened || retries >= 5) { poll(); return; } // no socket here (or it keeps failing): poll
      retries += 1;
      setTimeout(connect, 1000 * retries);
    };
  }
  connect();
})();
