// Playground: one websocket; each send asks both sides (the version and its base) to answer the
// same chat, and their tokens stream into the two panes as they are generated.
(function () {
  const form = document.getElementById("playground-form");
  if (!form) return;
  const state = document.getElementById("ws-state");
  const panes = { version: document.getElementById("chat-version"), base: document.getElementById("chat-base") };
  const history = { version: [], base: [] };
  const live = {};
  const socket = new WebSocket(window.t4dm.wsURL(form.dataset.ws));
  const sendButton = document.getElementById("send");
  let pending = 0;

  function bubble(side, role, text) {
    const li = document.createElement("li");
    li.className = role;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = role === "user" ? "you" : side === "base" ? "base model" : "fine-tuned";
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    li.append(meta, body);
    panes[side].append(li);
    panes[side].scrollTop = panes[side].scrollHeight;
    return li;
  }

  socket.addEventListener("open", () => { state.textContent = "live"; });
  socket.addEventListener("close", () => { state.textContent = "closed"; sendButton.disabled = true; });
  socket.addEventListener("message", (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "ready") {
      const select = document.getElementById("checkpoint");
      for (const step of msg.checkpoints) {
        const option = document.createElement("option");
        option.value = step;
        option.textContent = "checkpoint step " + step;
        select.append(option);
      }
      return;
    }
    const side = msg.side;
    if (msg.type === "token" && live[side]) {
      live[side].querySelector(".text").textContent += msg.text;
    } else if (msg.type === "done" && live[side]) {
      live[side].querySelector(".text").textContent = msg.text;
      live[side].querySelector(".meta").textContent += ` · ${msg.tokens} tokens in ${msg.seconds}s`;
      live[side].dataset.done = "true";
      history[side].push({ role: "assistant", content: msg.text });
      live[side] = null;
      pending -= 1;
    } else if (msg.type === "error") {
      if (side && live[side]) { live[side].querySelector(".text").textContent = "error: " + msg.message; live[side] = null; pending -= 1; }
      else alert(msg.message);
    }
    sendButton.disabled = pending > 0;
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = form.message.value.trim();
    if (!text || pending > 0) return;
    const params = {};
    for (const name of ["max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"]) {
      params[name] = Number(form[name].value);
    }
    const checkpoint = form.checkpoint.value ? Number(form.checkpoint.value) : null;
    for (const side of ["version", "base"]) {
      history[side].push({ role: "user", content: text });
      bubble(side, "user", text);
      live[side] = bubble(side, "assistant", "");
      socket.send(JSON.stringify({ type: "generate", sides: [side], messages: history[side], params, checkpoint }));
      pending += 1;
    }
    sendButton.disabled = true;
    form.message.value = "";
  });
})();
