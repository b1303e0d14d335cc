// Parts of the task page and the create dialog: an event's data pretty with
// a raw toggle, the last exit of a pod that is not running, times both
// relative and absolute, and a runtime's example config.
import { useState } from 'preact/hooks';
import type { Runtime } from './main';
import { ago, type Event } from './model';

// EventData shows an event's data as indented JSON, or on one line (raw).
export function EventData({ e }: { e: Event }) {
  const [raw, setRaw] = useState(false);
  const d = e.data;
  if (!d || (typeof d === 'object' && Object.keys(d).length === 0)) return null;
  const text = raw ? JSON.stringify(d) : JSON.stringify(d, null, 2);
  return (
    <>
      <button type="button" class="rawtoggle" aria-pressed={raw} onClick={() => setRaw(!raw)}>
        {raw ? 'pretty' : 'raw'}
      </button>
      {raw ? <code class="data">{text}</code> : <pre class="pretty data mono">{text.length > 4000 ? `${text.slice(0, 4000)}…` : text}</pre>}
    </>
  );
}

// Stamp is a time as "3m ago (14:02:11)", the date too when not today.
export function Stamp(props: { iso: string | null | undefined; now: number }) {
  if (!props.iso) return <>—</>;
  const d = new Date(props.iso);
  const today = d.toDateString() === new Date(props.now).toDateString();
  const abs = today ? d.toLocaleTimeString() : d.toLocaleString();
  return (
    <time dateTime={props.iso} title={d.toLocaleString()}>
      {ago(props.iso, props.now)} ({abs})
    </time>
  );
}

// lastExit is how the pod last ended, from the newest pod_stopped or
// pod_crashed among the events on the page.
export function lastExit(events: Event[]): { at: string; text: string } | null {
  const e = events.find((x) => x.type === 'pod_stopped' || x.type === 'pod_crashed');
  if (!e) return null;
  const d = (e.data || {}) as { reason?: string; exitCode?: number; signal?: string; forced?: boolean };
  const parts = [e.type === 'pod_crashed' ? 'crashed' : 'stopped'];
  if (d.reason) parts.push(d.reason);
  if (d.exitCode !== undefined && d.exitCode !== null) parts.push(`exit code ${d.exitCode}`);
  if (d.signal) parts.push(d.signal);
  if (d.forced) parts.push('killed after the stop timeout');
  return { at: e.occurredAt, text: parts.join(', ') };
}

// Built-in runtimes' example configs, for servers whose Runtime type has no
// exampleConfig field.
const builtinExamples: Record<string, unknown> = {
  demo: { stepMs: 2000 },
  exec: { command: ['sh', '-c', 'echo hello; sleep 5'], env: { GREETING: 'hi' }, timeoutMs: 60000 },
};

export function exampleConfig(runtime: string, runtimes: Runtime[]): string {
  const r = runtimes.find((x) => x.name === runtime) as (Runtime & { exampleConfig?: unknown }) | undefined;
  const ex = r?.exampleConfig ?? builtinExamples[runtime];
  if (ex === undefined || ex === null) return '{}';
  return typeof ex === 'string' ? ex : JSON.stringify(ex, null, 2);
}
