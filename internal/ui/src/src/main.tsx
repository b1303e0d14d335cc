// The operations console: a task list and a task page over ipa's public
// GraphQL API, following changes live over one WebSocket.
import './app.css';
import './extras.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, base, getToken, gql, has, ideHref, live, loadSchema, setToken, type ConnState, type Schema } from './api';
import type { Viewer } from './model';
import { TasksPage } from './tasks';
import { TaskPage } from './task';
import { InboxPage } from './inbox';
import { QueuedPage } from './sched';
import { Link } from './ui';
import { OfflineBanner, useOffline } from './offline';

export type Runtime = {
  name: string;
  description: string | null;
  /** The JSON Schema of its runtimeConfig and an example, when the server and the runtime have them. */
  configSchema?: unknown;
  exampleConfig?: unknown;
};

type Route = { page: 'tasks' } | { page: 'task'; id: string } | { page: 'inbox' } | { page: 'queued' };

function route(): Route {
  // Old-style hash links (#/task/ID) become paths.
  const hash = location.hash.match(/^#\/task\/([^/?#]+)/);
  if (hash) history.replaceState(null, '', `${base}task/${hash[1]}`);
  const p = location.pathname;
  if (p === `${base}queued`) return { page: 'queued' };
  if (p.startsWith(`${base}task/`)) {
    const id = decodeURIComponent(p.slice(base.length + 5).split('/')[0]);
    if (id) return { page: 'task', id };
  }
  if (p === `${base}inbox` || p.startsWith(`${base}inbox/`)) return { page: 'inbox' };
  return { page: 'tasks' };
}

function useRoute(): Route {
  const [r, setR] = useState(route);
  useEffect(() => {
    const on = () => setR(route());
    addEventListener('popstate', on);
    return () => removeEventListener('popstate', on);
  }, []);
  return r;
}

function Connection() {
  const [, setTick] = useState(0);
  useEffect(() => live.onState(() => setTick((n) => n + 1)), []);
  const text: Record<ConnState, string> = {
    connecting: 'Connecting…',
    connected: 'Live',
    reconnecting: 'Reconnecting…',
    closed: 'Disconnected',
  };
  return (
    <span class={`conn conn-${live.state}`} role="status" aria-live="polite" title={live.detail || undefined} data-state={live.state}>
      <span class="dot" aria-hidden="true" />
      {text[live.state]}
      {live.state === 'closed' && (
        <button type="button" class="link" onClick={() => live.reset()}>
          retry
        </button>
      )}
    </span>
  );
}

function TokenBox(props: { onChange: () => void }) {
  const [open, setOpen] = useState(false);
  const [value, setValue] = useState('');
  const has = !!getToken();
  const save = (token: string) => {
    setToken(token);
    setValue('');
    setOpen(false);
    live.reset();
    props.onChange();
  };
  if (!open) {
    return (
      <span class="tokenbox">
        <button type="button" onClick={() => setOpen(true)}>
          {has ? 'Change token' : 'Set token'}
        </button>
        {has && (
          <button type="button" onClick={() => save('')}>
            Forget token
          </button>
        )}
      </span>
    );
  }
  return (
    <form
      class="tokenbox"
      onSubmit={(e) => {
        e.preventDefault();
        save(value.trim());
      }}
    >
      <label>
        <span class="sr-only">API token</span>
        <input
          type="password"
          name="token"
          autoComplete="off"
          placeholder="API token"
          value={value}
          onInput={(e) => setValue(e.currentTarget.value)}
          autoFocus
        />
      </label>
      <button type="submit">Use</button>
      <button type="button" onClick={() => setOpen(false)}>
        Cancel
      </button>
    </form>
  );
}

function App() {
  const r = useRoute();
  const [viewer, setViewer] = useState<Viewer | null>(null);
  const [authError, setAuthError] = useState<ApiError | null>(null);
  const [schema, setSchema] = useState<Schema | null>(null);
  const [runtimes, setRuntimes] = useState<Runtime[]>([]);
  const [gen, setGen] = useState(0); // bumps when the token changes
  const offline = useOffline();

  useEffect(() => {
    let gone = false;
    setViewer(null);
    setAuthError(null);
    (async () => {
      try {
        // The schema first: it says whether runtimes describe their config.
        const s = await loadSchema();
        const rf = has(s, 'Runtime', 'configSchema') ? 'name description configSchema exampleConfig' : 'name description';
        const d = await gql<{ viewer: Viewer; runtimes: Runtime[] }>(`{ viewer { id role } runtimes { ${rf} } }`);
        if (gone) return;
        setViewer(d.viewer);
        setRuntimes(d.runtimes);
        setSchema(s);
      } catch (err) {
        if (!gone) setAuthError(err as ApiError);
      }
    })();
    return () => {
      gone = true;
    };
  }, [gen]);

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href={base} class="brand">
          ipa console
        </Link>
        <nav aria-label="Main">
          <Link href={base}>Tasks</Link>
          <Link href={`${base}inbox`}>Inbox</Link>
          {schema && has(schema, 'Pod', 'queuePosition') && <Link href={`${base}queued`}>Queued</Link>}
          <a href={ideHref}>GraphQL IDE</a>
        </nav>
        <Connection />
        <span class="viewer" data-testid="viewer">
          {viewer ? (
            <>
              <span class="muted">signed in as</span> <strong>{viewer.id}</strong>{' '}
              <span class={`badge role-${viewer.role.toLowerCase()}`}>{viewer.role}</span>
            </>
          ) : authError ? (
            <span class="muted">not signed in</span>
          ) : null}
        </span>
        <TokenBox onChange={() => setGen((g) => g + 1)} />
      </header>
      <OfflineBanner since={offline} />
      <main id="main" tabIndex={-1} class={offline ? 'stale' : undefined}>
        {authError ? (
          <div class="refusal" role="alert">
            <strong>{authError.message}</strong> <span class="code">{authError.code}</span>
            <p>
              {authError.code === 'UNAUTHENTICATED'
                ? 'This server needs an API token: set one above (ipa token create --actor NAME --role viewer|operator|admin).'
                : 'The console could not load.'}
            </p>
          </div>
        ) : !viewer || !schema ? (
          <p class="loading">Loading…</p>
        ) : r.page === 'inbox' ? (
          <InboxPage key={gen} viewer={viewer} />
        ) : r.page === 'queued' ? (
          <QueuedPage key={gen} schema={schema} />
        ) : r.page === 'task' ? (
          <TaskPage key={`${r.id}-${gen}`} id={r.id} viewer={viewer} schema={schema} />
        ) : (
          <TasksPage key={gen} viewer={viewer} schema={schema} runtimes={runtimes} />
        )}
      </main>
    </>
  );
}

const mount = document.getElementById('app')!;
mount.textContent = '';
render(<App />, mount);
