'use strict';
// Small clients for the tests: GraphQL over HTTP, graphql-ws subscriptions
// collected into arrays, and /metrics scraping.

const WebSocket = require('ws');
const { createClient } = require('graphql-ws');

// gql POSTs one operation and returns the parsed response body
// ({data, errors, extensions}); it throws only when the body is not JSON.
async function gql(server, query, variables, { token, headers } = {}) {
  const res = await fetch(server.graphqlUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    Object.defineProperty(body, 'status', { value: res.status, enumerable: false });
    return body;
  } catch {
    throw new Error(`POST /graphql answered ${res.status} with non-JSON: ${text.slice(0, 500)}`);
  }
}

// gqlData is gql that throws when the response has errors, and returns data.
async function gqlData(server, query, variables, opts) {
  const body = await gql(server, query, variables, opts);
  if (body.errors && body.errors.length) {
    throw new Error(`GraphQL errors for ${query.trim().split('\n')[0]}: ${JSON.stringify(body.errors)}`);
  }
  return body.data;
}

let taskSeq = 0;

// createTask creates a task with a unique title and returns {id, version, ...}.
async function createTask(server, { title, token, ...input } = {}) {
  const data = await gqlData(
    server,
    `mutation($input: CreateTaskInput!) {
      createTask(input: $input) { task { id title status phase version } }
    }`,
    { input: { title: title || `e2e task ${process.pid}-${++taskSeq}`, ...input } },
    { token },
  );
  return data.createTask.task;
}

async function transitionPhase(server, taskId, to, { token } = {}) {
  const data = await gqlData(
    server,
    `mutation($id: ID!, $to: TaskPhase!) {
      transitionPhase(taskId: $id, to: $to) { task { id phase version } }
    }`,
    { id: taskId, to },
    { token },
  );
  return data.transitionPhase.task;
}

// wsClient returns a graphql-ws (graphql-transport-ws) client that does not
// retry, so a refused connection surfaces as an error.
function wsClient(server, { token, connectionParams, ...opts } = {}) {
  return createClient({
    url: server.wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: true,
    connectionParams: connectionParams || (token ? { Authorization: `Bearer ${token}` } : {}),
    ...opts,
  });
}

// collect subscribes with any client whose subscribe(payload, sink) returns
// an unsubscribe function (graphql-ws and graphql-sse both do) and gathers
// what arrives. until(pred) waits for pred(items) to hold.
function collect(client, payload, { field } = {}) {
  const items = [];
  const raw = [];
  const state = { error: null, done: false };
  const waiters = new Set();
  const wake = () => { for (const w of waiters) w(); };
  const unsubscribe = client.subscribe(payload, {
    next(result) {
      raw.push(result);
      if (result.errors) state.error = state.error || new Error(`subscription errors: ${JSON.stringify(result.errors)}`);
      if (result.data) {
        const key = field || Object.keys(result.data)[0];
        items.push(result.data[key]);
      }
      wake();
    },
    error(err) {
      state.error = err instanceof Error ? err : new Error(describeError(err));
      state.errorValue = err;
      wake();
    },
    complete() {
      state.done = true;
      wake();
    },
  });
  return {
    items,
    raw,
    state,
    unsubscribe,
    // until resolves when pred(items) is true; rejects on the subscription's
    // error, on its completion with pred still false, or after ms.
    until(pred, ms = 15_000, what = 'condition') {
      return new Promise((resolve, reject) => {
        const check = () => {
          let ok = false;
          try { ok = pred(items); } catch (e) { finish(); reject(e); return; }
          if (ok) { finish(); resolve(items); return; }
          if (state.error) { finish(); reject(state.error); return; }
          if (state.done) { finish(); reject(new Error(`subscription completed before ${what}; got ${items.length} items`)); }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`timed out after ${ms}ms waiting for ${what}; got ${items.length} items: ${JSON.stringify(items.slice(-5))}`));
        }, ms);
        const finish = () => { clearTimeout(timer); waiters.delete(check); };
        waiters.add(check);
        check();
      });
    },
  };
}

function describeError(err) {
  if (err && typeof err === 'object' && 'code' in err && 'reason' in err) {
    return `socket closed with code ${err.code} ${err.reason || ''}`.trim();
  }
  if (Array.isArray(err)) return JSON.stringify(err);
  if (err && err.message) return err.message;
  return String(err);
}

// goroutines returns the go_goroutines gauge from /metrics, or null when the
// server does not export it.
async function goroutines(server) {
  const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  const m = /^go_goroutines\s+([0-9.e+]+)\s*$/m.exec(text);
  return m ? Number(m[1]) : null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// eventually retries fn until it stops throwing or ms pass.
async function eventually(fn, ms = 10_000, every = 200) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await sleep(every);
  }
}

module.exports = {
  gql, gqlData, createTask, transitionPhase, wsClient, collect, goroutines, sleep, eventually, describeError,
};
