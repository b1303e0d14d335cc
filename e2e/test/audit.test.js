'use strict';
// graphql-http's server audit: the GraphQL-over-HTTP spec's MUST and SHOULD
// items all pass on /graphql (graphql-http reports a failed SHOULD as a
// warning, which fails here); MAY items that do not are reported as
// diagnostics only.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { auditServer } = require('graphql-http');
const { startServer } = require('../lib/server');

let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

test('GraphQL over HTTP server audit (graphql-http)', async (t) => {
  const results = await auditServer({ url: server.graphqlUrl, fetchFn: fetch });
  assert.ok(results.length > 0, 'the audit ran no checks');
  let must = 0;
  for (const r of results) {
    const required = r.name.startsWith('MUST') || r.name.startsWith('SHOULD') || r.status === 'warn';
    if (required) must++;
    if (r.status === 'ok') {
      await t.test(r.name, () => {});
      continue;
    }
    let body = '';
    try { body = r.response ? `${r.response.status} ${await r.response.clone().text()}` : ''; } catch { /* consumed */ }
    const detail = `${r.id} ${r.name}: ${r.reason}${body ? `\n    response: ${body.slice(0, 300)}` : ''}`;
    if (required || r.status === 'error') {
      await t.test(r.name, () => assert.fail(detail));
    } else {
      t.diagnostic(`${r.status.toUpperCase()}: ${detail}`);
    }
  }
  t.diagnostic(`${results.length} audits, ${must} MUST or SHOULD; ${results.filter((r) => r.status !== 'ok').length} not ok`);
});
