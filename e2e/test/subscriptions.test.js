'use strict';
// The contract's Subscriptions section, through real third-party clients:
// graphql-ws (graphql-transport-ws), the legacy graphql-ws protocol by hand,
// graphql-sse, auth refusal on the socket, and no goroutine left behind by
// clients that vanish mid-stream.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { createClient: createSSEClient } = require('graphql-sse');
const { startServer } = require('../lib/server');
const {
  gql, gqlData, createTask, transitionPhase, wsClient, collect, goroutines, sleep, eventually,
} = require('../lib/graphql');
const { openRaw } = require('../lib/rawws');

const EVENT_FIELDS = 'id taskId version position type actorId correlationId occurredAt';
const TASK_EVENTS = `subscription($id: ID!, $after: Int) {
  taskEvents(taskId: $id, afterVersion: $after) { ${EVENT_FIELDS} }
}`;
const EVENTS = `subscription($after: String, $types: [String!]) {
  events(afterPosition: $after, types: $types) { ${EVENT_FIELDS} }
}`;
const TASK_CHANGED = `subscription($filter: TaskFilter) {
  taskChanged(filter: $filter) { id title status phase version }
}`;

// otherPhase gives the phase one step away, so toggling stays legal.
const otherPhase = (p) => (p === 'PLANNING' ? 'SPEC_CLARIFICATION' : 'PLANNING');

async function taskVersion(server, id) {
  return (await gqlData(server, 'query($id: ID!) { task(id: $id) { version } }', { id })).task.version;
}

// assertExactlyOnce checks a task stream: versions are exactly from..to, one
// each, in order, for one task, with strictly increasing positions.
function assertTaskStream(events, taskId, from, to, label) {
  const versions = events.map((e) => e.version);
  const want = Array.from({ length: to - from + 1 }, (_, i) => from + i);
  assert.deepEqual(versions, want, `${label}: versions must be ${from}..${to} exactly once, in order`);
  for (const e of events) assert.equal(e.taskId, taskId, `${label}: event of another task`);
  assertPositionsIncrease(events, label);
}

function assertPositionsIncrease(events, label) {
  for (let i = 1; i < events.length; i++) {
    assert.ok(/^[0-9]+$/.test(events[i].position), `${label}: position ${events[i].position} is not a decimal string`);
    assert.ok(
      BigInt(events[i].position) > BigInt(events[i - 1].position),
      `${label}: position ${events[i].position} (index ${i}) does not follow ${events[i - 1].position}`,
    );
  }
}

// allStoredEvents reads every task's event log over HTTP: the ground truth the
// global feed must match.
async function allStoredEvents(server) {
  const { tasks } = await gqlData(server, '{ tasks(first: 1000) { totalCount edges { node { id version } } } }');
  const out = [];
  for (const { node } of tasks.edges) {
    let after = null;
    for (;;) {
      const { task } = await gqlData(
        server,
        `query($id: ID!, $after: String) { task(id: $id) {
          events(first: 1000, after: $after) { edges { node { id version position type } } pageInfo { hasNextPage endCursor } }
        } }`,
        { id: node.id, after },
      );
      out.push(...task.events.edges.map((e) => ({ ...e.node, taskId: node.id })));
      if (!task.events.pageInfo.hasNextPage) break;
      after = task.events.pageInfo.endCursor;
    }
  }
  const versionSum = tasks.edges.reduce((s, e) => s + e.node.version, 0);
  return { events: out, versionSum };
}

