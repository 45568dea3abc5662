// BSN web console: logs in, then shows chat, presence, live feed and mining over REST and Socket.IO.
// Everything users wrote is inserted with textContent, never as HTML.
"use strict";

const params = new URLSearchParams(location.search);
const HEARTBEAT_SECONDS = Number(params.get("heartbeat")) || 30;
const NAMESPACES = ["/chat", "/presence", "/feed", "/notifications"];

const state = {
  token: sessionStorage.getItem("bsn.token"),
  me: null,
  sockets: {},
  conversations: new Map(), // id -> conversation item
  current: null, // open conversation id
  lastSeq: new Map(), // conversation id -> highest seq shown
  shown: new Set(), // message ids shown, so a sync never duplicates
  typingTimer: null,
  typingSent: 0,
  heartbeatTimer: null,
  mining: null,
  miningAt: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

async function api(method, path, body, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    keepalive: options.keepalive || false,
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || { code: "http_" + response.status, message: response.statusText };
    throw Object.assign(new Error(error.message), { code: error.code, fields: error.fields, status: response.status });
  }
  return data;
}

function describe(error) {
  const fields = error.fields ? " " + Object.entries(error.fields).map(([k, v]) => `${k}: ${v.join(" ")}`).join("; ") : "";
  return error.message + fields;
}

// ---- auth ----

async function submitAuth(event, path) {
  event.preventDefault();
  const body = Object.fromEntries(new FormData(event.target).entries());
  try {
    const result = await api("POST", path, body);
    state.token = result.token;
    sessionStorage.setItem("bsn.token", result.token);
    await start();
  } catch (error) {
    $("auth-error").textContent = describe(error);
  }
}

async function start() {
  try {
    state.me = await api("GET", "/api/auth/user/");
  } catch (error) {
    sessionStorage.removeItem("bsn.token");
    state.token = null;
    return;
  }
  $("auth").hidden = true;
  $("app").hidden = false;
  $("whoami").textContent = `${state.me.username} (#${state.me.id})`;
  if (typeof io !== "function") {
    const missing = $("missing");
    missing.hidden = false;
    missing.textContent =
      "socket.io-client is missing, so live features are off: install Node.js and run `npm ci` (scripts/run does it when npm is present).";
  } else {
    connectSockets();
  }
  await loadConversations();
  await refreshMining();
  startHeartbeats();
}

// ---- sockets and badges ----

function badge(namespace, status, detail) {
  let node = document.querySelector(`[data-ns="${namespace}"]`);
  if (!node) {
    node = el("span", "", "badge");
    node.dataset.ns = namespace;
    $("badges").append(node);
  }
  node.className = "badge " + status;
  node.dataset.status = status;
  node.textContent = `${namespace} ${status}${detail ? " " + detail : ""}`;
}

function connectSockets() {
  for (const namespace of NAMESPACES) {
    // Reconnects with exponential backoff (socket.io-client's default), up to 10 s apart. The websocket
    // transport first: a web dyno of several workers (WEB_WORKERS) refuses long-polling, which stays as
    // the fallback for a network that blocks websockets.
    const socket = io(namespace, {
      auth: { token: state.token },
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 10000,
    });
    state.sockets[namespace] = socket;
    badge(namespace, "offline");
    socket.on("connect", () => {
      badge(namespace, "connected");
      if (namespace === "/chat") resync();
    });
    socket.on("disconnect", () => badge(namespace, "reconnecting"));
    socket.io.on("reconnect_attempt", (attempt) => badge(namespace, "reconnecting", `(try ${attempt})`));
    socket.io.on("reconnect_failed", () => badge(namespace, "offline"));
    socket.on("connect_error", () => badge(namespace, socket.active ? "reconnecting" : "offline"));
    socket.on("error", (error) => activity(`error on ${namespace}: ${error.code} ${error.message}`));
  }
  const chat = state.sockets["/chat"];
  chat.on("new_message", (message) => onMessage(message));
  chat.on("typing", onTyping);
  chat.on("read_receipt", (receipt) => {
    if (receipt.conversation_id === state.current && receipt.user_id !== state.me.id) {
      markSeen(receipt.user_id, receipt.seq);
    }
  });
  chat.on("reaction", (reaction) => {
    const node = document.querySelector(`[data-message="${reaction.message_id}"] .reactions`);
    if (node) node.textContent = reaction.emoji ? `${reaction.emoji} by #${reaction.user_id}` : "";
  });
  chat.on("conversation_created", () => loadConversations());
  state.sockets["/presence"].on("presence", (p) => setPresence(p.user_id, p.online));
  for (const namespace of ["/feed", "/notifications"]) {
    state.sockets[namespace].onAny((event, data) => {
      activity(`${event}: ${JSON.stringify(data)}`);
      if (event === "mining_stopped") refreshMining();
    });
  }
}

function activity(text) {
  const item = el("li", `${new Date().toLocaleTimeString()} ${text}`);
  $("feed").prepend(item);
}

// ---- chat ----

