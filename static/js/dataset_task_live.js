// Follows a dataset task (a large upload's prepare, an augment) live over /ws/dataset-tasks/<id>/: the
// task's outbox read by id (datasets_app/consumers.py, t4dm_site/live_outbox.py). No polling: a
// dropped socket reconnects with ?after=<last id> and gets exactly what it missed; before each
// reconnect one fetch of GET /api/v1/datasets/tasks/<id> shows the task as it is (so a task that ended
// while the socket was down is seen even if the socket cannot come back).
//
// window.t4dmDatasetTask.follow(taskId, show, onError): show(task) is called with each state and
// returns true once the task has ended (then the socket closes); onError(message) when the task
// cannot be read at all. Returns { transport() } naming how the last state arrived.
(function () {
  "use strict";

  function follow(taskId, show, onError) {
    let lastId = null;
    let retries = 0;
    let done = false;
    let transport = "websocket";

    const end = (task) => {
      if (done) return true;
      if (show(task)) done = true;
      return done;
    };

    async function fetchOnce() {
      try {
        const response = await fetch("/api/v1/datasets/tasks/" + taskId, { credentials: "same-origin" });
        const body = await response.json();
        if (!response.ok) throw new Error((body.error || {}).message || response.statusText);
        transport = "fetch";
        end(body);
      } catch (e) {
        if (retries >= 5) onError("could not follow task " + taskId + ": " + e.message);
      }
    }

    function connect() {
      if (done) return;
      const after = lastId === null ? "" : "?after=" + lastId;
      let socket;
      try {
        socket = new WebSocket(window.t4dm.wsURL("/ws/dataset-tasks/" + taskId + "/" + after));
      } catch (e) {
        reconnect();
        return;
      }
      socket.onopen = () => { retries = 0; };
      socket.onmessage = (event) => {
        const data = JSON.parse(event.data);
        if (data.type !== "task") return;
        lastId = data.id;
        transport = "websocket";
        if (end(data.task)) socket.close();
      };
      socket.onclose = () => { if (!done) reconnect(); };
    }

    async function reconnect() {
      retries += 1;
      await fetchOnce(); // the one fallback read: only when the socket dropped or could not open
      if (done) return;
      if (retries > 30) { onError("lost the connection to task " + taskId + "; reload to see it"); return; }
      setTimeout(connect, Math.min(1000 * retries, 10000));
    }

    connect();
    return { transport: () => transport };
  }

  window.t4dmDatasetTask = Object.freeze({ follow });
})();
