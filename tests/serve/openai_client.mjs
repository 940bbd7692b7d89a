// The official OpenAI client (the `openai` npm package) against `ocellus serve`: a chat with an
// image, the same streamed with usage, and a bad request. Prints one JSON object with what it
// read; tests/serve/test_clients.cpp checks it. Usage: node openai_client.mjs BASE_URL IMAGE.png QUESTION
import fs from "node:fs";
import OpenAI from "openai";

const [baseURL, imagePath, question] = process.argv.slice(2);
const client = new OpenAI({ baseURL: baseURL + "/v1", apiKey: "not-needed", maxRetries: 0, timeout: 60000 });
const image = "data:image/png;base64," + fs.readFileSync(imagePath).toString("base64");
const messages = [{ role: "user", content: [{ type: "image_url", image_url: { url: image } }, { type: "text", text: question }] }];

const out = {};
const whole = await client.chat.completions.create({ model: "fashion-vlm", messages, temperature: 0, max_tokens: 24 });
out.text = whole.choices[0].message.content;
out.finish = whole.choices[0].finish_reason;
out.usage = whole.usage;

const stream = await client.chat.completions.create({
  model: "fashion-vlm", messages, temperature: 0, max_tokens: 24, stream: true, stream_options: { include_usage: true },
});
out.streamed = "";
out.chunks = 0;
for await (const chunk of stream) {
  out.chunks++;
  if (chunk.usage) out.streamed_usage = chunk.usage;
  for (const c of chunk.choices) if (c.delta && c.delta.content) out.streamed += c.delta.content;
}

try {
  await client.chat.completions.create({ model: "fashion-vlm", messages: [{ role: "robot", content: "hi" }] });
  out.bad = "accepted";
} catch (e) {
  out.bad = { status: e.status, message: e.error && e.error.message, isBadRequest: e instanceof OpenAI.BadRequestError };
}
const models = await client.models.list();
out.models = models.data.map((m) => m.id);
console.log(JSON.stringify(out));
