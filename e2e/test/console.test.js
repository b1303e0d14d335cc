'use strict';
// The operations console at /ui/ in a real headless Chromium (Debian's
// /usr/bin/chromium, never a downloaded browser): the list renders from the
// server's own assets, a task created through the API appears live, the task
// page follows its events, stop and cancel work from the buttons, artifacts
// download and a pod pauses and resumes from it, and a viewer sees no
// action buttons. Screenshots go to e2e/artifacts/.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { startServer } = require('../lib/server');
const { gqlData, createTask, transitionPhase } = require('../lib/graphql');

const artifacts = path.join(__dirname, '..', 'artifacts');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// Live changes arrive within a second; the bound is generous for a loaded machine.
const liveMs = 10_000;

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

// open opens a console path in a fresh page and records console errors,
// page errors, failed requests and any request to another origin.
async function open(srv, p = '/ui/', { width = 1280, height = 860 } = {}) {
  const page = await browser.newPage({ viewport: { width, height } });
  const problems = [];
  const origin = new URL(srv.url).origin;
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
  await page.goto(srv.url + p);
  return { page, problems };
}

const row = (page, title) => page.locator('table.tasks tbody tr', { hasText: title });
const live = (page) => page.locator('.conn[data-state="connected"]').waitFor({ timeout: 15_000 });

async function withFailureShot(page, name, fn) {
  try {
    await fn();
  } catch (err) {
    await page.screenshot({ path: path.join(artifacts, `${name}-failure.png`), fullPage: true }).catch(() => {});
    throw err;
  }
}

async function podState(id) {
  const d = await gqlData(server, 'query($id: ID!) { task(id: $id) { status pod { state } } }', { id });
  return d.task;
}

