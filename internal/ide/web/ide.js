// Bootstrap for the embedded GraphiQL. Kept in its own file (not inline) so the
// page's Content-Security-Policy can forbid inline scripts.
//
// Queries and mutations go over HTTP to the endpoint; subscriptions go over a
// WebSocket (graphql-transport-ws, via graphql-ws's browser build) to the same
// path. The Authorization header typed into GraphiQL's headers editor is sent
// on HTTP requests and, for subscriptions, in connection_init's payload as
// {"Authorization": "Bearer …"}; a changed header opens a new socket.
(function () {
  'use strict';

  var root = document.getElementById('graphiql');
  var endpoint = root.getAttribute('data-endpoint') || '/graphql';
  var defaultQuery = root.getAttribute('data-default-query') || '';

  var httpURL = new URL(endpoint, window.location.href);
  var wsURL = new URL(httpURL.href);
  wsURL.protocol = httpURL.protocol === 'https:' ? 'wss:' : 'ws:';

  // authorization returns the value of the Authorization header in headers,
  // matched case-insensitively, or undefined.
  function authorization(headers) {
    if (!headers || typeof headers !== 'object') return undefined;
    for (var key in headers) {
      if (Object.prototype.hasOwnProperty.call(headers, key) &&
          key.toLowerCase() === 'authorization' && headers[key] != null) {
        return String(headers[key]);
      }
    }
    return undefined;
  }

  var current = { key: null, ws: null, fetcher: null };

  // fetcherFor returns a GraphiQL fetcher whose WebSocket client carries the
  // given Authorization value, replacing the previous one when it changed.
  function fetcherFor(auth) {
    var key = auth === undefined ? '' : 'a:' + auth;
    if (current.fetcher && current.key === key) return current.fetcher;
    if (current.ws) current.ws.dispose();
    var ws = window.graphqlWs.createClient({
      url: wsURL.href,
      lazy: true,
      retryAttempts: 3,
      connectionParams: auth === undefined ? {} : { Authorization: auth },
    });
    current = {
      key: key,
      ws: ws,
      fetcher: window.GraphiQL.createFetcher({ url: httpURL.href, wsClient: ws }),
    };
    return current.fetcher;
  }

  // fetcher parses the query itself: GraphiQL's own documentAST trails the
  // editor by a debounce, so a subscription run right after typing would
  // otherwise be sent over HTTP.
  function fetcher(params, opts) {
    opts = Object.assign({}, opts);
    if (params && typeof params.query === 'string') {
      try {
        opts.documentAST = window.GraphiQL.GraphQL.parse(params.query);
      } catch (e) {
        // Leave it to the server to report the syntax error.
      }
    }
    return fetcherFor(authorization(opts.headers))(params, opts);
  }

  var props = {
    fetcher: fetcher,
    defaultQuery: defaultQuery,
    defaultEditorToolsVisibility: false,
    shouldPersistHeaders: false,
  };
  // The logo slot links to the operations console (relative, like the
  // assets, so it follows the IDE when mounted below a prefix).
  var h = window.React.createElement;
  var logo = h(window.GraphiQL.Logo, null,
    'GraphiQL ',
    h('a', { href: 'ui/', className: 'ipa-console-link' }, 'Console →'));
  var element = h(window.GraphiQL, props, logo);
  window.ReactDOM.createRoot(root).render(element);
})();