async function loadConversations() {
  const page = await api("GET", "/api/conversations/?limit=50");
  const list = $("conversations");
  list.replaceChildren();
  for (const item of page.results) {
    const conversation = item.conversation;
    state.conversations.set(conversation.id, item);
    const others = conversation.members.filter((m) => m.user_id !== state.me.id).map((m) => "#" + m.user_id);
    const label = conversation.title || others.join(", ");
    const entry = el("li", `${label}${item.unread_count ? ` (${item.unread_count})` : ""}`);
    entry.dataset.conversation = conversation.id;
    if (conversation.id === state.current) entry.classList.add("active");
    entry.addEventListener("click", () => openConversation(conversation.id));
    list.append(entry);
  }
}

async function openConversation(id) {
  state.current = id;
  state.shown.clear();
  $("conversation").hidden = false;
  $("messages").replaceChildren();
  $("typing").textContent = "";
  for (const li of document.querySelectorAll("#conversations li")) {
    li.classList.toggle("active", Number(li.dataset.conversation) === id);
  }
  const page = await api("GET", `/api/conversations/${id}/messages/?limit=50`);
  for (const message of page.results.reverse()) showMessage(message);
  const item = state.conversations.get(id);
  const others = item ? item.conversation.members.filter((m) => m.user_id !== state.me.id) : [];
  const members = $("members");
  members.replaceChildren();
  for (const member of others) {
    const span = el("span", `#${member.user_id}`);
    span.dataset.user = member.user_id;
    span.prepend(el("span", "", "dot"));
    members.append(span, " ");
    if (member.last_read_seq) markSeen(member.user_id, member.last_read_seq);
  }
  const presence = state.sockets["/presence"];
  if (presence && others.length) {
    const answer = await presence.emitWithAck("query", { user_ids: others.map((m) => m.user_id) });
    for (const p of answer.results || []) setPresence(p.user_id, p.online);
  }
  sendRead();
}

function setPresence(userId, online) {
  for (const dot of document.querySelectorAll(`[data-user="${userId}"] .dot`)) {
    dot.classList.toggle("online", online);
    dot.dataset.online = online ? "yes" : "no";
  }
}

function showMessage(message) {
  if (state.shown.has(message.id)) return;
  state.shown.add(message.id);
  const seq = Math.max(state.lastSeq.get(message.conversation_id) || 0, message.seq);
  state.lastSeq.set(message.conversation_id, seq);
  if (message.conversation_id !== state.current) return;
  const item = el("li");
  item.dataset.message = message.id;
  item.dataset.seq = message.seq;
  item.dataset.sender = message.sender ? message.sender.id : "";
  const who = message.sender ? message.sender.display_name || message.sender.username : "?";
  item.append(el("strong", who + ": "), el("span", message.deleted ? "(deleted)" : message.body, "body"));
  item.append(el("span", `#${message.seq}`, "meta"), el("span", "", "meta seen"));
  const react = el("button", "👍", "react");
  react.title = "React";
  react.addEventListener("click", () => state.sockets["/chat"].emit("react", { message_id: message.id, emoji: "👍" }));
  item.append(react, el("span", "", "meta reactions"));
  for (const reaction of message.reactions || []) item.querySelector(".reactions").textContent = `${reaction.emoji} by #${reaction.user_id}`;
  const list = $("messages");
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

function onMessage(message) {
  if (message.conversation_id === state.current) {
    showMessage(message);
    if (message.sender && message.sender.id !== state.me.id) sendRead();
  } else {
    state.lastSeq.set(message.conversation_id, Math.max(state.lastSeq.get(message.conversation_id) || 0, message.seq));
    loadConversations();
  }
}

function sendRead() {
  const seq = state.lastSeq.get(state.current);
  const chat = state.sockets["/chat"];
  if (seq && chat && chat.connected) chat.emit("read", { conversation_id: state.current, seq });
}

function markSeen(userId, seq) {
  for (const item of document.querySelectorAll("#messages li")) {
    const seen = item.querySelector(".seen");
    const own = Number(item.dataset.sender) === userId; // one's own messages need no receipt from oneself
    if (!own && Number(item.dataset.seq) <= seq && !seen.textContent.includes(`#${userId}`)) {
      seen.textContent = (seen.textContent ? seen.textContent + ", " : "seen by ") + `#${userId}`;
    }
  }
}

const typers = new Map(); // user id -> name
function onTyping(event) {
  if (event.conversation_id !== state.current || event.user_id === state.me.id) return;
  if (event.is_typing) typers.set(event.user_id, `#${event.user_id}`);
  else typers.delete(event.user_id);
  $("typing").textContent = typers.size ? `${[...typers.values()].join(", ")} typing…` : "";
}

function typed() {
  const chat = state.sockets["/chat"];
  if (!chat || !chat.connected || !state.current) return;
  const now = Date.now();
  // Renew at most every 3 s; the server ends it by itself 10 s after the last renewal.
  if (now - state.typingSent > 3000) {
    chat.emit("typing", { conversation_id: state.current, is_typing: true });
    state.typingSent = now;
  }
}

async function send(event) {
  event.preventDefault();
  const input = $("message-input");
  const body = input.value.trim();
  if (!body || !state.current) return;
  const payload = { conversation_id: state.current, body, client_id: crypto.randomUUID() };
  input.value = "";
  state.typingSent = 0;
  const chat = state.sockets["/chat"];
  // The client_id makes a retry safe: after a reconnect the same message is sent again, and stored once.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      if (chat && chat.connected) {
        const stored = await chat.timeout(5000).emitWithAck("send_message", payload);
        if (stored.error) throw Object.assign(new Error(stored.error.message), stored.error);
        showMessage(stored);
      } else {
        showMessage(await api("POST", `/api/conversations/${payload.conversation_id}/messages/`, payload));
      }
      return;
    } catch (error) {
      if (error.code && error.code !== "http_0") {
        activity(`not sent: ${describe(error)}`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000 * (attempt + 1)));
    }
  }
  activity("not sent: no connection");
}

