'use strict';
// The IDE at / in a real headless Chromium (Debian's /usr/bin/chromium, never a
// downloaded browser): it renders with no console errors and no request leaving
// the server, loads the schema, runs a query, and runs a subscription over the
// WebSocket. Screenshots go to e2e/artifacts/.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { startServer } = require('../lib/server');
const { getIntrospectionQuery } = require('graphql');
const { gql, createTask } = require('../lib/graphql');

const artifacts = path.join(__dirname, '..', 'artifacts');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

let server;
let browser;
before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  server = await startServer();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic', '--no-first-run',
    ],
  });
});
after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

// openIDE opens / in a fresh page and records console errors, page errors,
// failed requests and any request to another origin.
async function openIDE() {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const problems = [];
  const origin = new URL(server.url).origin;
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`); });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.origin !== origin && u.origin.replace(/^ws/, 'http') !== origin) {
      problems.push(`request off the server: ${r.url()}`);
    }
  });
  await page.goto(`${server.url}/`);
  await page.waitForSelector('.graphiql-container', { timeout: 20_000 });
  return { page, problems };
}

const editor = (page) => page.locator('.graphiql-query-editor .CodeMirror').first();
const resultText = (page) => page.evaluate(() => {
  const el = document.querySelector('.graphiql-response');
  return el ? el.innerText : '';
});

// run replaces the editor's text and runs it with Ctrl-Enter (or the button).
async function run(page, query, { button = false } = {}) {
  await editor(page).click();
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(query);
  if (button) await page.click('.graphiql-execute-button');
  else await page.keyboard.press('Control+Enter');
}

async function waitForResult(page, needle, ms = 15_000) {
  try {
    await page.waitForFunction(
      (n) => (document.querySelector('.graphiql-response') || {}).innerText?.includes(n),
      needle,
      { timeout: ms },
    );
  } catch (err) {
    throw new Error(`result pane never showed ${needle}; it shows:\n${await resultText(page)}`);
  }
}

test('the IDE renders from its own assets and runs a typed query', async (t) => {
  const { page, problems } = await openIDE();
  t.after(() => page.close());
  try {
    // The page names only assets of its own.
    const refs = await page.evaluate(() => [...document.querySelectorAll('script[src], link[href]')]
      .map((e) => e.src || e.href));
    assert.ok(refs.length >= 5, `the page loads its scripts and styles: ${refs}`);
    for (const ref of refs) assert.ok(ref.startsWith(server.url + '/'), `asset from elsewhere: ${ref}`);

    await run(page, '{ runtimes { name } }');
    await waitForResult(page, '"demo"');
    assert.match(await resultText(page), /"exec"/, 'the built-in exec runtime is listed too');
    await page.screenshot({ path: path.join(artifacts, 'ide.png') });
    assert.deepEqual(problems, [], 'no console errors, failed or off-site requests');
  } catch (err) {
    await page.screenshot({ path: path.join(artifacts, 'ide-failure.png') }).catch(() => {});
    throw err;
  }
});

test('the IDE loads the schema: the docs explorer shows Query', async (t) => {
  const { page, problems } = await openIDE();
  t.after(() => page.close());
  try {
    await page.click('button[aria-label="Show Documentation Explorer"]');
    const docs = page.locator('.graphiql-doc-explorer');
    try {
      await docs.getByText('Query', { exact: true }).first().waitFor({ timeout: 15_000 });
    } catch (err) {
      // Say why: GraphiQL shows "Error fetching schema" and logs nothing.
      const intro = await gql(server, getIntrospectionQuery());
      const why = intro.errors ? JSON.stringify(intro.errors[0]) : 'introspection itself works';
      throw new Error(`the docs explorer never showed Query (${(await docs.innerText()).slice(0, 200)}); graphql-js's standard introspection query: ${why.slice(0, 300)}`, { cause: err });
    }
    await docs.getByText('Query', { exact: true }).first().click();
    await docs.getByText('runtimes', { exact: true }).first().waitFor({ timeout: 5000 });
    await page.screenshot({ path: path.join(artifacts, 'ide-docs.png') });
    assert.deepEqual(problems, [], 'no console errors, failed or off-site requests');
  } catch (err) {
    await page.screenshot({ path: path.join(artifacts, 'ide-docs-failure.png') }).catch(() => {});
    throw err;
  }
});

test('the IDE runs a subscription over the WebSocket', async (t) => {
  const task = await createTask(server, { title: 'seen from the IDE' });
  const { page, problems } = await openIDE();
  t.after(() => page.close());
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  try {
    await page.waitForTimeout(500); // let the schema load so the editor knows the operation type
    await run(page, `subscription { taskEvents(taskId: "${task.id}", afterVersion: 0) { version type } }`, { button: true });
    await waitForResult(page, '"task_created"');
    assert.deepEqual(sockets, [server.wsUrl], 'the subscription ran over one WebSocket to /graphql');
    await page.screenshot({ path: path.join(artifacts, 'ide-subscription.png') });
    assert.deepEqual(problems, [], 'no console errors, failed or off-site requests');
  } catch (err) {
    await page.screenshot({ path: path.join(artifacts, 'ide-subscription-failure.png') }).catch(() => {});
    throw err;
  }
});