describe('subscriptions (auth auto, local admin)', () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { if (server) await server.stop(); });

  it('taskEvents: stored then live, no gap or duplicate with a concurrent writer and a subscriber joining midway', async (t) => {
    const task = await createTask(server);
    const a = wsClient(server);
    const b = wsClient(server);
    t.after(() => Promise.all([a.dispose(), b.dispose()]));

    const early = collect(a, { query: TASK_EVENTS, variables: { id: task.id, after: 0 } });
    await early.until((items) => items.length >= 1, 10_000, 'task_created');
    assert.equal(early.items[0].type, 'task_created');
    assert.equal(early.items[0].version, 1);

    // One writer toggles the phase; two subscribers connect while it writes.
    const WRITES = 40;
    let written = 0;
    let phase = task.phase;
    const writer = (async () => {
      for (let i = 0; i < WRITES; i++) {
        phase = otherPhase(phase);
        await transitionPhase(server, task.id, phase);
        written++;
      }
    })();
    while (written < 10) await sleep(5);
    const mid0 = collect(b, { query: TASK_EVENTS, variables: { id: task.id, after: 0 } });
    const mid5 = collect(b, { query: TASK_EVENTS, variables: { id: task.id, after: 5 } });
    await writer;

    // A live event after everything stored.
    await transitionPhase(server, task.id, otherPhase(phase));
    const last = await taskVersion(server, task.id);
    assert.ok(last >= WRITES + 2, `task version ${last} after ${WRITES + 1} transitions`);
    const sawLast = (items) => items.some((e) => e.version >= last);
    await Promise.all([
      early.until(sawLast, 15_000, `version ${last} (early)`),
      mid0.until(sawLast, 15_000, `version ${last} (midway, afterVersion 0)`),
      mid5.until(sawLast, 15_000, `version ${last} (midway, afterVersion 5)`),
    ]);
    await sleep(300); // time for a duplicate to show up, if any

    assertTaskStream(early.items, task.id, 1, last, 'subscribed before the writes');
    assertTaskStream(mid0.items, task.id, 1, last, 'joined midway from 0');
    assertTaskStream(mid5.items, task.id, 6, last, 'joined midway from 5');
    assert.ok(early.items.slice(1).every((e) => e.type === 'phase_changed'), 'transitions are phase_changed events');
    assert.equal(early.state.error, null);
  });

  it('events: the global feed from position 0 under 8 concurrent writers, every event exactly once in position order', async (t) => {
    const a = wsClient(server);
    const b = wsClient(server);
    t.after(() => Promise.all([a.dispose(), b.dispose()]));

    const first = collect(a, { query: EVENTS, variables: { after: '0' } });
    const WRITERS = 8;
    const STEPS = 8;
    let steps = 0;
    let mid;
    const writers = Array.from({ length: WRITERS }, async () => {
      const task = await createTask(server);
      let phase = task.phase;
      for (let i = 0; i < STEPS; i++) {
        phase = otherPhase(phase);
        await transitionPhase(server, task.id, phase);
        if (++steps === (WRITERS * STEPS) / 2) {
          mid = collect(b, { query: EVENTS, variables: { after: '0' } });
        }
      }
    });
    await Promise.all(writers);
    assert.ok(mid, 'the midway subscriber started');

    const stored = await allStoredEvents(server);
    assert.equal(stored.events.length, stored.versionSum, 'the task logs hold sum(version) events');
    const total = stored.events.length;
    await Promise.all([
      first.until((items) => items.length >= total, 20_000, `${total} events (from the start)`),
      mid.until((items) => items.length >= total, 20_000, `${total} events (joined midway)`),
    ]);
    await sleep(300);

    const storedById = new Map(stored.events.map((e) => [e.id, e]));
    for (const [label, sub] of [['subscribed first', first], ['joined midway', mid]]) {
      const ids = sub.items.map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length, `${label}: an event was delivered twice`);
      assert.equal(ids.length, total, `${label}: ${ids.length} events delivered, ${total} stored`);
      for (const e of sub.items) {
        const s = storedById.get(e.id);
        assert.ok(s, `${label}: event ${e.id} is not in any task's log`);
        assert.equal(e.position, s.position, `${label}: event ${e.id} position differs from the stored one`);
        assert.equal(e.version, s.version);
      }
      assertPositionsIncrease(sub.items, label);
      // Per task, the feed carries versions 1..n in order.
      const perTask = new Map();
      for (const e of sub.items) {
        const v = perTask.get(e.taskId) || 0;
        assert.equal(e.version, v + 1, `${label}: task ${e.taskId} version ${e.version} after ${v}`);
        perTask.set(e.taskId, e.version);
      }
    }
  });

  it('events: the types filter passes only the named types, stored and live', async (t) => {
    const a = wsClient(server);
    t.after(() => a.dispose());
    const created = collect(a, { query: EVENTS, variables: { after: '0', types: ['task_created'] } });
    const phases = collect(a, { query: EVENTS, variables: { after: '0', types: ['phase_changed'] } });
    const { taskCount } = await gqlData(server, '{ taskCount }');
    await created.until((items) => items.length >= taskCount, 10_000, `${taskCount} task_created events`);

    const task = await createTask(server);
    await transitionPhase(server, task.id, otherPhase(task.phase));
    await created.until((items) => items.some((e) => e.taskId === task.id), 10_000, 'the new task_created');
    await phases.until((items) => items.some((e) => e.taskId === task.id), 10_000, 'the new phase_changed');
    await sleep(300);
    assert.equal(created.items.length, taskCount + 1);
    assert.ok(created.items.every((e) => e.type === 'task_created'), 'only task_created passes ["task_created"]');
    assert.ok(phases.items.length > 0 && phases.items.every((e) => e.type === 'phase_changed'), 'only phase_changed passes ["phase_changed"]');
    assertPositionsIncrease(created.items, 'task_created feed');
    assertPositionsIncrease(phases.items, 'phase_changed feed');
  });

  it('events: without afterPosition the feed starts at the live head', async (t) => {
    const { events: stored } = await allStoredEvents(server);
    const head = stored.reduce((m, e) => (BigInt(e.position) > m ? BigInt(e.position) : m), 0n);
    const a = wsClient(server);
    t.after(() => a.dispose());
    const live = collect(a, { query: EVENTS, variables: {} });
    // The subscription is registered asynchronously: write until one arrives.
    await eventually(async () => {
      await createTask(server);
      await live.until((items) => items.length > 0, 500, 'a live event');
    }, 10_000, 0);
    for (const e of live.items) {
      assert.ok(BigInt(e.position) > head, `replayed old event at position ${e.position} (head was ${head})`);
    }
  });

  it('taskChanged: the status filter passes only tasks whose new view matches', async (t) => {
    const a = wsClient(server);
    t.after(() => a.dispose());
    const tag = `tc-${process.pid}-${Date.now()}`;
    const completed = collect(a, { query: TASK_CHANGED, variables: { filter: { status: ['COMPLETED'] } } });
    const cancelled = collect(a, { query: TASK_CHANGED, variables: { filter: { status: ['CANCELLED'], titleContains: tag } } });
    const any = collect(a, { query: TASK_CHANGED, variables: { filter: { titleContains: tag } } });
    await sleep(300); // let the subscriptions register

    const one = await createTask(server, { title: `${tag} one` });
    const two = await createTask(server, { title: `${tag} two` });
    await transitionPhase(server, one.id, otherPhase(one.phase));
    await gqlData(server, 'mutation($id: ID!) { completeTask(taskId: $id) { task { id status } } }', { id: one.id });
    await gqlData(server, 'mutation($id: ID!) { cancelTask(taskId: $id, reason: "e2e") { task { id status } } }', { id: two.id });

    await completed.until((items) => items.some((x) => x.id === one.id), 10_000, 'task one completed');
    await cancelled.until((items) => items.some((x) => x.id === two.id), 10_000, 'task two cancelled');
    await any.until((items) => items.some((x) => x.id === one.id && x.status === 'COMPLETED')
      && items.some((x) => x.id === two.id && x.status === 'CANCELLED'), 10_000, 'both closings, unfiltered by status');
    await sleep(300);

    assert.ok(completed.items.every((x) => x.status === 'COMPLETED'), `status filter leaked: ${JSON.stringify(completed.items)}`);
    assert.ok(!completed.items.some((x) => x.id === two.id), 'the cancelled task reached the COMPLETED filter');
    assert.ok(cancelled.items.every((x) => x.status === 'CANCELLED' && x.id === two.id), `status filter leaked: ${JSON.stringify(cancelled.items)}`);
    assert.ok(any.items.every((x) => x.title.includes(tag)), 'titleContains filter leaked');
    assert.ok(any.items.some((x) => x.id === one.id && x.phase !== one.phase), 'the phase change was seen as a row change');
    const oneViews = any.items.filter((x) => x.id === one.id).map((x) => x.version);
    assert.deepEqual(oneViews, [...oneViews].sort((x, y) => x - y), 'views of one task arrive in version order');
  });

  it('legacy graphql-ws protocol (connection_init / start / data / stop) by hand', async (t) => {
    const task = await createTask(server);
    const c = await openRaw(server.wsUrl, 'graphql-ws');
    t.after(() => c.terminate());
    assert.equal(c.protocol, 'graphql-ws', 'the server picked the legacy subprotocol');
    c.send({ type: 'connection_init', payload: {} });
    await c.next((m) => m.type === 'connection_ack', 5000, 'connection_ack');
    c.send({ id: '1', type: 'start', payload: { query: TASK_EVENTS, variables: { id: task.id, after: 0 } } });
    const first = await c.next((m) => m.type === 'data' && m.id === '1', 5000, 'data for the stored event');
    assert.equal(first.payload.data.taskEvents.version, 1);
    assert.equal(first.payload.data.taskEvents.type, 'task_created');

    await transitionPhase(server, task.id, otherPhase(task.phase));
    const live = await c.next((m) => m.type === 'data' && m.id === '1', 5000, 'data for the live event');
    assert.equal(live.payload.data.taskEvents.version, 2);

    c.send({ id: '1', type: 'stop' });
    await sleep(300);
    const count = c.messages.filter((m) => m.type === 'data' && m.id === '1').length;
    await transitionPhase(server, task.id, task.phase);
    await sleep(500);
    assert.equal(c.messages.filter((m) => m.type === 'data' && m.id === '1').length, count, 'data arrived after stop');
    assert.ok(!c.messages.some((m) => m.type === 'error' || m.type === 'connection_error'), `errors: ${JSON.stringify(c.messages)}`);

    c.send({ type: 'connection_terminate' });
    const closed = await Promise.race([c.closed, sleep(3000).then(() => null)]);
    assert.ok(closed, 'the server closes the socket on connection_terminate');
  });

  it('graphql-transport-ws: ping is answered with pong', async (t) => {
    const c = await openRaw(server.wsUrl, 'graphql-transport-ws');
    t.after(() => c.terminate());
    assert.equal(c.protocol, 'graphql-transport-ws');
    c.send({ type: 'connection_init', payload: {} });
    await c.next((m) => m.type === 'connection_ack', 5000, 'connection_ack');
    c.send({ type: 'ping' });
    await c.next((m) => m.type === 'pong', 5000, 'pong');
  });

  // The protocol says a subscribe reusing a live id MUST close the socket with
  // 4409.
  it('graphql-transport-ws: a duplicate subscribe id closes with 4409', async (t) => {
    const task = await createTask(server);
    const c = await openRaw(server.wsUrl, 'graphql-transport-ws');
    t.after(() => c.terminate());
    c.send({ type: 'connection_init', payload: {} });
    await c.next((m) => m.type === 'connection_ack', 5000, 'connection_ack');
    const sub = { id: 'x', type: 'subscribe', payload: { query: TASK_EVENTS, variables: { id: task.id, after: 0 } } };
    c.send(sub);
    await c.next((m) => m.type === 'next' && m.id === 'x', 5000, 'next');
    c.send(sub);
    const { code } = await Promise.race([c.closed, sleep(5000).then(() => ({ code: 'still open' }))]);
    assert.equal(code, 4409, 'a second subscribe with a live id closes with 4409 Subscriber already exists');
  });

  it('SSE via graphql-sse in distinct connections mode: stored then live', async (t) => {
    const task = await createTask(server);
    const client = createSSEClient({ url: server.graphqlUrl, singleConnection: false, retryAttempts: 0 });
    t.after(() => client.dispose());
    const sub = collect(client, { query: TASK_EVENTS, variables: { id: task.id, after: 0 } });
    await sub.until((items) => items.length >= 1, 10_000, 'the stored task_created over SSE');
    let phase = task.phase;
    for (let i = 0; i < 5; i++) {
      phase = otherPhase(phase);
      await transitionPhase(server, task.id, phase);
    }
    await sub.until((items) => items.length >= 6, 10_000, '5 live events over SSE');
    await sleep(300);
    assertTaskStream(sub.items, task.id, 1, 6, 'SSE');

    // A query over SSE completes after its one result.
    const q = collect(client, { query: '{ runtimes { name } }' });
    await q.until((items) => items.length === 1, 10_000, 'a query result over SSE');
    await eventually(() => assert.ok(q.state.done, 'the query stream completed'), 5000);
    assert.ok(q.items[0].some((r) => r.name === 'demo'));
  });

  it('a client that vanishes mid-stream leaves no goroutine behind', async (t) => {
    const before0 = await goroutines(server);
    if (before0 === null) {
      t.skip('/metrics has no go_goroutines gauge');
      return;
    }
    const task = await createTask(server);
    // Settle: one full connect/subscribe/close cycle first, so lazily started
    // server goroutines are counted in the baseline.
    {
      const c = await openRaw(server.wsUrl, 'graphql-transport-ws');
      c.send({ type: 'connection_init', payload: {} });
      await c.next((m) => m.type === 'connection_ack');
      c.send({ id: '1', type: 'subscribe', payload: { query: TASK_EVENTS, variables: { id: task.id, after: 0 } } });
      await c.next((m) => m.type === 'next');
      await c.close();
    }
    await sleep(1000);
    const baseline = await goroutines(server);

    const sockets = [];
    for (let i = 0; i < 10; i++) {
      const c = await openRaw(server.wsUrl, 'graphql-transport-ws');
      c.send({ type: 'connection_init', payload: {} });
      await c.next((m) => m.type === 'connection_ack');
      c.send({ id: 'a', type: 'subscribe', payload: { query: TASK_EVENTS, variables: { id: task.id, after: 0 } } });
      c.send({ id: 'b', type: 'subscribe', payload: { query: EVENTS, variables: { after: '0' } } });
      c.send({ id: 'c', type: 'subscribe', payload: { query: TASK_CHANGED, variables: {} } });
      await c.next((m) => m.type === 'next' && m.id === 'a');
      sockets.push(c);
    }
    const sse = [];
    for (let i = 0; i < 5; i++) {
      const ctrl = new AbortController();
      const res = await fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query: TASK_EVENTS, variables: { id: task.id, after: 0 } }),
        signal: ctrl.signal,
      });
      assert.equal(res.status, 200);
      const reader = res.body.getReader();
      await reader.read(); // the stream has started
      sse.push({ ctrl, reader });
    }
    // Keep the streams busy while the clients vanish.
    let phase = task.phase;
    const busy = (async () => {
      for (let i = 0; i < 10; i++) {
        phase = otherPhase(phase);
        await transitionPhase(server, task.id, phase);
      }
    })();
    const peak = await goroutines(server);
    for (const c of sockets) c.ws.terminate(); // no close frame: the TCP connection just goes
    for (const s of sse) s.ctrl.abort();
    await busy;

    let now;
    await eventually(async () => {
      now = await goroutines(server);
      assert.ok(now <= baseline + 5, `goroutines ${now}, baseline ${baseline}`);
    }, 20_000, 250).catch((err) => {
      throw new Error(`goroutines did not return to baseline after clients vanished: baseline ${baseline}, with clients ${peak}, 20s later ${now}`, { cause: err });
    });
    t.diagnostic(`goroutines: baseline ${baseline}, with 10 sockets x 3 subscriptions + 5 SSE streams ${peak}, after ${now}`);
    assert.ok(peak > baseline, `the open subscriptions should have raised the goroutine count (${baseline} -> ${peak})`);
  });
});

