'use strict';
// Automatic persisted queries through Apollo Client's own persisted-queries
// link: the first request sends only the query's sha256 hash (over GET), the
// server answers PersistedQueryNotFound, the link sends hash and query, and
// from then on the hash alone (GET) is answered, also for another client that
// never sent the query.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { ApolloClient, HttpLink, InMemoryCache, gql } = require('@apollo/client');
const { createPersistedQueryLink } = require('@apollo/client/link/persisted-queries');
const { startServer } = require('../lib/server');
const { createTask } = require('../lib/graphql');

const sha256 = (text) => crypto.createHash('sha256').update(text).digest('hex');

// apollo returns an Apollo client whose requests are recorded in log:
// method, whether a query text was sent, and the answer's status and headers.
function apollo(server, log) {
  const recordingFetch = async (url, init = {}) => {
    const method = (init.method || 'GET').toUpperCase();
    const u = new URL(url);
    const sentQuery = method === 'GET' ? u.searchParams.has('query') : JSON.parse(init.body).query !== undefined;
    const res = await fetch(url, init);
    log.push({ method, sentQuery, status: res.status, cacheControl: res.headers.get('cache-control') });
    return res;
  };
  const link = createPersistedQueryLink({ sha256, useGETForHashedQueries: true })
    .concat(new HttpLink({ uri: server.graphqlUrl, fetch: recordingFetch }));
  return new ApolloClient({ link, cache: new InMemoryCache() });
}

const TASK = gql`
  query TaskTitle($id: ID!) {
    task(id: $id) { id title status }
  }
`;

describe('automatic persisted queries with Apollo Client', () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { if (server) await server.stop(); });

  it('registers a query on PersistedQueryNotFound, then serves its hash alone over GET', async () => {
    const task = await createTask(server, { title: 'persisted query target' });

    const firstLog = [];
    const first = apollo(server, firstLog);
    const a = await first.query({ query: TASK, variables: { id: task.id }, fetchPolicy: 'network-only' });
    assert.deepEqual(a.data.task, { __typename: 'Task', id: task.id, title: 'persisted query target', status: task.status });
    assert.equal(firstLog.length, 2, `two requests for an unknown hash: ${JSON.stringify(firstLog)}`);
    assert.equal(firstLog[0].method, 'GET', 'a hashed query goes over GET');
    assert.equal(firstLog[0].sentQuery, false, 'the first request carries the hash only');
    assert.equal(firstLog[1].sentQuery, true, 'after PersistedQueryNotFound the link sends the query with its hash');

    // Another client (its own cache, no knowledge of the query) sends the
    // hash alone and is answered at once.
    const secondLog = [];
    const second = apollo(server, secondLog);
    const b = await second.query({ query: TASK, variables: { id: task.id }, fetchPolicy: 'network-only' });
    assert.deepEqual(b.data.task, a.data.task);
    assert.equal(secondLog.length, 1, `one request for a known hash: ${JSON.stringify(secondLog)}`);
    assert.equal(secondLog[0].method, 'GET');
    assert.equal(secondLog[0].sentQuery, false);
    assert.equal(secondLog[0].status, 200);
    assert.match(secondLog[0].cacheControl || '', /private/, 'a GET answer depends on its caller: never cached by a shared proxy');

    // A query the server has never seen, sent as a hash alone by hand, gets
    // the error Apollo's link looks for.
    const url = new URL(server.graphqlUrl);
    url.searchParams.set('extensions', JSON.stringify({ persistedQuery: { version: 1, sha256Hash: sha256('{ __typename }') } }));
    const res = await fetch(url, { headers: { accept: 'application/json' } });
    const body = await res.json();
    assert.equal(body.errors?.[0]?.message, 'PersistedQueryNotFound', JSON.stringify(body));
  });
});
