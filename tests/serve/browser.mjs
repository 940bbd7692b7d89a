// The chat page of `ocellus serve` in a real browser (Debian's chromium, headless, driven by
// puppeteer-core): attach the image, ask, read the answer the page streamed in, start a new
// chat. Prints one JSON object; writes a screenshot of the answered page.
// Usage: node browser.mjs BASE_URL IMAGE.png QUESTION SCREENSHOT.png
import path from "node:path";
import puppeteer from "puppeteer-core";

const [baseURL, imagePath, question, shot] = process.argv.slice(2);
// Generous timeouts: Chromium's first start on a machine builds its font cache, which takes tens of
// seconds while other tests load both cores.
const timeout = 180000;
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout,
  protocolTimeout: timeout,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
});
const out = { requests: [] };
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(timeout);
  await page.setViewport({ width: 900, height: 640 });
  // Every request the page makes, to show it asks nothing of anyone but this server.
  page.on("request", (r) => out.requests.push(r.url()));
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(baseURL + "/", { waitUntil: "networkidle0", timeout });
  out.title = await page.title();
  const input = await page.$("#file");
  await input.uploadFile(path.resolve(imagePath));
  await page.waitForFunction(() => document.querySelectorAll("#preview img").length === 1);
  await page.type("#input", question);
  await page.click("#send");
  await page.waitForSelector(".assistant[data-done='1']", { timeout });
  out.answer = await page.$eval(".assistant[data-done='1'] span", (e) => e.textContent);
  out.user_images = await page.$$eval(".user img", (l) => l.length);
  await page.screenshot({ path: shot });
  await page.click("#new");
  out.after_new = await page.$$eval(".msg", (l) => l.length);
  out.errors = errors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
