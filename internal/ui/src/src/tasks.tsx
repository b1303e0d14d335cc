// The task list: filters, keyset pages, counts per status, and live changes
// through taskChanged.
import type { TargetedEvent } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { gql, has, live, type Schema } from './api';
import type { Runtime } from './main';
import {
  ago,
  apiFilter,
  canRun,
  canWrite,
  label,
  matches,
  parseLabels,
  phases,
  podStates,
  rowFields,
  statuses,
  type Filter,
  type Task,
  type Viewer,
} from './model';
import { Badge, Dialog, Link, navigate, Refusal, taskHref, useNow } from './ui';
import { filterFromURL, filterToURL } from './urlstate';
import { KeysHelp, useListKeys } from './keys';
import { exampleConfig } from './taskextras';

const pageSize = 25;
const noFilter: Filter = { status: '', phase: '', podState: '', runtime: '', title: '', label: '' };

type Page = { rows: Task[]; hasNext: boolean; endCursor: string | null; total: number };

export function TasksPage(props: { viewer: Viewer; schema: Schema; runtimes: Runtime[] }) {
  const { schema } = props;
  const [filter, setFilter] = useState<Filter>(() => filterFromURL(noFilter));
  const [title, setTitle] = useState(filter.title); // typed; applied after a pause
  const [cursors, setCursors] = useState<(string | null)[]>([null]); // the `after` of each page so far
  const [page, setPage] = useState<Page | null>(null);
  const [counts, setCounts] = useState<Record<string, number>>({});
  const [error, setError] = useState<unknown>(null);
  const [changed, setChanged] = useState<Record<string, number>>({});
  const [creating, setCreating] = useState(false);
  const now = useNow();
  const hasLabels = has(schema, 'Task', 'labels');
  const labelFilter = has(schema, 'TaskFilter', 'labels');
  const podStateFilter = has(schema, 'TaskFilter', 'podState');

  const after = cursors[cursors.length - 1];
  const filterRef = useRef(filter);
  filterRef.current = filter;
  const firstPageRef = useRef(true);
  firstPageRef.current = cursors.length === 1;

  const fetchPage = useCallback(async () => {
    const f = filterRef.current;
    const q = `query Tasks($filter: TaskFilter, $first: Int, $after: String,
        $active: TaskFilter, $inactive: TaskFilter, $completed: TaskFilter, $cancelled: TaskFilter) {
      tasks(filter: $filter, first: $first, after: $after) {
        totalCount pageInfo { hasNextPage endCursor } edges { node { ${rowFields(schema)} } }
      }
      ACTIVE: taskCount(filter: $active) INACTIVE: taskCount(filter: $inactive)
      COMPLETED: taskCount(filter: $completed) CANCELLED: taskCount(filter: $cancelled)
    }`;
    try {
      const d = await gql<any>(q, {
        filter: apiFilter(f),
        first: pageSize,
        after,
        active: apiFilter(f, 'ACTIVE'),
        inactive: apiFilter(f, 'INACTIVE'),
        completed: apiFilter(f, 'COMPLETED'),
        cancelled: apiFilter(f, 'CANCELLED'),
      });
      if (filterRef.current !== f) return; // a newer filter is on its way
      setPage({
        rows: d.tasks.edges.map((e: { node: Task }) => e.node),
        hasNext: d.tasks.pageInfo.hasNextPage,
        endCursor: d.tasks.pageInfo.endCursor,
        total: d.tasks.totalCount,
      });
      setCounts({ ACTIVE: d.ACTIVE, INACTIVE: d.INACTIVE, COMPLETED: d.COMPLETED, CANCELLED: d.CANCELLED });
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, [schema, after]);

  useEffect(() => {
    fetchPage();
  }, [fetchPage, filter]);
  useEffect(() => filterToURL(filter), [filter]);

  const titleInput = useRef<HTMLInputElement>(null);
  const keys = useListKeys(page?.rows.length ?? 0, {
    open: (i) => page && page.rows[i] && navigate(taskHref(page.rows[i].id)),
    search: () => titleInput.current?.focus(),
  });

  // The title filter applies 250 ms after typing stops.
  useEffect(() => {
    if (title === filter.title) return;
    const t = setTimeout(() => change({ title }), 250);
    return () => clearTimeout(t);
  }, [title]);

  // Counts are refetched at most once a second while changes stream in.
  const countTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const refreshCounts = useCallback(() => {
    if (countTimer.current) return;
    countTimer.current = setTimeout(async () => {
      countTimer.current = undefined;
      const f = filterRef.current;
      const vars: Record<string, unknown> = {};
      for (const s of statuses) vars[s] = apiFilter(f, s);
      try {
        const d = await gql<Record<string, number>>(
          `query Counts(${statuses.map((s) => `$${s}: TaskFilter`).join(', ')}) {
            ${statuses.map((s) => `${s}: taskCount(filter: $${s})`).join(' ')} }`,
          vars,
        );
        if (filterRef.current === f) setCounts(d);
      } catch {
        /* the next change or reconnect tries again */
      }
    }, 1000);
  }, []);
  useEffect(() => () => clearTimeout(countTimer.current), []);

  // Live: every changed task; the page places it by the filter on screen.
  useEffect(() => {
    const stop = live.subscribe<{ taskChanged: Task }>(
      `subscription { taskChanged { ${rowFields(schema)} } }`,
      () => ({}),
      ({ taskChanged: t }) => {
        const f = filterRef.current;
        setPage((p) => {
          if (!p) return p;
          const i = p.rows.findIndex((r) => r.id === t.id);
          const fits = matches(f, t);
          let rows = p.rows;
          let total = p.total;
          if (i >= 0 && !fits) {
            rows = rows.filter((r) => r.id !== t.id);
            total--;
          } else if (i >= 0) {
            if (rows[i].version > t.version) return p; // an older view arrived late
            rows = rows.slice();
            rows[i] = t;
            if (firstPageRef.current) rows.sort((a, b) => Date.parse(b.updatedAt) - Date.parse(a.updatedAt));
          } else if (fits && firstPageRef.current) {
            rows = [t, ...rows].slice(0, pageSize);
            total++;
          } else {
            return p;
          }
          return { ...p, rows, total };
        });
        setChanged((c) => ({ ...c, [t.id]: Date.now() }));
        refreshCounts();
      },
    );
    const off = live.onReconnect(() => fetchPage());
    return () => {
      stop();
      off();
    };
  }, [schema, fetchPage]);

  function change(patch: Partial<Filter>) {
    setFilter((f) => ({ ...f, ...patch }));
    setCursors([null]);
  }

  const select = (name: keyof Filter, options: readonly string[], text: string, fmt = label) => (
    <label class="field">
      {text}
      <select name={name} value={filter[name]} onChange={(e) => change({ [name]: e.currentTarget.value })}>
        <option value="">any</option>
        {options.map((o) => (
          <option value={o}>{fmt(o)}</option>
        ))}
      </select>
    </label>
  );

  const labelsOk = parseLabels(filter.label) !== null;

  return (
    <section aria-labelledby="tasks-title">
      <div class="pagehead">
        <h1 id="tasks-title">Tasks</h1>
        {canWrite(props.viewer) && (
          <button type="button" class="primary" onClick={() => setCreating(true)}>
            New task
          </button>
        )}
      </div>

      <ul class="counts" aria-label="Tasks per status">
        {statuses.map((s) => (
          <li>
            <button
              type="button"
              class={filter.status === s ? 'count selected' : 'count'}
              aria-pressed={filter.status === s}
              onClick={() => change({ status: filter.status === s ? '' : s })}
              data-status={s}
            >
              <span class="n">{counts[s] ?? '…'}</span> {label(s)}
            </button>
          </li>
        ))}
      </ul>

      <form class="filters" role="search" aria-label="Filter tasks" onSubmit={(e) => e.preventDefault()}>
        <label class="field grow">
          Title contains
          <input type="search" name="title" ref={titleInput} value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
        </label>
        {select('status', statuses, 'Status')}
        {select('phase', phases, 'Phase')}
        {podStateFilter && select('podState', podStates, 'Pod state')}
        {select('runtime', props.runtimes.map((r) => r.name), 'Runtime', (s) => s)}
        {labelFilter && (
          <label class="field">
            Labels
            <input
              name="label"
              placeholder="key=value, …"
              value={filter.label}
              aria-invalid={!labelsOk}
              onChange={(e) => change({ label: e.currentTarget.value })}
            />
          </label>
        )}
      </form>

      <Refusal error={error} />

      <div class="tablewrap">
        <table class="tasks" aria-describedby="tasks-summary">
          <thead>
            <tr>
              <th scope="col">Title</th>
              <th scope="col">Status</th>
              <th scope="col">Phase</th>
              <th scope="col">Pod</th>
              <th scope="col" class="num">Restarts</th>
              <th scope="col">Runtime</th>
              {hasLabels && <th scope="col">Labels</th>}
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {page?.rows.map((t, i) => (
              <tr
                key={t.id}
                data-id={t.id}
                aria-selected={keys.selected === i ? true : undefined}
                class={[changed[t.id] && now - changed[t.id] < 2000 ? 'flash' : '', keys.selected === i ? 'selected' : ''].join(' ').trim()}
              >
                <td class="title">
                  <Link href={taskHref(t.id)}>{t.title}</Link>
                </td>
                <td>
                  <Badge kind="status" value={t.status} />
                </td>
                <td>{label(t.phase)}</td>
                <td>
                  <Badge kind="pod" value={t.pod.state} />
                </td>
                <td class="num">{t.pod.restarts}</td>
                <td>{t.runtime}</td>
                {hasLabels && (
                  <td class="labels">
                    {Object.entries(t.labels || {}).map(([k, v]) => (
                      <span class="chip">
                        {k}
                        {v ? `=${v}` : ''}
                      </span>
                    ))}
                  </td>
                )}
                <td>
                  <time dateTime={t.updatedAt} title={new Date(t.updatedAt).toLocaleString()}>
                    {ago(t.updatedAt, now)}
                  </time>
                </td>
              </tr>
            ))}
            {page && page.rows.length === 0 && (
              <tr>
                <td colSpan={hasLabels ? 8 : 7} class="empty">
                  No tasks match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <nav class="pager" aria-label="Pages">
        <span id="tasks-summary" aria-live="polite">
          {page ? `${page.total} task${page.total === 1 ? '' : 's'} · page ${cursors.length}` : 'Loading…'}
        </span>
        <button type="button" disabled={cursors.length === 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
          Previous page
        </button>
        <button
          type="button"
          disabled={!page?.hasNext}
          onClick={() => page?.endCursor && setCursors((c) => [...c, page.endCursor])}
        >
          Next page
        </button>
      </nav>

      {keys.help && <KeysHelp onClose={keys.closeHelp} />}
      {creating && (
        <CreateTask
          viewer={props.viewer}
          schema={schema}
          runtimes={props.runtimes}
          onClose={() => setCreating(false)}
        />
      )}
    </section>
  );
}

/** A runtime's example config, pretty-printed; '' when it declares none. */
function exampleOf(runtimes: Runtime[], name: string): string {
  const ex = runtimes.find((r) => r.name === name)?.exampleConfig;
  return ex === undefined || ex === null ? '' : JSON.stringify(ex, null, 2);
}

type ConfigField = { path: string; type: string; required: boolean; description: string };

/** The fields a config schema describes (nested objects as a.b), for the form's help. */
function configFields(schema: unknown, prefix = '', depth = 0): ConfigField[] {
  const s = schema as { properties?: Record<string, unknown>; required?: unknown } | null;
  if (!s || typeof s !== 'object' || !s.properties || typeof s.properties !== 'object' || depth > 3) return [];
  const required = Array.isArray(s.required) ? (s.required as unknown[]) : [];
  const out: ConfigField[] = [];
  for (const [name, raw] of Object.entries(s.properties)) {
    const p = (raw || {}) as { type?: unknown; description?: unknown; properties?: unknown };
    const type = Array.isArray(p.type) ? p.type.join(' | ') : typeof p.type === 'string' ? p.type : '';
    out.push({
      path: prefix + name,
      type,
      required: required.includes(name),
      description: typeof p.description === 'string' ? p.description : '',
    });
    out.push(...configFields(p, `${prefix}${name}.`, depth + 1));
  }
  return out;
}

function CreateTask(props: { viewer: Viewer; schema: Schema; runtimes: Runtime[]; onClose: () => void }) {
  const runnable = props.runtimes.filter((r) => canRun(props.viewer, r.name));
  const first = runnable.find((r) => r.name === 'demo')?.name || runnable[0]?.name || 'demo';
  const [form, setForm] = useState({
    title: '',
    description: '',
    runtime: first,
    config: exampleOf(props.runtimes, first),
    labels: '',
    autoStart: false,
    autoRestart: false,
    maxAttempts: '',
    windowSeconds: '',
  });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const hasLabels = has(props.schema, 'CreateTaskInput', 'labels');
  const set = (patch: Partial<typeof form>) => setForm((f) => ({ ...f, ...patch }));

  const submit = async (e: TargetedEvent<HTMLFormElement>) => {
    e.preventDefault();
    setError(null);
    const input: Record<string, unknown> = { title: form.title, runtime: form.runtime, autoStart: form.autoStart };
    if (form.description.trim()) input.description = form.description;
    if (form.config.trim()) {
      try {
        input.runtimeConfig = JSON.parse(form.config);
      } catch (err) {
        setError(new Error(`Runtime config is not valid JSON: ${(err as Error).message}`));
        return;
      }
    }
    if (hasLabels && form.labels.trim()) {
      const l = parseLabels(form.labels);
      if (!l) {
        setError(new Error('Labels are written key=value, separated by commas.'));
        return;
      }
      input.labels = l;
    }
    const policy: Record<string, unknown> = { autoRestart: form.autoRestart };
    if (form.maxAttempts) policy.maxAttempts = Number(form.maxAttempts);
    if (form.windowSeconds) policy.windowSeconds = Number(form.windowSeconds);
    input.restartPolicy = policy;
    setBusy(true);
    try {
      const d = await gql<{ createTask: { task: { id: string } } }>(
        'mutation Create($input: CreateTaskInput!) { createTask(input: $input) { task { id } } }',
        { input },
      );
      props.onClose();
      navigate(taskHref(d.createTask.task.id));
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <Dialog title="New task" onClose={props.onClose} class="wide">
      <form onSubmit={submit} class="create">
        <label class="field">
          Title
          <input name="title" required maxLength={255} value={form.title} onInput={(e) => set({ title: e.currentTarget.value })} autoFocus />
        </label>
        <label class="field">
          Description
          <textarea name="description" rows={3} value={form.description} onInput={(e) => set({ description: e.currentTarget.value })} />
        </label>
        <label class="field">
          Runtime
          <select
            name="runtime"
            value={form.runtime}
            onChange={(e) => {
              const runtime = e.currentTarget.value;
              // The new runtime's example replaces the config unless it was edited.
              const untouched = form.config.trim() === '' || form.config === exampleOf(props.runtimes, form.runtime);
              set(untouched ? { runtime, config: exampleOf(props.runtimes, runtime) } : { runtime });
            }}
          >
            {props.runtimes.map((r) => (
              <option value={r.name} disabled={!canRun(props.viewer, r.name)}>
                {r.name}
                {r.description ? ` — ${r.description}` : ''}
                {canRun(props.viewer, r.name) ? '' : ' (needs ADMIN)'}
              </option>
            ))}
          </select>
        </label>
        <label class="field">
          Runtime config (JSON)
          <textarea
            name="runtimeConfig"
            rows={6}
            class="mono"
            placeholder={`for example:\n${exampleConfig(form.runtime, props.runtimes)}`}
            value={form.config}
            onInput={(e) => set({ config: e.currentTarget.value })}
          />
        </label>
        <ConfigHelp runtime={props.runtimes.find((r) => r.name === form.runtime)} />
        {hasLabels && (
          <label class="field">
            Labels
            <input name="labels" placeholder="team=ops, tier=1" value={form.labels} onInput={(e) => set({ labels: e.currentTarget.value })} />
          </label>
        )}
        <fieldset>
          <legend>Restart policy</legend>
          <label class="check">
            <input type="checkbox" name="autoRestart" checked={form.autoRestart} onChange={(e) => set({ autoRestart: e.currentTarget.checked })} />
            Restart automatically after a crash
          </label>
          <div class="row">
            <label class="field">
              Max attempts
              <input name="maxAttempts" type="number" min={1} placeholder="server default" value={form.maxAttempts} onInput={(e) => set({ maxAttempts: e.currentTarget.value })} />
            </label>
            <label class="field">
              Window (seconds)
              <input name="windowSeconds" type="number" min={1} placeholder="server default" value={form.windowSeconds} onInput={(e) => set({ windowSeconds: e.currentTarget.value })} />
            </label>
          </div>
        </fieldset>
        <label class="check">
          <input type="checkbox" name="autoStart" checked={form.autoStart} onChange={(e) => set({ autoStart: e.currentTarget.checked })} />
          Start the pod right away
        </label>
        <Refusal error={error} />
        <div class="buttons">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="primary" disabled={busy}>
            Create
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** The fields of the selected runtime's config schema, with their descriptions. */
function ConfigHelp(props: { runtime: Runtime | undefined }) {
  const fields = configFields(props.runtime?.configSchema);
  if (fields.length === 0) return null;
  return (
    <dl class="config-help" aria-label="Runtime config fields">
      {fields.map((f) => (
        <>
          <dt>
            <code>{f.path}</code>
            {f.type && <span class="muted"> {f.type}</span>}
            {f.required && <span class="muted"> (required)</span>}
          </dt>
          <dd>{f.description || '—'}</dd>
        </>
      ))}
    </dl>
  );
}
