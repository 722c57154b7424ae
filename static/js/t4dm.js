// Shared by every page (loaded by base.html before the page's own script): the CSRF token for
// same-origin POSTs, JSON requests with it, and websocket URLs on the page's own host and scheme.
(function () {
  "use strict";

  function csrf() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // fetch() with the session cookie and the CSRF header; a body is sent as JSON.
  function request(method, url, body) {
    const headers = { "X-CSRFToken": csrf() };
    const init = { method, credentials: "same-origin", headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init);
  }

  function wsURL(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  window.t4dm = Object.freeze({ csrf, request, wsURL });
})();
