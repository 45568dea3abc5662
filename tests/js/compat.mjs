// Drives BSN's /chat with the official socket.io-client, as web apps do: auth, send/receive, typing, sync after a reconnect.
// Input (env): BSN_URL, TOKEN_A, TOKEN_B, CONVERSATION_ID. Output: one JSON line; exit code 0 only when every step held.
import { io } from "socket.io-client";

const url = process.env.BSN_URL;
const conversation_id = Number(process.env.CONVERSATION_ID);
const deadline = setTimeout(() => fail("timed out"), 30000);

function fail(why) {
  console.log(JSON.stringify({ ok: false, why }));
  process.exit(1);
}

function connect(token) {
  const socket = io(url + "/chat", { auth: { token }, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(new Error("connect_error: " + err.message)));
  });
}

function next(socket, event, predicate = () => true) {
  return new Promise((resolve) => {
    const handler = (data) => {
      if (predicate(data)) {
        socket.off(event, handler);
        resolve(data);
      }
    };
    socket.on(event, handler);
  });
}

try {
  // A wrong token is refused with a connect_error.
  const refused = await connect("not-a-token").then(() => false, () => true);
  if (!refused) fail("a bad token was accepted");

  const a = await connect(process.env.TOKEN_A);
  let b = await connect(process.env.TOKEN_B);

  const arrival = next(b, "new_message");
  const ack = await a.emitWithAck("send_message", { conversation_id, body: "hello from node", client_id: "js-1" });
  const received = await arrival;
  if (received.id !== ack.id || received.body !== "hello from node") fail("delivery mismatch");
  const retried = await a.emitWithAck("send_message", { conversation_id, body: "hello from node", client_id: "js-1" });
  if (retried.id !== ack.id) fail("a retried client_id stored a second message");

  const typing = next(b, "typing", (t) => t.is_typing === true);
  a.emit("typing", { conversation_id, is_typing: true });
  const seenTyping = await typing;

  const bad = await a.emitWithAck("send_message", { conversation_id: "x" });
  if (!bad.error || bad.error.code !== "validation_error") fail("a bad payload was not refused");

  // B goes away; A sends five; B comes back and syncs from the last seq it saw.
  b.disconnect();
  for (let i = 0; i < 5; i++) {
    await a.emitWithAck("send_message", { conversation_id, body: "missed " + i, client_id: "js-m" + i });
  }
  b = await connect(process.env.TOKEN_B);
  const synced = await b.emitWithAck("sync", { conversation_id, after_seq: received.seq });
  const bodies = synced.results.map((m) => m.body);
  const expected = [0, 1, 2, 3, 4].map((i) => "missed " + i);
  if (JSON.stringify(bodies) !== JSON.stringify(expected)) fail("sync returned " + JSON.stringify(bodies));

  const pong = next(a, "pong");
  a.emit("ping");
  await pong;

  a.disconnect();
  b.disconnect();
  clearTimeout(deadline);
  console.log(JSON.stringify({ ok: true, seq: ack.seq, typing: seenTyping.user_id, synced: bodies.length }));
  process.exit(0);
} catch (err) {
  fail(String(err && err.message ? err.message : err));
}
