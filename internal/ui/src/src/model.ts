// The API's shapes as the console reads them, the queries it sends, and the
// contract's rules it mirrors (phase steps, who may do what).
import { has, type Schema } from './api';

export type Role = 'VIEWER' | 'OPERATOR' | 'ADMIN';
export type Viewer = { id: string; role: Role };

export const statuses = ['ACTIVE', 'INACTIVE', 'COMPLETED', 'CANCELLED'] as const;
export const phases = ['SPEC_CLARIFICATION', 'PLANNING', 'DEVELOPMENT', 'REVIEW', 'COMPLETED', 'CANCELLED'] as const;
const workPhases = ['SPEC_CLARIFICATION', 'PLANNING', 'DEVELOPMENT', 'REVIEW'];
export const podStates = ['STARTING', 'RUNNING', 'PAUSED', 'STOPPING', 'STOPPED', 'CRASHED', 'BACKOFF', 'FAILED', 'QUEUED', 'WAITING'] as const;

export type PodCrash = {
  at: string;
  exitCode: number | null;
  signal: string | null;
  reason: string;
  uptimeMs: number;
  message?: string | null;
};

export type Pod = {
  state: string;
  pid?: number | null;
  startedAt?: string | null;
  restarts: number;
  nextAttemptAt?: string | null;
  live?: unknown;
  crashes?: PodCrash[];
  instanceId?: string | null;
  lastExit?: PodExit | null;
};

// PodExit is how the pod last ended.
export type PodExit = { at: string; exitCode: number | null; signal: string | null; durationMs: number; reason: string };

// Artifact is a file a task's pod saved, downloaded from url.
export type Artifact = { name: string; sizeBytes: number; sha256: string; savedAt: string; url: string };

export type Task = {
  id: string;
  title: string;
  description?: string | null;
  status: string;
  phase: string;
  runtime: string;
  runtimeConfig?: unknown;
  metadata?: unknown;
  labels?: Record<string, string> | null;
  createdAt?: string;
  updatedAt: string;
  createdBy?: string;
  version: number;
  restartPolicy?: {
    autoRestart: boolean;
    maxAttempts: number;
    windowSeconds: number;
    initialBackoffMs: number;
    maxBackoffMs: number;
  };
  pod: Pod;
  workspace?: { sizeBytes: number } | null;
  artifacts?: Artifact[];
  parent?: Relative | null;
  children?: { totalCount: number; edges: { node: Relative }[] };
};

// Relative is what the task page shows of a parent or a child.
export type Relative = { id: string; title: string; status: string; pod: { state: string } };

export type Event = {
  id: string;
  version: number;
  position: string;
  type: string;
  data: any;
  actorId: string | null;
  correlationId: string | null;
  occurredAt: string;
};

const opt = (schema: Schema, type: string, field: string, text = field) => (has(schema, type, field) ? ` ${text}` : '');

// rowFields are what the task list shows.
export const rowFields = (s: Schema) =>
  `id title status phase runtime updatedAt version${opt(s, 'Task', 'labels')} pod { state restarts }`;

// taskFields are what the task page shows.
export const taskFields = (s: Schema) => `id title description status phase runtime runtimeConfig metadata
  createdAt updatedAt createdBy version${opt(s, 'Task', 'labels')}
  restartPolicy { autoRestart maxAttempts windowSeconds initialBackoffMs maxBackoffMs }
  pod { state pid startedAt restarts live${opt(s, 'Pod', 'nextAttemptAt')}${opt(s, 'Pod', 'instanceId')}
    crashes(last: 10) { at exitCode signal reason uptimeMs${opt(s, 'PodCrash', 'message')} }${
    opt(s, 'Pod', 'lastExit', 'lastExit { at exitCode signal durationMs reason }')} }${
    opt(s, 'Task', 'workspace', 'workspace { sizeBytes }')}${
    opt(s, 'Task', 'artifacts', 'artifacts { name sizeBytes sha256 savedAt url }')}${
    has(s, 'Task', 'parent') ? `\n  parent { ${relativeFields} }` : ''}${
    has(s, 'Task', 'children') ? `\n  children(first: ${childrenShown}) { totalCount edges { node { ${relativeFields} } } }` : ''}`;

const relativeFields = 'id title status pod { state }';

// childrenShown is how many children the task page lists (most recently
// updated first); the list page filtered by parent shows them all.
export const childrenShown = 50;

export const eventFields = 'id version position type data actorId correlationId occurredAt';

export type Filter = { status: string; phase: string; podState: string; runtime: string; title: string; label: string };

// apiFilter turns the form's filter into a TaskFilter; status overrides the
// form's status (for the counts per status).
export function apiFilter(f: Filter, status?: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const st = status ?? f.status;
  if (st) out.status = [st];
  if (f.phase) out.phase = [f.phase];
  if (f.podState) out.podState = [f.podState];
  if (f.runtime) out.runtime = f.runtime;
  if (f.title.trim()) out.titleContains = f.title.trim();
  const labels = parseLabels(f.label);
  if (labels && Object.keys(labels).length) out.labels = labels;
  return out;
}

// parseLabels reads "k=v, k2=v2"; null when it is not that shape.
export function parseLabels(text: string): Record<string, string> | null {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const p = part.trim();
    if (!p) continue;
    const i = p.indexOf('=');
    if (i <= 0) return null;
    out[p.slice(0, i).trim()] = p.slice(i + 1).trim();
  }
  return out;
}

// matches mirrors TaskFilter on the client, so a live change can be placed
// in (or taken out of) the page on screen.
export function matches(f: Filter, t: Task): boolean {
  if (f.status && t.status !== f.status) return false;
  if (f.phase && t.phase !== f.phase) return false;
  if (f.podState && t.pod.state !== f.podState) return false;
  if (f.runtime && t.runtime !== f.runtime) return false;
  if (f.title.trim() && !t.title.toLowerCase().includes(f.title.trim().toLowerCase())) return false;
  const labels = parseLabels(f.label);
  if (labels && t.labels) {
    for (const [k, v] of Object.entries(labels)) if (t.labels[k] !== v) return false;
  }
  return true;
}

export const isClosed = (t: Task) => t.status === 'COMPLETED' || t.status === 'CANCELLED';

// podRuns: a pod process exists or is about to (stopPod has something to stop).
export const podRuns = (t: Task) => ['STARTING', 'RUNNING', 'PAUSED', 'STOPPING', 'BACKOFF'].includes(t.pod.state);

// phaseSteps are the moves transitionPhase allows: one forward, one back.
export function phaseSteps(phase: string): { forward?: string; back?: string } {
  const i = workPhases.indexOf(phase);
  if (i < 0) return {};
  return { forward: workPhases[i + 1], back: i > 0 ? workPhases[i - 1] : undefined };
}

export const canWrite = (v: Viewer | null) => v?.role === 'OPERATOR' || v?.role === 'ADMIN';

// canRunExec: creating or starting an exec task needs ADMIN unless the
// server was started with --exec-role operator, which the API does not
// tell; an operator's attempt would be refused, so the console does not offer it.
export const canRun = (v: Viewer | null, runtime: string) =>
  runtime === 'exec' ? v?.role === 'ADMIN' : canWrite(v);

export const label = (s: string) => s.charAt(0) + s.slice(1).toLowerCase().replace(/_/g, ' ');

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h ? `${h}h ${m}m ${sec}s` : m ? `${m}m ${sec}s` : `${sec}s`;
}

export const when = (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleString() : '—');
