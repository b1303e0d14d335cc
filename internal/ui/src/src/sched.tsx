// Scheduling in the console: the queue of pods waiting for a concurrency
// slot, in the order they will start, and on a task's page its priority,
// its place in the queue and the dependencies it waits for. Both read only
// fields the server advertises (an older server shows nothing).
import { useCallback, useEffect, useState } from 'preact/hooks';
import { base, gql, has, live, type Schema } from './api';
import { Badge, Link } from './ui';

type Dep = { id: string; title: string; status: string };
type Sched = { priority: number; pod: { state: string; queuePosition: number | null }; waitingFor: Dep[] };

/** The rows of a task page's Pod card about scheduling; version refetches it. */
export function TaskScheduling(props: { id: string; schema: Schema; version: number }) {
  const { id, schema, version } = props;
  const [s, setS] = useState<Sched | null>(null);
  const ok = has(schema, 'Task', 'waitingFor') && has(schema, 'Pod', 'queuePosition');
  useEffect(() => {
    if (!ok) return;
    let gone = false;
    gql<{ task: Sched | null }>(
      `query Sched($id: ID!) { task(id: $id) { priority pod { state queuePosition } waitingFor { id title status } } }`,
      { id },
    ).then(
      (d) => !gone && setS(d.task),
      () => {},
    );
    return () => {
      gone = true;
    };
  }, [id, version, ok]);
  if (!s) return null;
  return (
    <>
      <dt>Priority</dt>
      <dd data-testid="priority">{s.priority}</dd>
      {s.pod.queuePosition != null && (
        <>
          <dt>Queue position</dt>
          <dd data-testid="queue-position">{s.pod.queuePosition}</dd>
        </>
      )}
      {s.waitingFor.length > 0 && (
        <>
          <dt>Waits for</dt>
          <dd data-testid="waiting-for">
            <ul class="plain">
              {s.waitingFor.map((d) => (
                <li key={d.id}>
                  <Link href={`${base}task/${encodeURIComponent(d.id)}`}>{d.title}</Link> <Badge kind="status" value={d.status} />
                </li>
              ))}
            </ul>
          </dd>
        </>
      )}
    </>
  );
}

type Queued = { id: string; title: string; runtime: string; priority: number; pod: { queuePosition: number | null } };

/** The Queued view: every queued pod in start order, refreshed on changes. */
export function QueuedPage(props: { schema: Schema }) {
  const ok = has(props.schema, 'Pod', 'queuePosition'); // queuedTasks came with it
  const [rows, setRows] = useState<Queued[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(() => {
    gql<{ queuedTasks: Queued[] }>(`{ queuedTasks(first: 1000) { id title runtime priority pod { queuePosition } } }`).then(
      (d) => {
        setRows(d.queuedTasks);
        setError(null);
      },
      (err) => setError(String((err as Error).message ?? err)),
    );
  }, []);
  useEffect(() => {
    if (!ok) return;
    load();
    // A queue moves when any task changes: refetch at most twice a second.
    let timer: ReturnType<typeof setTimeout> | null = null;
    const off = live.subscribe(`subscription { taskChanged { id version } }`, () => ({}), () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        load();
      }, 500);
    });
    return () => {
      off();
      if (timer) clearTimeout(timer);
    };
  }, [ok, load]);
  if (!ok) return <p class="muted">This server has no queue.</p>;
  return (
    <section class="card" aria-labelledby="queued-title">
      <h1 id="queued-title">Queued</h1>
      <p class="muted">Pods waiting for a concurrency slot, in the order they will start: higher priority first, then oldest first.</p>
      {error && (
        <div class="refusal" role="alert">
          {error}
        </div>
      )}
      {rows === null ? (
        <p class="loading">Loading…</p>
      ) : rows.length === 0 ? (
        <p data-testid="queue-empty">No pod is queued.</p>
      ) : (
        <div class="tablewrap">
          <table data-testid="queue">
            <thead>
              <tr>
                <th scope="col">Position</th>
                <th scope="col">Task</th>
                <th scope="col">Runtime</th>
                <th scope="col">Priority</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id}>
                  <td>{r.pod.queuePosition ?? '—'}</td>
                  <td>
                    <Link href={`${base}task/${encodeURIComponent(r.id)}`}>{r.title}</Link>
                  </td>
                  <td>{r.runtime}</td>
                  <td>{r.priority}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
