// A load test of `ocellus serve`: CLIENTS clients at once, each sending REQUESTS requests that
// mix text, images and streaming. Prints one JSON object: errors, latency p50 / p99, the
// generated tokens per second of the whole run. Usage: node load.mjs BASE_URL IMAGE.png CLIENTS REQUESTS
import fs from "node:fs";

const [baseURL, imagePath, clientsArg, requestsArg] = process.argv.slice(2);
const clients = Number(clientsArg), requests = Number(requestsArg);
const image = "data:image/png;base64," + fs.readFileSync(imagePath).toString("base64");
const questions = ["What is in the top left cell? Answer briefly.", "Describe the picture.", "Is there a bag in the picture? Answer briefly."];

async function one(c, r) {
  const kind = (c + r) % 3;  // 0: text only, 1: image, 2: image streamed
  const content = kind === 0 ? "Tell me about fashion." :
    [{ type: "image_url", image_url: { url: image } }, { type: "text", text: questions[(c * 7 + r) % questions.length] }];
  const body = { messages: [{ role: "user", content }], max_tokens: 16, temperature: 0.7, seed: c * 100 + r, stream: kind === 2,
                 stream_options: kind === 2 ? { include_usage: true } : undefined };
  const t0 = performance.now();
  const res = await fetch(baseURL + "/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 200) return { ok: false, ms, status: res.status, body: text.slice(0, 200) };
  let tokens = 0;
  if (kind === 2) {
    if (!text.trimEnd().endsWith("data: [DONE]")) return { ok: false, ms, status: 200, body: "stream without [DONE]" };
    for (const line of text.split("\n\n")) {
      if (!line.startsWith("data: {")) continue;
      const j = JSON.parse(line.slice(6));
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  } else {
    tokens = JSON.parse(text).usage.completion_tokens;
  }
  return { ok: true, ms, tokens };
}

const t0 = performance.now();
const results = (await Promise.all(Array.from({ length: clients }, async (_, c) => {
  const mine = [];
  for (let r = 0; r < requests; ++r) mine.push(await one(c, r).catch((e) => ({ ok: false, ms: 0, body: String(e) })));
  return mine;
}))).flat();
const seconds = (performance.now() - t0) / 1000;
const ms = results.filter((r) => r.ok).map((r) => r.ms).sort((a, b) => a - b);
const pct = (p) => (ms.length ? ms[Math.min(ms.length - 1, Math.floor(p * ms.length))] : 0);
const tokens = results.reduce((s, r) => s + (r.tokens || 0), 0);
console.log(JSON.stringify({
  requests: results.length, errors: results.filter((r) => !r.ok).length, first_error: results.find((r) => !r.ok) || null,
  p50_ms: pct(0.5), p99_ms: pct(0.99), seconds, tokens, tokens_per_second: tokens / seconds,
}));
