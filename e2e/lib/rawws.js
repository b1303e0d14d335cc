'use strict';
// A hand-driven WebSocket for speaking a GraphQL subprotocol message by message
// (the legacy `graphql-ws` protocol has no maintained client).

const WebSocket = require('ws');

// openRaw connects with one subprotocol and resolves once open. The returned
// object records every JSON message; next(pred) waits for one matching pred
// that has not been taken yet; closed resolves to {code, reason}.
function openRaw(url, protocol, { headers } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocol, { headers });
    const messages = [];
    const waiters = new Set();
    let taken = 0;
    let closeInfo = null;
    const closed = new Promise((r) => ws.on('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString() };
      for (const w of waiters) w();
      r(closeInfo);
    }));
    ws.on('message', (data) => {
      let msg;
      try { msg = JSON.parse(data.toString()); } catch { msg = { type: '<non-json>', raw: data.toString() }; }
      messages.push(msg);
      for (const w of waiters) w();
    });
    ws.once('error', (err) => { if (ws.readyState !== WebSocket.OPEN) reject(err); });
    ws.once('unexpected-response', (req, res) => reject(new Error(`WebSocket upgrade refused: HTTP ${res.statusCode}`)));
    ws.once('open', () => resolve({
      ws,
      messages,
      closed,
      protocol: ws.protocol,
      send: (msg) => ws.send(JSON.stringify(msg)),
      // next resolves to the first message after the ones already taken that
      // matches pred (earlier non-matching ones are skipped); rejects on
      // close or after ms.
      next(pred = () => true, ms = 10_000, what = 'a message') {
        return new Promise((res, rej) => {
          const check = () => {
            while (taken < messages.length) {
              const m = messages[taken++];
              if (pred(m)) { done(); res(m); return; }
            }
            if (closeInfo) { done(); rej(new Error(`socket closed (${closeInfo.code} ${closeInfo.reason}) before ${what}; got ${JSON.stringify(messages.slice(-5))}`)); }
          };
          const timer = setTimeout(() => { done(); rej(new Error(`timed out waiting for ${what}; got ${JSON.stringify(messages.slice(-5))}`)); }, ms);
          const done = () => { clearTimeout(timer); waiters.delete(check); };
          waiters.add(check);
          check();
        });
      },
      close: () => { ws.close(1000); return closed; },
      terminate: () => { ws.terminate(); return closed; },
    }));
  });
}

module.exports = { openRaw };