describe('subscriptions with --auth required', () => {
  let server;
  let viewer;
  before(async () => {
    server = await startServer({ auth: 'required', tokens: [{ actor: 'e2e-viewer', role: 'viewer' }] });
    [viewer] = server.tokens;
  });
  after(async () => { if (server) await server.stop(); });

  // closeOf connects with graphql-ws, subscribes, and resolves to the close
  // event's code (or 'ok' when a result arrives).
  async function closeOf(connectionParams) {
    let code = null;
    const client = wsClient(server, { connectionParams, on: { closed: (e) => { code = e.code; } } });
    try {
      const sub = collect(client, { query: EVENTS, variables: { after: '0' } });
      try {
        await sub.until((items) => items.length > 0, 5000, 'a result');
        return 'ok';
      } catch (err) {
        if (code === null && sub.state.errorValue && sub.state.errorValue.code) code = sub.state.errorValue.code;
        return code === null ? `no close (${err.message})` : code;
      }
    } finally {
      await client.dispose();
    }
  }

  it('connection_init without a token is closed with 4401', async () => {
    assert.equal(await closeOf({}), 4401);
  });

  it('connection_init with a bad token is closed with 4401', async () => {
    assert.equal(await closeOf({ Authorization: 'Bearer not-a-real-token' }), 4401);
  });

  it('a viewer token in connection_init may subscribe', async () => {
    // Something to read: the viewer cannot write, so mint an operator.
    const operator = await server.token('e2e-operator', 'operator');
    await createTask(server, { token: operator });
    assert.equal(await closeOf({ Authorization: `Bearer ${viewer}` }), 'ok');
  });

  it('over HTTP: no token is UNAUTHENTICATED, a viewer mutating is FORBIDDEN', async () => {
    const anon = await gql(server, '{ viewer { id role } }');
    assert.equal(anon.errors?.[0]?.extensions?.code, 'UNAUTHENTICATED', JSON.stringify(anon));
    const me = await gqlData(server, '{ viewer { id role } }', {}, { token: viewer });
    assert.deepEqual(me.viewer, { id: 'e2e-viewer', role: 'VIEWER' });
    const denied = await gql(server, 'mutation { createTask(input: {title: "nope"}) { task { id } } }', {}, { token: viewer });
    assert.equal(denied.errors?.[0]?.extensions?.code, 'FORBIDDEN', JSON.stringify(denied));
  });

  it('legacy graphql-ws without a token gets no data', async (t) => {
    const c = await openRaw(server.wsUrl, 'graphql-ws');
    t.after(() => c.terminate());
    c.send({ type: 'connection_init', payload: {} });
    c.send({ id: '1', type: 'start', payload: { query: EVENTS, variables: { after: '0' } } });
    await Promise.race([c.closed, sleep(2000)]);
    assert.ok(!c.messages.some((m) => m.type === 'data' || m.type === 'connection_ack'), `refused socket got ${JSON.stringify(c.messages)}`);
  });

  it('SSE without a token is refused; with the Authorization header it streams', async (t) => {
    const refused = createSSEClient({ url: server.graphqlUrl, singleConnection: false, retryAttempts: 0 });
    t.after(() => refused.dispose());
    const r = collect(refused, { query: EVENTS, variables: { after: '0' } });
    await assert.rejects(r.until((items) => items.length > 0, 5000, 'a result'), 'an anonymous SSE stream was served');
    assert.equal(r.items.length, 0);

    const ok = createSSEClient({
      url: server.graphqlUrl, singleConnection: false, retryAttempts: 0, headers: { Authorization: `Bearer ${viewer}` },
    });
    t.after(() => ok.dispose());
    const s = collect(ok, { query: EVENTS, variables: { after: '0' } });
    await s.until((items) => items.length > 0, 5000, 'an event over an authorized SSE stream');
  });
});
