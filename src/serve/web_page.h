#pragma once
// The chat page `ocellus serve` answers GET / with: plain HTML and JavaScript, no build step,
// no requests beyond this server. Type a message, attach or drop an image (sent inline as a
// data: URI), watch the answer stream in (server-sent events from /v1/chat/completions), start
// a new chat. Element ids (#input, #file, #send, #new, #messages, .assistant) are what the
// browser test drives.
namespace ocellus::serve {

inline constexpr const char* kWebPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ocellus</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #1b1b1f; }
  header { display: flex; align-items: center; gap: 1em; padding: .6em 1em; background: #22223a; color: #fff; }
  header h1 { font-size: 1.1em; margin: 0; font-weight: 600; }
  header span { opacity: .7; font-size: .9em; flex: 1; }
  #messages { max-width: 46em; margin: 0 auto; padding: 1em; min-height: calc(100vh - 11em); }
  .msg { margin: .6em 0; padding: .6em .8em; border-radius: .6em; white-space: pre-wrap; line-height: 1.4; }
  .user { background: #dfe6ff; margin-left: 4em; }
  .assistant { background: #fff; margin-right: 4em; border: 1px solid #ddd; }
  .error { background: #ffe0e0; border: 1px solid #e99; }
  .msg img { display: block; max-width: 12em; max-height: 12em; margin-bottom: .4em; image-rendering: pixelated; border-radius: .3em; }
  form { position: sticky; bottom: 0; max-width: 46em; margin: 0 auto; padding: .8em 1em; background: #f4f4f6; display: flex; gap: .5em; align-items: flex-end; }
  #drop { flex: 1; border: 2px dashed transparent; border-radius: .6em; }
  #drop.over { border-color: #6a7bd8; }
  textarea { width: 100%; box-sizing: border-box; min-height: 3em; padding: .5em; font: inherit; border-radius: .5em; border: 1px solid #bbb; resize: vertical; }
  #preview { font-size: .85em; color: #555; }
  #preview img { max-height: 3em; vertical-align: middle; margin-right: .3em; }
  button, label.button { font: inherit; padding: .5em .9em; border-radius: .5em; border: 1px solid #888; background: #fff; cursor: pointer; }
  button[type=submit] { background: #22223a; color: #fff; border-color: #22223a; }
  button:disabled { opacity: .5; cursor: default; }
</style>
</head>
<body>
<header><h1>ocellus</h1><span id="model"></span><button id="new" type="button">New chat</button></header>
<div id="messages"></div>
<form id="form">
  <label class="button" title="Attach an image">Image<input id="file" type="file" accept="image/png,image/jpeg" multiple hidden></label>
  <div id="drop"><div id="preview"></div><textarea id="input" placeholder="Ask about an image (drop one here), or just chat"></textarea></div>
  <button id="send" type="submit">Send</button>
</form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let history = [];      // the conversation as the API takes it
let pending = [];      // data: URIs of images attached to the next message

fetch("/v1/models").then((r) => r.json()).then((m) => {
  const d = m.data[0];
  $("model").textContent = d.id + " · context " + d.meta.n_ctx + (d.meta.vision ? " · reads images" : " · text only");
}).catch(() => {});

function bubble(cls, text, images) {
  const div = document.createElement("div");
  div.className = "msg " + cls;
  for (const src of images || []) { const img = document.createElement("img"); img.src = src; div.appendChild(img); }
  const span = document.createElement("span");
  span.textContent = text;
  div.appendChild(span);
  $("messages").appendChild(div);
  window.scrollTo(0, document.body.scrollHeight);
  return span;
}

function attach(files) {
  for (const f of files) {
    if (!/^image\/(png|jpeg)$/.test(f.type)) continue;
    const reader = new FileReader();
    reader.onload = () => { pending.push(reader.result); showPending(); };
    reader.readAsDataURL(f);
  }
}
function showPending() {
  $("preview").innerHTML = "";
  for (const src of pending) { const img = document.createElement("img"); img.src = src; $("preview").appendChild(img); }
  if (pending.length) $("preview").appendChild(document.createTextNode(pending.length + " image(s) attached"));
}
$("file").addEventListener("change", (e) => { attach(e.target.files); e.target.value = ""; });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); attach(e.dataTransfer.files); });

$("new").addEventListener("click", () => { history = []; pending = []; showPending(); $("messages").innerHTML = ""; $("input").focus(); });
$("input").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); } });

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text && !pending.length) return;
  const content = pending.map((url) => ({ type: "image_url", image_url: { url } }));
  if (text) content.push({ type: "text", text });
  bubble("user", text, pending);
  history.push({ role: "user", content });
  $("input").value = ""; pending = []; showPending();
  $("send").disabled = true;
  const out = bubble("assistant", "");
  let reply = "";
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ messages: history, stream: true, max_tokens: 512 }),
    });
    if (!r.ok) { const j = await r.json().catch(() => ({})); throw new Error((j.error && j.error.message) || r.statusText); }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let at;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, at); buf = buf.slice(at + 2);
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") continue;
        const j = JSON.parse(data);
        if (j.error) throw new Error(j.error.message);
        const delta = j.choices && j.choices[0] && j.choices[0].delta;
        if (delta && delta.content) { reply += delta.content; out.textContent = reply; }
      }
    }
    history.push({ role: "assistant", content: reply });
    out.parentElement.dataset.done = "1";
  } catch (err) {
    out.parentElement.className = "msg error";
    out.textContent = "Error: " + err.message;
    history.pop();
  }
  $("send").disabled = false;
  $("input").focus();
});
</script>
</body>
</html>
)HTML";

}  // namespace ocellus::serve