async function resync() {
  // After a reconnect: fetch exactly what was missed, in order, for every conversation seen so far.
  const chat = state.sockets["/chat"];
  for (const [conversationId, lastSeq] of state.lastSeq) {
    let after = lastSeq;
    for (;;) {
      const batch = await chat.emitWithAck("sync", { conversation_id: conversationId, after_seq: after });
      if (!batch || !batch.results) break;
      for (const message of batch.results) onMessage(message);
      if (!batch.has_more || !batch.results.length) break;
      after = batch.results[batch.results.length - 1].seq;
    }
  }
}

async function newConversation(event) {
  event.preventDefault();
  const ids = new FormData(event.target).get("user_ids").split(",").map((s) => Number(s.trim())).filter(Boolean);
  try {
    const conversation = await api("POST", "/api/conversations/", { user_ids: ids });
    await loadConversations();
    await openConversation(conversation.id);
  } catch (error) {
    activity(`could not start: ${describe(error)}`);
  }
}

// ---- mining ----

function showMining(stats) {
  state.mining = stats;
  state.miningAt = Date.now();
  $("mining-status").textContent = stats.is_mining ? "mining" : "stopped";
  $("mining-status").dataset.state = stats.is_mining ? "mining" : "stopped";
  if (stats.balance !== undefined) $("mining-balance").textContent = stats.balance;
  if (stats.last_heartbeat) $("mining-heartbeat").textContent = new Date(stats.last_heartbeat).toLocaleTimeString();
  $("mining-heartbeat").dataset.at = stats.last_heartbeat || "";
  $("mining-reason").textContent =
    !stats.is_mining && stats.stopped_reason ? `Stopped: ${stats.stopped_reason} at ${stats.ended_at}` : "";
  tickPending();
}

function tickPending() {
  const stats = state.mining;
  if (!stats || stats.pending === undefined) return;
  let pending = Number(stats.pending);
  if (stats.is_mining) pending += (Number(stats.mining_power) * (Date.now() - state.miningAt)) / 3600000;
  $("mining-pending").textContent = pending.toFixed(8);
}

async function refreshMining() {
  showMining(await api("GET", "/api/mining/stats/"));
}

async function heartbeat(keepalive = false) {
  if (!state.token) return;
  try {
    const answer = await api("PATCH", "/api/mining/heartbeat/", undefined, { keepalive });
    if (answer.is_mining) {
      state.mining = Object.assign({}, state.mining, answer);
      $("mining-heartbeat").textContent = new Date(answer.last_heartbeat).toLocaleTimeString();
      $("mining-heartbeat").dataset.at = answer.last_heartbeat;
    } else {
      showMining(answer);
    }
  } catch (error) {
    activity(`heartbeat failed: ${describe(error)}`);
  }
}

function startHeartbeats() {
  // Only while the tab is visible (the Page Visibility API), and one last beat when it is hidden.
  const schedule = () => {
    clearInterval(state.heartbeatTimer);
    state.heartbeatTimer = null;
    if (document.visibilityState === "visible") {
      state.heartbeatTimer = setInterval(() => heartbeat(), HEARTBEAT_SECONDS * 1000);
    }
  };
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") heartbeat(true);
    else heartbeat();
    schedule();
  });
  schedule();
  setInterval(tickPending, 1000);
}

async function miningAction(path) {
  try {
    const result = await api("POST", path);
    if (result && result.claimed !== undefined) activity(`claimed ${result.claimed} BSN`);
    await refreshMining();
  } catch (error) {
    activity(`${path}: ${describe(error)}`);
  }
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => submitAuth(e, "/api/auth/login/"));
  $("register-form").addEventListener("submit", (e) => submitAuth(e, "/api/auth/register/"));
  $("send-form").addEventListener("submit", send);
  $("message-input").addEventListener("input", typed);
  $("new-conversation").addEventListener("submit", newConversation);
  $("mining-start").addEventListener("click", () => miningAction("/api/mining/start/"));
  $("mining-claim").addEventListener("click", () => miningAction("/api/mining/claim/"));
  $("mining-stop").addEventListener("click", () => miningAction("/api/mining/stop/"));
  if (state.token) start();
});
