'use strict';
// The console's inbox in a real headless Chromium: an exec pod's shell
// script asks for approval through "$IPA_BIN" pod ask; the request appears
// in /ui/inbox live, "Approve" answers it in place, the script gets exit 0,
// and the task page shows the conversation (a message sent from the page and
// the answered request).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { startServer } = require('../lib/server');
const { gqlData, createTask } = require('../lib/graphql');

const artifacts = path.join(__dirname, '..', 'artifacts');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const liveMs = 20_000;

let server;
let browser;
before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  server = await startServer();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic', '--no-first-run'],
  });
});
after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function outputLines(id) {
  const d = await gqlData(server, `query($id: ID!) { task(id: $id) { events(types: ["pod_output"], first: 100) { edges { node { data } } } } }`, { id });
  return d.task.events.edges.flatMap((e) => e.node.data.lines.map((l) => l.text));
}

async function until(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('the inbox answers a pod\'s approval in place, live', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  try {
    await page.goto(server.url + '/ui/inbox');
    await page.locator('.conn[data-state="connected"]').waitFor({ timeout: 15_000 });
    await page.getByText('Nothing is waiting for an answer.').waitFor({ timeout: liveMs });

    // Created after the page opened: the request must arrive live.
    const task = await createTask(server, {
      title: 'ship it', runtime: 'exec', autoStart: true,
      restartPolicy: { autoRestart: false },
      runtimeConfig: { command: ['sh', '-c', '"$IPA_BIN" pod ask --approval "Ship build 42?"; echo "exit=$?"; sleep 600'] },
    });
    const item = page.locator('li.request', { hasText: 'Ship build 42?' });
    await item.waitFor({ timeout: liveMs });
    assert.match(await item.innerText(), /APPROVAL/);
    assert.match(await item.innerText(), /ship it/);
    await page.screenshot({ path: path.join(artifacts, 'inbox.png'), fullPage: true });
    await item.getByRole('button', { name: 'Approve' }).click();
    await item.waitFor({ state: 'detached', timeout: liveMs });
    await until(async () => (await outputLines(task.id)).includes('exit=0'), liveMs, 'the script got exit 0');

    const d = await gqlData(server, `query($id: ID!) { task(id: $id) { pendingRequests { id } } inputRequests(state: ANSWERED) { edges { node { approved answeredBy task { id } } } } }`, { id: task.id });
    assert.equal(d.task.pendingRequests.length, 0);
    const answered = d.inputRequests.edges.map((e) => e.node).filter((n) => n.task.id === task.id);
    assert.equal(answered.length, 1);
    assert.equal(answered[0].approved, true);
    assert.equal(answered[0].answeredBy, 'local');

    // The task page: the conversation shows the answered request, and a
    // message sent from it.
    await page.goto(server.url + `/ui/task/${task.id}`);
    const conv = page.locator('section.conversation');
    await conv.locator('li.req', { hasText: 'Ship build 42?' }).waitFor({ timeout: liveMs });
    assert.match(await conv.locator('li.req').innerText(), /approved by local/);
    await conv.getByPlaceholder('Message to the pod').fill('thanks');
    await conv.getByRole('button', { name: 'Send' }).click();
    await conv.locator('li.msg', { hasText: 'thanks' }).waitFor({ timeout: liveMs });
    await page.screenshot({ path: path.join(artifacts, 'conversation.png'), fullPage: true });
    assert.deepEqual(problems, []);
  } catch (err) {
    await page.screenshot({ path: path.join(artifacts, 'inbox-failure.png'), fullPage: true }).catch(() => {});
    throw err;
  } finally {
    await page.close();
  }
});
