// The built-in chat page at / in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core; no browser is downloaded): open it, set temperature 0 in the settings,
// type a message, read the streamed answer, and compare it with the same request made
// directly; then a second turn, and the stop button ending a long answer.
// usage: node chat_page_test.cjs KTX_RUN PLAN
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");
const { startServer, rawStream, assert, assertEq } = require("./common.cjs");

const [ktxRun, plan] = process.argv.slice(2);
const KEY = "page-key";

async function main() {
  const srv = await startServer(ktxRun, plan, ["--parallel", "4", "--ctx", "512", "--api-key", KEY, "-t", "2"]);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "ktx-chromium-"));
  // A fresh profile directory (playwright passes it as --user-data-dir).
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.KTX_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  try {
    const page = browser.pages()[0] || (await browser.newPage());
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(srv.base + "/");
    assertEq(await page.title(), "KTX chat", "page title");
    await page.click("#toggle-settings");
    await page.fill("#apikey", KEY);
    await page.fill("#temperature", "0");
    await page.fill("#max_tokens", "20");
    const ask = async (text, n) => {
      await page.fill("#input", text);
      await page.press("#input", "Enter");
      await page.waitForSelector(`.assistant:nth-of-type(${2 * n})[data-state="done"]`, { timeout: 30000 });
      return page.$$eval(".assistant", (els) => els[els.length - 1].querySelector("span").textContent);
    };
    const answer = await ask("Hello from the browser", 1);
    const direct = await rawStream(srv.base, "/v1/chat/completions", {
      messages: [{ role: "user", content: "Hello from the browser" }], temperature: 0, top_p: 1,
      max_tokens: 20, stream: true }, { key: KEY });
    assert(answer.length > 0, "the page showed no answer");
    assertEq(answer, direct.text, "page answer vs direct request");
    // A second turn carries the history.
    const second = await ask("And again", 2);
    const direct2 = await rawStream(srv.base, "/v1/chat/completions", {
      messages: [{ role: "user", content: "Hello from the browser" }, { role: "assistant", content: answer },
                 { role: "user", content: "And again" }], temperature: 0, top_p: 1, max_tokens: 20, stream: true },
      { key: KEY });
    assertEq(second, direct2.text, "second turn");
    // Stop: a long answer ends early when the button is pressed.
    await page.fill("#max_tokens", "400");
    await page.fill("#input", "a long one please");
    await page.press("#input", "Enter");
    await page.waitForFunction(() => {
      const els = document.querySelectorAll(".assistant");
      return els[els.length - 1].querySelector("span").textContent.length > 0;
    }, null, { timeout: 30000 });
    await page.click("#stop");
    await page.waitForSelector(`.assistant:nth-of-type(6)[data-state="done"]`, { timeout: 10000 });
    assertEq(await page.isDisabled("#send"), false, "send enabled again after stop");
    assertEq(errors, [], "page errors");
    console.log("serve chat page test: all checks passed");
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
    await srv.stop();
  }
}

main().catch((e) => {
  console.error("FAIL:", e.stack || e);
  process.exit(1);
});
