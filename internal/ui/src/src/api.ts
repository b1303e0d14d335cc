// The console's only way to the server: the public GraphQL API, queries and
// mutations over HTTP POST and subscriptions over one graphql-ws
// (graphql-transport-ws) WebSocket.
import { createClient, type Client } from 'graphql-ws';

const root = document.getElementById('app') as HTMLElement;
export const endpoint = root.dataset.endpoint || '/graphql';
export const base = root.dataset.base || '/ui/';
export const ideHref = root.dataset.ide || '/';

const tokenKey = 'ipa.console.token';

// The token lives in sessionStorage: it survives reloads of the tab, not the
// closing of it, and no other tab sees it.
export function getToken(): string {
  try {
    return sessionStorage.getItem(tokenKey) || '';
  } catch {
    return '';
  }
}

export function setToken(token: string) {
  try {
    if (token) sessionStorage.setItem(tokenKey, token);
    else sessionStorage.removeItem(tokenKey);
  } catch {
    /* storage disabled: the token lasts until reload */
  }
}

// ApiError is a refusal as the contract words it: the message, and the
// extensions' code and reason.
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code = '',
    readonly reason = '',
    readonly correlationId = '',
  ) {
    super(message);
  }
}

type GqlError = { message: string; extensions?: { code?: string; reason?: string } };

function toApiError(errors: GqlError[], correlationId = ''): ApiError {
  const e = errors[0];
  return new ApiError(e.message, e.extensions?.code || '', e.extensions?.reason || '', correlationId);
}

// gql runs one query or mutation; it rejects with an ApiError when the
// server refuses or cannot be reached.
export async function gql<T>(query: string, variables?: Record<string, unknown>): Promise<T> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/graphql-response+json, application/json',
  };
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(endpoint, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  } catch {
    throw new ApiError('The server could not be reached.', 'NETWORK');
  }
  let body: { data?: T; errors?: GqlError[]; extensions?: { correlationId?: string } };
  try {
    body = await res.json();
  } catch {
    throw new ApiError(`The server answered ${res.status} without a GraphQL body.`, `HTTP_${res.status}`);
  }
  if (body.errors && body.errors.length) throw toApiError(body.errors, body.extensions?.correlationId);
  return body.data as T;
}

export type ConnState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