test('the task list renders from its own assets, with counts, filters and the viewer', async (t) => {
  const running = await createTask(server, { title: 'console: indexing run', autoStart: true });
  const planned = await createTask(server, { title: 'console: nightly report' });
  await transitionPhase(server, planned.id, 'PLANNING');
  const gone = await createTask(server, { title: 'console: abandoned import' });
  await gqlData(server, 'mutation($id: ID!) { cancelTask(taskId: $id, reason: "superseded") { task { id } } }', { id: gone.id });

  const { page, problems } = await open(server);
  t.after(() => page.close());
  await withFailureShot(page, 'console-tasks', async () => {
    await row(page, 'console: indexing run').waitFor({ timeout: 15_000 });
    await live(page);
    const refs = await page.evaluate(() => [...document.querySelectorAll('script[src], link[href]')].map((e) => e.src || e.href));
    assert.ok(refs.length >= 3, `the page loads its script, style and icon: ${refs}`);
    for (const ref of refs) assert.ok(ref.startsWith(`${server.url}/ui/assets/`), `asset from elsewhere: ${ref}`);

    assert.match(await page.getByTestId('viewer').innerText(), /local\s+ADMIN/, 'the local admin is shown');
    const headers = await page.locator('table.tasks thead th').allInnerTexts();
    for (const h of ['Title', 'Status', 'Phase', 'Pod', 'Restarts', 'Runtime', 'Updated']) {
      assert.ok(headers.includes(h), `column ${h} in ${headers}`);
    }
    await page.locator('.count[data-status="CANCELLED"] .n', { hasText: '1' }).waitFor({ timeout: 5000 });
    assert.match(await row(page, 'nightly report').innerText(), /Planning/);
    await row(page, 'indexing run').locator('.pod-running').waitFor({ timeout: liveMs });

    // Filters: the status filter keeps only cancelled tasks; the title search narrows.
    await page.locator('select[name=status]').selectOption('CANCELLED');
    await page.locator('table.tasks tbody tr', { hasText: 'nightly report' }).waitFor({ state: 'detached', timeout: 5000 });
    assert.equal(await row(page, 'abandoned import').count(), 1);
    await page.locator('select[name=status]').selectOption('');
    await page.getByLabel('Title contains').fill('nightly');
    await page.locator('table.tasks tbody tr', { hasText: 'indexing run' }).waitFor({ state: 'detached', timeout: 5000 });
    assert.equal(await row(page, 'nightly report').count(), 1);
    await page.getByLabel('Title contains').fill('');
    await row(page, 'indexing run').waitFor({ timeout: 5000 });
    // The pod state filter keeps only the running pod's task.
    await page.locator('select[name=podState]').selectOption('RUNNING');
    await page.locator('table.tasks tbody tr', { hasText: 'nightly report' }).waitFor({ state: 'detached', timeout: 5000 });
    assert.equal(await row(page, 'indexing run').count(), 1);
    await page.locator('select[name=podState]').selectOption('');
    await row(page, 'nightly report').waitFor({ timeout: 5000 });

    // Keyboard: Tab reaches the task links.
    await page.locator('table.tasks tbody a').first().focus();
    assert.equal(await page.evaluate(() => document.activeElement.closest('td') !== null), true);

    await page.screenshot({ path: path.join(artifacts, 'console-tasks.png') });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(200);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page fits 390 px (the table scrolls inside its frame); overflow ${overflow}px`);
    await page.screenshot({ path: path.join(artifacts, 'console-tasks-390.png'), fullPage: true });
    assert.deepEqual(problems, [], 'no console errors, failed or off-site requests');
  });
  await gqlData(server, 'mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }', { id: running.id });
});

test('a task created through the API appears live, and its changes follow', async (t) => {
  const { page, problems } = await open(server);
  t.after(() => page.close());
  await withFailureShot(page, 'console-live', async () => {
    await page.locator('table.tasks').waitFor({ timeout: 15_000 });
    await live(page);
    const title = `console: live ${Date.now()}`;
    const task = await createTask(server, { title });
    await row(page, title).waitFor({ timeout: liveMs });
    assert.match(await row(page, title).innerText(), /Inactive/);
    await transitionPhase(server, task.id, 'PLANNING');
    await row(page, title).filter({ hasText: 'Planning' }).waitFor({ timeout: liveMs });
    assert.deepEqual(problems, [], 'no console errors, failed or off-site requests');
  });
});

test('the task page follows events live, and stop and cancel work from the buttons', async (t) => {
  const task = await createTask(server, { title: 'console: watched task' });
  const { page, problems } = await open(server, `/ui/task/${task.id}`);
  t.after(() => page.close());
  await withFailureShot(page, 'console-task', async () => {
    await page.getByRole('heading', { name: 'console: watched task' }).waitFor({ timeout: 15_000 });
    await live(page);
    await page.locator('.timeline li[data-type="task_created"]').waitFor({ timeout: liveMs });
    assert.equal(await page.locator('.timeline li').count(), 1, 'only task_created so far');

    // Events made elsewhere arrive without a reload.
    await transitionPhase(server, task.id, 'PLANNING');
    await page.locator('.timeline li[data-type="phase_changed"]').first().waitFor({ timeout: liveMs });
    await page.getByTestId('phase').filter({ hasText: 'Planning' }).waitFor({ timeout: liveMs });
    await gqlData(server, 'mutation($id: ID!) { startPod(taskId: $id) { started } }', { id: task.id });
    await page.locator('.timeline li[data-type="pod_started"]').waitFor({ timeout: liveMs });
    await page.locator('.card .pod-running').waitFor({ timeout: liveMs });
    assert.match(await page.locator('section[aria-labelledby="pod-title"]').innerText(), /PID\s+\d+/, 'the running pod shows its pid');
    await page.screenshot({ path: path.join(artifacts, 'console-task.png'), fullPage: true });

    // Stop, confirmed in a dialog.
    await page.getByRole('button', { name: 'Stop pod' }).click();
    const dialog = page.locator('dialog[open]');
    await dialog.getByRole('button', { name: 'Stop pod' }).click();
    await page.locator('.timeline li[data-type="pod_stopped"]').waitFor({ timeout: liveMs });
    await page.locator('.card .pod-stopped').waitFor({ timeout: liveMs });
    assert.equal((await podState(task.id)).pod.state, 'STOPPED');
    // A stopped pod shows how it last ended; event data is pretty, with a raw toggle.
    assert.match(await page.getByTestId('last-exit').innerText(), /^stopped/);
    const stopped = page.locator('.timeline li[data-type="pod_stopped"]').first();
    await stopped.locator('pre.pretty').waitFor({ timeout: 5000 });
    await stopped.getByRole('button', { name: 'raw' }).click();
    await stopped.locator('code.data').waitFor({ timeout: 5000 });

    // Cancel needs a reason.
    await page.getByRole('button', { name: 'Cancel task' }).click();
    const confirm = page.locator('dialog[open]').getByRole('button', { name: 'Cancel task' });
    assert.equal(await confirm.isDisabled(), true, 'no cancel without a reason');
    await page.locator('dialog[open]').getByLabel('Reason').fill('not needed any more');
    await confirm.click();
    await page.locator('.timeline li[data-type="task_cancelled"]').waitFor({ timeout: liveMs });
    await page.locator('.pagehead .status-cancelled').waitFor({ timeout: liveMs });
    assert.equal(await page.locator('.pagehead').innerText().then((h) => h.match(/Cancelled/g).length), 1, 'the header says Cancelled once');
    assert.equal(await page.getByRole('group', { name: 'Actions' }).count(), 0, 'a closed task offers no actions');
    assert.equal((await podState(task.id)).status, 'CANCELLED');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(artifacts, 'console-task-390.png'), fullPage: true });
    assert.deepEqual(problems, [], 'no console errors, failed or off-site requests');
  });
});

test('the task page downloads artifacts, shows the last exit, and pauses and resumes a pod', async (t) => {
  const made = await createTask(server, {
    title: 'console: report maker',
    runtime: 'exec',
    autoStart: true,
    runtimeConfig: { command: ['sh', '-c', 'printf "hello from the pod" > "$IPA_ARTIFACTS/greeting.txt"'] },
  });
  const sleeper = await createTask(server, {
    title: 'console: long runner',
    runtime: 'exec',
    autoStart: true,
    runtimeConfig: { command: ['sleep', '300'] },
  });
  t.after(() => gqlData(server, 'mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }', { id: sleeper.id }).catch(() => {}));

  const { page, problems } = await open(server, `/ui/task/${made.id}`);
  t.after(() => page.close());
  await withFailureShot(page, 'console-artifacts', async () => {
    await page.getByRole('heading', { name: 'console: report maker' }).waitFor({ timeout: 15_000 });
    await live(page);
    // The artifact is saved when the command ends; the page follows.
    const link = page.locator('table.artifacts').getByRole('button', { name: 'greeting.txt' });
    for (let i = 0; i < 100 && (await link.count()) === 0; i++) {
      await page.waitForTimeout(100);
      if (i % 20 === 19) await page.reload();
    }
    await link.waitFor({ timeout: liveMs });
    await page.getByTestId('last-exit').filter({ hasText: 'exit code 0' }).waitFor({ timeout: liveMs });
    const [dl] = await Promise.all([page.waitForEvent('download', { timeout: liveMs }), link.click()]);
    assert.equal(dl.suggestedFilename(), 'greeting.txt');
    assert.equal(fs.readFileSync(await dl.path(), 'utf8'), 'hello from the pod');
    await page.screenshot({ path: path.join(artifacts, 'console-artifacts.png'), fullPage: true });

    await page.goto(`${server.url}/ui/task/${sleeper.id}`);
    await page.getByRole('heading', { name: 'console: long runner' }).waitFor({ timeout: 15_000 });
    await page.locator('.card .pod-running').waitFor({ timeout: liveMs });
    await page.getByRole('button', { name: 'Pause pod' }).click();
    await page.locator('.card .pod-paused').waitFor({ timeout: liveMs });
    assert.equal((await podState(sleeper.id)).pod.state, 'PAUSED');
    await page.getByRole('button', { name: 'Resume pod' }).click();
    await page.locator('.card .pod-running').waitFor({ timeout: liveMs });
    assert.equal((await podState(sleeper.id)).pod.state, 'RUNNING');
    assert.deepEqual(problems, [], 'no console errors, failed or off-site requests');
  });
});

test('a task page links its parent and lists its children', async (t) => {
  const parent = await createTask(server, { title: 'console: release 2.0' });
  const child = await createTask(server, { title: 'console: write the notes', parentId: parent.id });
  await createTask(server, { title: 'console: tag the build', parentId: parent.id, autoStart: true });
  const { page, problems } = await open(server, `/ui/task/${parent.id}`);
  t.after(() => page.close());
  await withFailureShot(page, 'console-family', async () => {
    await page.getByRole('heading', { name: 'console: release 2.0' }).waitFor({ timeout: 15_000 });
    const children = page.locator('table.children tbody tr');
    await children.first().waitFor({ timeout: liveMs });
    assert.equal(await children.count(), 2);
    assert.match(await children.filter({ hasText: 'tag the build' }).innerText(), /Running|Starting/);
    assert.equal(await page.getByTestId('parent').count(), 0, 'a top-level task has no parent');

    await children.filter({ hasText: 'write the notes' }).getByRole('link').click();
    await page.getByRole('heading', { name: 'console: write the notes' }).waitFor({ timeout: 15_000 });
    assert.equal(decodeURIComponent(new URL(page.url()).pathname.split('/').pop()), child.id);
    await page.getByTestId('parent').getByRole('link', { name: 'console: release 2.0' }).waitFor({ timeout: liveMs });
    assert.equal(await page.locator('table.children').count(), 0, 'a leaf task lists no children');
    await page.screenshot({ path: path.join(artifacts, 'console-family.png'), fullPage: true });
    assert.deepEqual(problems, [], 'no console errors, failed or off-site requests');
  });
  await gqlData(server, 'mutation($id: ID!, $r: String!) { cancelTask(taskId: $id, reason: $r) { task { id } } }', { id: parent.id, r: 'test done' });
});

test('a refused action shows the contract\'s message and code', async (t) => {
  const task = await createTask(server, { title: 'console: refused' });
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  t.after(() => page.close());
  // A socket that never answers: the page cannot follow the change below,
  // so it still offers the move the server will refuse.
  await page.routeWebSocket(/\/graphql$/, () => {});
  await page.goto(`${server.url}/ui/task/${task.id}`);
  await withFailureShot(page, 'console-refused', async () => {
    const move = page.getByRole('button', { name: /Move to Planning/ });
    await move.waitFor({ timeout: 15_000 });
    await gqlData(server, 'mutation($id: ID!) { completeTask(taskId: $id) { task { id } } }', { id: task.id });
    await move.click();
    const refusal = page.locator('.taskpage .refusal');
    await refusal.waitFor({ timeout: 10_000 });
    assert.match(await refusal.innerText(), /CONFLICT \/ (VERSION_CONFLICT|ALREADY_COMPLETED)/);
    // The refetch after the refusal shows the task as it is.
    await page.locator('.pagehead .status-completed').waitFor({ timeout: 10_000 });
  });
});

test('a viewer token sees the viewer and no action buttons', async (t) => {
  const srv = await startServer({ auth: 'required', tokens: [{ actor: 'alice', role: 'admin' }, { actor: 'vic', role: 'viewer' }] });
  t.after(() => srv.stop());
  const [admin, viewer] = srv.tokens;
  const task = await createTask(srv, { title: 'console: seen by a viewer', token: admin });

  const { page, problems } = await open(srv);
  t.after(() => page.close());
  await withFailureShot(page, 'console-viewer', async () => {
    await page.locator('.refusal', { hasText: 'UNAUTHENTICATED' }).waitFor({ timeout: 15_000 });
    await page.getByRole('button', { name: 'Set token' }).click();
    await page.getByLabel('API token').fill(viewer);
    await page.getByRole('button', { name: 'Use' }).click();
    await row(page, 'seen by a viewer').waitFor({ timeout: 15_000 });
    assert.match(await page.getByTestId('viewer').innerText(), /vic\s+VIEWER/);
    await live(page);
    assert.equal(await page.getByRole('button', { name: 'New task' }).count(), 0, 'no create button');

    await row(page, 'seen by a viewer').getByRole('link').click();
    await page.getByRole('heading', { name: 'console: seen by a viewer' }).waitFor({ timeout: 15_000 });
    await page.locator('.timeline li[data-type="task_created"]').waitFor({ timeout: liveMs });
    assert.equal(await page.getByRole('group', { name: 'Actions' }).count(), 0, 'no actions group');
    for (const name of ['Start pod', 'Stop pod', 'Restart pod', 'Complete', 'Cancel task']) {
      assert.equal(await page.getByRole('button', { name }).count(), 0, `no ${name} button`);
    }
    // The token survives a reload (sessionStorage) and still drives the live feed.
    await page.reload();
    await page.getByRole('heading', { name: 'console: seen by a viewer' }).waitFor({ timeout: 15_000 });
    await live(page);
    await transitionPhase(srv, task.id, 'PLANNING', { token: admin });
    await page.getByTestId('phase').filter({ hasText: 'Planning' }).waitFor({ timeout: liveMs });
    await page.screenshot({ path: path.join(artifacts, 'console-viewer.png') });
    // The only refusal is the first, tokenless load. A request still in
    // flight when the test opens the task or reloads the page is cancelled
    // by the browser (net::ERR_ABORTED): the test's doing, not a failure.
    assert.deepEqual(problems.filter((p) => !/HTTP 401/.test(p) && !/status of 401/.test(p) && !/net::ERR_ABORTED$/.test(p)), []);
  });
});

test('an operator creates a task from the form and lands on its page', async (t) => {
  const { page, problems } = await open(server);
  t.after(() => page.close());
  await withFailureShot(page, 'console-create', async () => {
    await page.getByRole('button', { name: 'New task' }).click();
    const dialog = page.locator('dialog[open]');
    await dialog.getByLabel('Title').fill('console: made in the form');
    // The runtime's example config is pre-filled and its schema's fields
    // are explained (the demo declares both).
    assert.deepEqual(JSON.parse(await dialog.getByLabel('Runtime config (JSON)').inputValue()), { stepMs: 2000 });
    await dialog.locator('.config-help dt', { hasText: 'stepMs' }).waitFor({ timeout: 5000 });
    assert.match(await dialog.locator('.config-help dd').first().innerText(), /between two phase steps/);
    await dialog.getByLabel('Runtime config (JSON)').fill('{not json');
    await dialog.getByRole('button', { name: 'Create' }).click();
    await dialog.locator('.refusal', { hasText: 'not valid JSON' }).waitFor({ timeout: 5000 });
    await dialog.getByLabel('Runtime config (JSON)').fill('');
    await dialog.getByLabel('Start the pod right away').check();
    await dialog.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: 'console: made in the form' }).waitFor({ timeout: 15_000 });
    await page.locator('.timeline li[data-type="pod_started"]').waitFor({ timeout: liveMs });
    const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop());
    assert.equal((await podState(id)).status, 'ACTIVE');
    await gqlData(server, 'mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }', { id });
    assert.deepEqual(problems, [], 'no console errors, failed or off-site requests');
  });
});

test('the filters live in the URL: a filtered view reloads and can be shared; keys move and open', async (t) => {
  const a = await createTask(server, { title: 'console-url: alpha export' });
  await transitionPhase(server, a.id, 'PLANNING');
  await createTask(server, { title: 'console-url: beta import' });
  const { page, problems } = await open(server, '/ui/?phase=PLANNING&title=console-url');
  t.after(() => page.close());
  await withFailureShot(page, 'console-url', async () => {
    // Opened with the query string: the form shows it and the list obeys it.
    await row(page, 'alpha export').waitFor({ timeout: 15_000 });
    assert.equal(await row(page, 'beta import').count(), 0);
    assert.equal(await page.locator('select[name=phase]').inputValue(), 'PLANNING');
    assert.equal(await page.getByLabel('Title contains').inputValue(), 'console-url');

    // Changing a filter rewrites the URL; a reload keeps the view.
    await page.locator('select[name=phase]').selectOption('');
    await row(page, 'beta import').waitFor({ timeout: 5000 });
    await page.waitForFunction(() => !location.search.includes('phase='));
    await page.locator('select[name=status]').selectOption('INACTIVE');
    await page.waitForFunction(() => new URLSearchParams(location.search).get('status') === 'INACTIVE');
    assert.equal(new URL(page.url()).searchParams.get('title'), 'console-url');
    await page.reload();
    await row(page, 'beta import').waitFor({ timeout: 15_000 });
    assert.equal(await page.locator('select[name=status]').inputValue(), 'INACTIVE');
    assert.equal(await page.getByLabel('Title contains').inputValue(), 'console-url');

    // Keyboard: / focuses the title filter; j selects the first row and
    // Enter opens it; ? shows the shortcuts.
    await page.locator('h1').click();
    await page.keyboard.press('/');
    assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.getAttribute('name')), 'title');
    await page.locator('h1').click();
    await page.keyboard.press('?');
    await page.locator('dialog[open]', { hasText: 'Keyboard shortcuts' }).waitFor({ timeout: 5000 });
    await page.keyboard.press('Escape');
    await page.locator('dialog[open]').waitFor({ state: 'detached', timeout: 5000 });
    await page.keyboard.press('j');
    const first = page.locator('table.tasks tbody tr.selected');
    await first.waitFor({ timeout: 5000 });
    const title = await first.locator('td.title').innerText();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: title }).waitFor({ timeout: 15_000 });
    // The reload and the move to the task page cancel requests in flight
    // (the list's live refresh): net::ERR_ABORTED is the test's doing.
    assert.deepEqual(problems.filter((p) => !/net::ERR_ABORTED$/.test(p)), [], 'no console errors, failed or off-site requests');
  });
});

test('when the server goes away, a banner says so and the data is marked stale', async (t) => {
  const srv = await startServer();
  let stopped = false;
  t.after(async () => { if (!stopped) await srv.stop(); });
  await createTask(srv, { title: 'console-offline: running', autoStart: true });
  const { page } = await open(srv);
  t.after(() => page.close());
  await withFailureShot(page, 'console-offline', async () => {
    await row(page, 'console-offline: running').locator('.pod-running').waitFor({ timeout: 15_000 });
    await live(page);
    assert.equal(await page.getByTestId('offline').count(), 0, 'no banner while connected');
    await srv.stop();
    stopped = true;
    const banner = page.getByTestId('offline');
    await banner.waitFor({ timeout: 15_000 });
    assert.match(await banner.innerText(), /Connection to the server lost at .*out of date/);
    assert.equal(await page.locator('main.stale').count(), 1, 'the page is marked stale');
    const marks = await row(page, 'console-offline: running').locator('.pod-running')
      .evaluate((el) => getComputedStyle(el, '::after').content);
    assert.match(marks, /stale/, 'the last known pod state says it is stale');
  });
});
