// One task: its fields, its pod, its event timeline and output following
// live through taskEvents, and the actions the viewer's role allows.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { base, download, gql, live, type Schema } from './api';
import { TaskScheduling } from './sched';
import {
  canRun,
  canWrite,
  duration,
  eventFields,
  isClosed,
  label,
  phaseSteps,
  podRuns,
  taskFields,
  when,
  type Artifact,
  type Event,
  type Task,
  type Viewer,
} from './model';
import { Badge, Confirm, Json, Link, Refusal, taskHref, useNow } from './ui';
import { EventData, Stamp, lastExit } from './taskextras';
import { Conversation } from './inbox';

// How far back the page reads the stream when it opens, and how much it
// keeps: the newest events and output lines are what an operator watches.
const backlog = 500;
const keepLines = 1000;

type Line = { v: number; stream: string; text: string; at: string };

export function TaskPage(props: { id: string; viewer: Viewer; schema: Schema }) {
  const { id, schema } = props;
  const [task, setTask] = useState<Task | null | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [refused, setRefused] = useState<unknown>(null);
  const [events, setEvents] = useState<Event[]>([]);
  const [lines, setLines] = useState<Line[]>([]);
  const lastVersion = useRef(0);
  const now = useNow();

  const fetchTask = useCallback(async () => {
    try {
      const d = await gql<{ task: Task | null }>(`query Task($id: ID!) { task(id: $id) { ${taskFields(schema)} } }`, { id });
      setTask((old) => (old && d.task && old.version > d.task.version ? old : d.task));
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, [id, schema]);

  // Refetches are coalesced: at most one in flight and one queued.
  const pending = useRef<{ running: boolean; again: boolean }>({ running: false, again: false });
  const refresh = useCallback(() => {
    const p = pending.current;
    if (p.running) {
      p.again = true;
      return;
    }
    p.running = true;
    fetchTask().finally(() => {
      p.running = false;
      if (p.again) {
        p.again = false;
        refresh();
      }
    });
  }, [fetchTask]);

  useEffect(() => {
    fetchTask();
  }, [fetchTask]);

  const known = task !== undefined && task !== null;
  const startVersion = useRef<number | null>(null);
  if (known && startVersion.current === null) startVersion.current = Math.max(0, task!.version - backlog);

  // The stream, from a little before the version the page opened at; on
  // reconnect it resumes after the last version seen (duplicates are
  // dropped by version).
  useEffect(() => {
    if (!known) return;
    const stop = live.subscribe<{ taskEvents: Event }>(
      `subscription Events($id: ID!, $after: Int) { taskEvents(taskId: $id, afterVersion: $after) { ${eventFields} } }`,
      () => ({ id, after: Math.max(lastVersion.current, startVersion.current || 0) }),
      ({ taskEvents: e }) => {
        if (e.version <= lastVersion.current) return;
        lastVersion.current = e.version;
        if (e.type === 'pod_output') {
          const add: Line[] = (e.data?.lines || []).map((l: { stream: string; text: string }) => ({
            v: e.version,
            stream: l.stream,
            text: l.text,
            at: e.occurredAt,
          }));
          if (e.data?.dropped) add.push({ v: e.version, stream: 'note', text: `… ${e.data.dropped} lines dropped by the runtime`, at: e.occurredAt });
          setLines((ls) => [...ls, ...add].slice(-keepLines));
        } else {
          setEvents((es) => [e, ...es].slice(0, backlog));
        }
        refresh();
      },
    );
    const off = live.onReconnect(refresh);
    return () => {
      stop();
      off();
    };
  }, [known, id]);

  // Live state and pid are not events: poll them while a pod runs and the
  // page is visible, twice a second, so the page does not lag the pod.
  const running = known && task!.pod.state !== 'STOPPED';
  useEffect(() => {
    if (!running) return;
    const tick = () => {
      if (!document.hidden) refresh();
    };
    const t = setInterval(tick, 500);
    document.addEventListener('visibilitychange', tick);
    return () => {
      clearInterval(t);
      document.removeEventListener('visibilitychange', tick);
    };
  }, [running, refresh]);
  const exit = lastExit(events);

  if (task === undefined) return error ? <Refusal error={error} /> : <p class="loading">Loading…</p>;
  if (task === null) {
    return (
      <section>
        <h1>No such task</h1>
        <p>
          There is no task {id}. <Link href={base}>Back to the tasks</Link>
        </p>
      </section>
    );
  }

  const pod = task.pod;
  return (
    <section aria-labelledby="task-title" class="taskpage">
      <p class="crumbs">
        <Link href={base}>Tasks</Link> /
      </p>
      <div class="pagehead">
        <h1 id="task-title">{task.title}</h1>
        <Badge kind="status" value={task.status} />
        {/* A closed task's phase says what its status says: show it once. */}
        {label(task.phase) !== label(task.status) && (
          <span class="phase" data-testid="phase">
            {label(task.phase)}
          </span>
        )}
      </div>
      <Refusal error={error} />
      {canWrite(props.viewer) && !isClosed(task) && (
        <Actions task={task} viewer={props.viewer} onDone={refresh} onRefused={setRefused} />
      )}
      {/* Outside the actions: a refusal stays readable when the refetch
          that follows it shows the task closed. */}
      <Refusal error={refused} onDismiss={() => setRefused(null)} />

      <div class="grid">
        <section class="card" aria-labelledby="fields-title">
          <h2 id="fields-title">Task</h2>
          <dl>
            <dt>ID</dt>
            <dd class="mono">{task.id}</dd>
            <dt>Runtime</dt>
            <dd>{task.runtime}</dd>
            <dt>Version</dt>
            <dd>{task.version}</dd>
            <dt>Created</dt>
            <dd>
              {when(task.createdAt)} by {task.createdBy}
            </dd>
            <dt>Updated</dt>
            <dd>
              <Stamp iso={task.updatedAt} now={now} />
            </dd>
            {task.labels && Object.keys(task.labels).length > 0 && (
              <>
                <dt>Labels</dt>
                <dd>
                  {Object.entries(task.labels).map(([k, v]) => (
                    <span class="chip">
                      {k}
                      {v ? `=${v}` : ''}
                    </span>
                  ))}
                </dd>
              </>
            )}
            {task.restartPolicy && (
              <>
                <dt>Restart policy</dt>
                <dd>
                  {task.restartPolicy.autoRestart
                    ? `automatic, at most ${task.restartPolicy.maxAttempts} in ${task.restartPolicy.windowSeconds}s (back-off ${task.restartPolicy.initialBackoffMs}–${task.restartPolicy.maxBackoffMs} ms)`
                    : 'off'}
                </dd>
              </>
            )}
          </dl>
          {task.description && <p class="description">{task.description}</p>}
          <details>
            <summary>Runtime config and metadata</summary>
            <Json value={task.runtimeConfig} />
            <Json value={task.metadata} />
          </details>
        </section>

        <section class="card" aria-labelledby="pod-title">
          <h2 id="pod-title">Pod</h2>
          <dl>
            <dt>State</dt>
            <dd>
              <Badge kind="pod" value={pod.state} />
            </dd>
            <dt>PID</dt>
            <dd>{pod.pid ?? '—'}</dd>
            <dt>Uptime</dt>
            <dd>{pod.startedAt && podRuns(task) ? duration(now - Date.parse(pod.startedAt)) : '—'}</dd>
            <dt>Restarts</dt>
            <dd>{pod.restarts}</dd>
            {!podRuns(task) && exit && (
              <>
                <dt>Last exit</dt>
                <dd data-testid="last-exit">
                  {exit.text}
                  {pod.lastExit ? ` after ${duration(pod.lastExit.durationMs)}` : ''}, <Stamp iso={exit.at} now={now} />
                </dd>
              </>
            )}
            {pod.nextAttemptAt && (
              <>
                <dt>Next attempt</dt>
                <dd>{when(pod.nextAttemptAt)}</dd>
              </>
            )}
            {pod.instanceId && (
              <>
                <dt>Instance</dt>
                <dd class="mono">{pod.instanceId}</dd>
              </>
            )}
            {pod.lastExit && (podRuns(task) || !exit) && (
              <>
                <dt>Last exit</dt>
                <dd data-testid="last-exit">
                  {pod.lastExit.signal ? `killed by ${pod.lastExit.signal}` : `exit code ${pod.lastExit.exitCode ?? '—'}`} ({pod.lastExit.reason})
                  {' after '}
                  {duration(pod.lastExit.durationMs)}, {when(pod.lastExit.at)}
                </dd>
              </>
            )}
            {task.workspace && (
              <>
                <dt>Workspace</dt>
                <dd>{task.workspace.sizeBytes} bytes</dd>
              </>
            )}
            <TaskScheduling id={task.id} schema={schema} version={task.version} />
          </dl>
          <h3>Live state</h3>
          <Json value={pod.live} />
          <h3>Crashes</h3>
          {pod.crashes && pod.crashes.length > 0 ? (
            <div class="tablewrap">
              <table class="crashes">
                <thead>
                  <tr>
                    <th scope="col">At</th>
                    <th scope="col">Reason</th>
                    <th scope="col">Signal</th>
                    <th scope="col">Exit code</th>
                    <th scope="col">Uptime</th>
                  </tr>
                </thead>
                <tbody>
                  {pod.crashes.map((c) => (
                    <tr>
                      <td>{when(c.at)}</td>
                      <td>
                        {c.reason}
                        {c.message ? <div class="muted">{c.message}</div> : null}
                      </td>
                      <td>{c.signal || '—'}</td>
                      <td>{c.exitCode ?? '—'}</td>
                      <td>{duration(c.uptimeMs)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : (
            <p class="muted">None recorded.</p>
          )}
        </section>
      </div>

      {task.artifacts && task.artifacts.length > 0 && <Artifacts artifacts={task.artifacts} onRefused={setRefused} />}

      <Family task={task} />
      <Conversation taskId={task.id} version={task.version} open={task.status === 'ACTIVE' || task.status === 'INACTIVE'} viewer={props.viewer} />

      <div class="grid">
        <section class="card" aria-labelledby="timeline-title">
          <h2 id="timeline-title">Events</h2>
          <ol class="timeline" aria-live="polite" aria-relevant="additions">
            {events.map((e) => (
              <li key={e.id} data-type={e.type}>
                <span class="v">#{e.version}</span> <strong class="type">{e.type}</strong>{' '}
                <Stamp iso={e.occurredAt} now={now} />
                {e.actorId && <span class="muted"> by {e.actorId}</span>}
                <EventData e={e} />
              </li>
            ))}
          </ol>
          {events.length === 0 && <p class="muted">Waiting for events…</p>}
        </section>
        <section class="card" aria-labelledby="log-title">
          <h2 id="log-title">Output</h2>
          <Log lines={lines} />
        </section>
      </div>
    </section>
  );
}

// Artifacts lists the files the task's pods saved; each downloads with the
// console's credential.
function Artifacts({ artifacts, onRefused }: { artifacts: Artifact[]; onRefused: (err: unknown) => void }) {
  return (
    <section class="card" aria-labelledby="artifacts-title">
      <h2 id="artifacts-title">Artifacts</h2>
      <div class="tablewrap">
        <table class="artifacts">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Size</th>
              <th scope="col">Saved</th>
              <th scope="col">SHA-256</th>
            </tr>
          </thead>
          <tbody>
            {artifacts.map((a) => (
              <tr key={a.name}>
                <td>
                  <button type="button" class="link" onClick={() => download(a.url, a.name).catch(onRefused)}>
                    {a.name}
                  </button>
                </td>
                <td>{a.sizeBytes} bytes</td>
                <td>{when(a.savedAt)}</td>
                <td class="mono" title={a.sha256}>
                  {a.sha256.slice(0, 12)}…
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

// Family shows the task's parent and children, when it has any.
function Family({ task }: { task: Task }) {
  const children = task.children?.edges.map((e) => e.node) ?? [];
  if (!task.parent && children.length === 0) return null;
  const more = (task.children?.totalCount ?? 0) - children.length;
  return (
    <section class="card family" aria-labelledby="family-title">
      <h2 id="family-title">Parent and children</h2>
      {task.parent && (
        <p data-testid="parent">
          Parent: <Link href={taskHref(task.parent.id)}>{task.parent.title}</Link>{' '}
          <Badge kind="status" value={task.parent.status} />
        </p>
      )}
      {children.length > 0 && (
        <div class="tablewrap">
          <table class="children" aria-label="Children">
            <thead>
              <tr>
                <th scope="col">Child</th>
                <th scope="col">Status</th>
                <th scope="col">Pod</th>
              </tr>
            </thead>
            <tbody>
              {children.map((c) => (
                <tr key={c.id} data-id={c.id}>
                  <td>
                    <Link href={taskHref(c.id)}>{c.title}</Link>
                  </td>
                  <td>
                    <Badge kind="status" value={c.status} />
                  </td>
                  <td>
                    <Badge kind="pod" value={c.pod.state} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {more > 0 && <p class="muted">and {more} more, most recently updated first</p>}
    </section>
  );
}


// Log shows the output tail and keeps it scrolled to the end unless the
// reader scrolled up.
function Log({ lines }: { lines: Line[] }) {
  const ref = useRef<HTMLPreElement>(null);
  const stick = useRef(true);
  useEffect(() => {
    const el = ref.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lines]);
  if (lines.length === 0) return <p class="muted">No output yet.</p>;
  return (
    <pre
      class="log"
      ref={ref}
      tabIndex={0}
      aria-label="Output lines"
      onScroll={(e) => {
        const el = e.currentTarget;
        stick.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
      }}
    >
      {lines.map((l) => (
        <div class={`line ${l.stream}`}>{l.text}</div>
      ))}
    </pre>
  );
}

type Pending = { title: string; body: string; confirm: string; reason?: boolean; run: (reason: string) => Promise<void> };

function Actions(props: { task: Task; viewer: Viewer; onDone: () => void; onRefused: (err: unknown) => void }) {
  const { task, viewer, onDone, onRefused } = props;
  const [busy, setBusy] = useState(false);
  const [confirm, setConfirm] = useState<Pending | null>(null);
  const steps = phaseSteps(task.phase);
  const mayRun = canRun(viewer, task.runtime);
  const notAllowed = mayRun ? undefined : `Starting an ${task.runtime} pod needs the ADMIN role.`;

  const mutate = async (query: string, vars: Record<string, unknown>) => {
    await gql(query, { id: task.id, ...vars });
    onDone();
  };
  const act = async (query: string, vars: Record<string, unknown> = {}) => {
    setBusy(true);
    onRefused(null);
    try {
      await mutate(query, vars);
    } catch (err) {
      onRefused(err);
      onDone(); // the refusal likely means the view is stale
    } finally {
      setBusy(false);
    }
  };
  const move = (to: string) =>
    // expectedVersion: the move was chosen from what is on screen; if the
    // task changed meanwhile the server refuses with VERSION_CONFLICT.
    act(
      'mutation Move($id: ID!, $to: TaskPhase!, $v: Int) { transitionPhase(taskId: $id, to: $to, expectedVersion: $v) { task { id } } }',
      { to, v: task.version },
    );

  return (
    <div class="actions" role="group" aria-label="Actions">
      {!podRuns(task) && (
        <button
          type="button"
          disabled={busy || !mayRun}
          title={notAllowed}
          onClick={() => act('mutation Start($id: ID!) { startPod(taskId: $id) { started } }')}
        >
          Start pod
        </button>
      )}
      {podRuns(task) && (
        <button
          type="button"
          disabled={busy}
          onClick={() =>
            setConfirm({
              title: 'Stop the pod?',
              body: `The pod of “${task.title}” is stopped gracefully, then forcibly after a timeout.`,
              confirm: 'Stop pod',
              run: () => mutate('mutation Stop($id: ID!) { stopPod(taskId: $id, reason: "stopped from the console") { task { id } } }', {}),
            })
          }
        >
          Stop pod
        </button>
      )}
      {task.pod.state === 'RUNNING' && (
        <button type="button" disabled={busy} onClick={() => act('mutation Pause($id: ID!) { pausePod(taskId: $id) { task { id } } }')}>
          Pause pod
        </button>
      )}
      {task.pod.state === 'PAUSED' && (
        <button type="button" disabled={busy} onClick={() => act('mutation Resume($id: ID!) { resumePod(taskId: $id) { task { id } } }')}>
          Resume pod
        </button>
      )}
      <button
        type="button"
        disabled={busy || !mayRun}
        title={notAllowed}
        onClick={() =>
          setConfirm({
            title: 'Restart the pod?',
            body: 'A running pod is stopped first, then a new one starts.',
            confirm: 'Restart pod',
            run: () => mutate('mutation Restart($id: ID!) { restartPod(taskId: $id) { task { id } } }', {}),
          })
        }
      >
        Restart pod
      </button>
      {steps.back && (
        <button type="button" disabled={busy} onClick={() => move(steps.back!)}>
          ← Back to {label(steps.back)}
        </button>
      )}
      {steps.forward && (
        <button type="button" disabled={busy} onClick={() => move(steps.forward!)}>
          Move to {label(steps.forward)} →
        </button>
      )}
      <button
        type="button"
        disabled={busy}
        onClick={() =>
          setConfirm({
            title: 'Complete the task?',
            body: 'A running pod is stopped first. A completed task cannot be reopened.',
            confirm: 'Complete task',
            run: () => mutate('mutation Complete($id: ID!) { completeTask(taskId: $id) { task { id } } }', {}),
          })
        }
      >
        Complete
      </button>
      <button
        type="button"
        class="danger"
        disabled={busy}
        onClick={() =>
          setConfirm({
            title: 'Cancel the task?',
            body: 'A running pod is stopped first. A cancelled task cannot be reopened.',
            confirm: 'Cancel task',
            reason: true,
            run: (reason) => mutate('mutation Cancel($id: ID!, $reason: String!) { cancelTask(taskId: $id, reason: $reason) { task { id } } }', { reason }),
          })
        }
      >
        Cancel task
      </button>
      {confirm && (
        <Confirm
          title={confirm.title}
          body={confirm.body}
          confirm={confirm.confirm}
          reason={confirm.reason}
          onConfirm={confirm.run}
          onClose={() => setConfirm(null)}
        />
      )}
    </div>
  );
}