function wsURL(): string {
  const u = new URL(endpoint, location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// Live owns the WebSocket. It reconnects by itself (back-off capped at a few
// seconds) and tells listeners when a connection comes back, so views
// refetch what they may have missed while it was down.
class Live {
  private client!: Client;
  private everConnected = false;
  private gen = 0;
  state: ConnState = 'connecting';
  detail = '';
  private stateListeners = new Set<() => void>();
  private reconnectListeners = new Set<() => void>();

  constructor() {
    this.open();
  }

  private set(state: ConnState, detail = '') {
    this.state = state;
    this.detail = detail;
    this.stateListeners.forEach((f) => f());
  }

  private open() {
    this.everConnected = false;
    // Events of a replaced client are ignored. (graphql-ws emits the first
    // "connecting" synchronously, inside createClient.)
    const gen = ++this.gen;
    const client = createClient({
      url: wsURL(),
      lazy: false,
      keepAlive: 10_000,
      retryAttempts: Infinity,
      shouldRetry: () => true,
      retryWait: (retries) => sleep(Math.min(250 * 2 ** retries, 3000) + Math.random() * 250),
      connectionParams: () => {
        const token = getToken();
        return token ? { Authorization: `Bearer ${token}` } : {};
      },
      onNonLazyError: (err) => {
        if (gen !== this.gen) return;
        const code = (err as CloseEvent)?.code;
        this.set('closed', code ? `closed by the server (${code}${(err as CloseEvent).reason ? `: ${(err as CloseEvent).reason}` : ''})` : 'closed');
      },
      on: {
        connecting: () => {
          if (gen === this.gen) this.set(this.everConnected ? 'reconnecting' : 'connecting');
        },
        connected: () => {
          if (gen !== this.gen) return;
          const again = this.everConnected;
          this.everConnected = true;
          this.set('connected');
          if (again) this.reconnectListeners.forEach((f) => f());
        },
        closed: (ev) => {
          if (gen !== this.gen || this.state === 'closed') return;
          const code = (ev as CloseEvent)?.code;
          this.set('reconnecting', code && code !== 1000 ? `last close ${code}` : '');
        },
      },
    });
    this.client = client;
  }

  // reset reconnects with the current token; every subscription made
  // through subscribe() follows to the new connection.
  reset() {
    const old = this.client;
    this.open();
    this.set('connecting');
    old.dispose();
    this.reconnectListeners.forEach((f) => f());
  }

  onState(f: () => void): () => void {
    this.stateListeners.add(f);
    return () => this.stateListeners.delete(f);
  }

  onReconnect(f: () => void): () => void {
    this.reconnectListeners.add(f);
    return () => this.reconnectListeners.delete(f);
  }

  // subscribe runs a subscription until the returned function is called.
  // It survives reconnections, token changes and refusals: after an error
  // it subscribes again a moment later (on the current connection).
  subscribe<T>(
    query: string,
    variables: () => Record<string, unknown>,
    onData: (data: T) => void,
    onError?: (err: ApiError) => void,
  ): () => void {
    let stopped = false;
    let dispose: (() => void) | null = null;
    let boundTo: Client | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const start = () => {
      if (stopped) return;
      boundTo = this.client;
      dispose = this.client.subscribe<T>(
        { query, variables: variables() },
        {
          next: (res) => {
            if (res.errors && res.errors.length) onError?.(toApiError(res.errors as GqlError[]));
            else if (res.data) onData(res.data as T);
          },
          error: (err) => {
            if (stopped) return;
            if (Array.isArray(err)) onError?.(toApiError(err as GqlError[]));
            timer = setTimeout(start, 2000);
          },
          complete: () => {
            // A disposed client completes its subscriptions; follow to the new one.
            if (!stopped && boundTo !== this.client) start();
          },
        },
      );
    };
    const off = this.onReconnect(() => {
      // Only a reset replaces the client; graphql-ws itself resubscribes
      // after an ordinary reconnect.
      if (boundTo !== this.client) {
        clearTimeout(timer);
        dispose?.();
        start();
      }
    });
    start();
    return () => {
      stopped = true;
      clearTimeout(timer);
      off();
      dispose?.();
    };
  }
}

export const live = new Live();

// Schema is the set of fields the server's schema has, so the console asks
// only for fields that exist (labels, for one, may be missing).
export type Schema = Record<string, Set<string>>;

export async function loadSchema(): Promise<Schema> {
  const types = ['Task', 'Pod', 'PodCrash', 'TaskFilter', 'CreateTaskInput', 'Runtime'];
  const q = `{ ${types
    .map((t) => `${t}: __type(name: "${t}") { fields { name } inputFields { name } }`)
    .join(' ')} }`;
  const out: Schema = {};
  try {
    const data = await gql<Record<string, { fields?: { name: string }[]; inputFields?: { name: string }[] } | null>>(q);
    for (const t of types) {
      const ty = data[t];
      out[t] = new Set([...(ty?.fields || []), ...(ty?.inputFields || [])].map((f) => f.name));
    }
  } catch {
    for (const t of types) out[t] = new Set();
  }
  return out;
}

export function has(schema: Schema, type: string, field: string): boolean {
  return schema[type]?.has(field) ?? false;
}

// download fetches an artifact (its url is the server's path,
// /artifacts/{taskId}/{name}) with the console's credential and hands it
// to the browser as a file: a plain link would carry no token.
export async function download(url: string, name: string): Promise<void> {
  const headers: Record<string, string> = {};
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  const prefix = endpoint.replace(/\/graphql$/, '');
  const res = await fetch(prefix + url, { headers });
  if (!res.ok) {
    let body: { errors?: GqlError[] } = {};
    try {
      body = await res.json();
    } catch {
      /* not JSON */
    }
    if (body.errors && body.errors.length > 0) throw toApiError(body.errors);
    throw new ApiError(`The download failed (HTTP ${res.status}).`);
  }
  const blob = await res.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
}
