// The inbox: the requests pods made to people, across tasks, answered and
// approved in place, following the event feed live. And the conversation
// on a task page: messages, requests and answers in the stream's order.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { gql, live } from './api';
import type { Viewer } from './model';
import { Link, Refusal, taskHref } from './ui';

export type InputRequest = {
  id: string;
  kind: 'QUESTION' | 'APPROVAL' | 'CHOICE';
  prompt: string;
  options: string[];
  state: 'PENDING' | 'ANSWERED' | 'EXPIRED' | 'CANCELLED';
  createdAt: string;
  expiresAt: string | null;
  answer: string | null;
  approved: boolean | null;
  answeredBy: string | null;
  comment: string | null;
  task: { id: string; title: string };
};

const requestFields = 'id kind prompt options state createdAt expiresAt answer approved answeredBy comment task { id title }';

// The events that change what the inbox shows.
const inboxTypes = ['input_requested', 'input_answered', 'input_expired', 'task_completed', 'task_cancelled'];

const canWrite = (v: Viewer) => v.role === 'OPERATOR' || v.role === 'ADMIN';

// useCoalesced runs fn at most once at a time, once more when asked meanwhile.
function useCoalesced(fn: () => Promise<void>): () => void {
  const p = useRef({ running: false, again: false });
  const run = useCallback(() => {
    if (p.current.running) {
      p.current.again = true;
      return;
    }
    p.current.running = true;
    fn().finally(() => {
      p.current.running = false;
      if (p.current.again) {
        p.current.again = false;
        run();
      }
    });
  }, [fn]);
  return run;
}

/** Answer controls for one pending request: approve/reject, a choice, or free text. */
export function AnswerControls(props: { request: InputRequest; onDone: () => void }) {
  const r = props.request;
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [refused, setRefused] = useState<unknown>(null);
  const send = async (vars: { answer?: string; approve?: boolean }) => {
    setBusy(true);
    setRefused(null);
    try {
      await gql(
        `mutation Answer($r: ID!, $answer: String, $approve: Boolean) { answerRequest(requestId: $r, answer: $answer, approve: $approve) { request { id state } } }`,
        { r: r.id, ...vars },
      );
      props.onDone();
    } catch (err) {
      setRefused(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="answer" data-request={r.id}>
      {r.kind === 'APPROVAL' ? (
        <>
          <button type="button" class="primary" disabled={busy} onClick={() => send({ approve: true })}>
            Approve
          </button>{' '}
          <button type="button" disabled={busy} onClick={() => send({ approve: false })}>
            Reject
          </button>
        </>
      ) : r.kind === 'CHOICE' ? (
        r.options.map((o) => (
          <button type="button" key={o} disabled={busy} onClick={() => send({ answer: o })}>
            {o}
          </button>
        ))
      ) : (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            if (text.trim()) send({ answer: text });
          }}
        >
          <label>
            <span class="sr-only">Answer</span>
            <input name="answer" value={text} placeholder="Your answer" onInput={(e) => setText(e.currentTarget.value)} />
          </label>{' '}
          <button type="submit" disabled={busy || !text.trim()}>
            Answer
          </button>
        </form>
      )}
      {refused ? <Refusal error={refused} onDismiss={() => setRefused(null)} /> : null}
    </div>
  );
}

export function InboxPage(props: { viewer: Viewer }) {
  const [list, setList] = useState<InputRequest[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const fetchList = useCallback(async () => {
    try {
      const d = await gql<{ inputRequests: { edges: { node: InputRequest }[] } }>(
        `query Inbox { inputRequests(state: PENDING, first: 200) { edges { node { ${requestFields} } } } }`,
      );
      setList(d.inputRequests.edges.map((e) => e.node));
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, []);
  const refresh = useCoalesced(fetchList);
  useEffect(() => {
    fetchList();
    // Follow the global feed from now: any request's change refetches.
    let after: string | null = null;
    const stop = live.subscribe<{ events: { position: string } }>(
      `subscription Inbox($after: String, $types: [String!]) { events(afterPosition: $after, types: $types) { position } }`,
      () => ({ after, types: inboxTypes }),
      ({ events: e }) => {
        after = e.position;
        refresh();
      },
    );
    const off = live.onReconnect(refresh);
    return () => {
      stop();
      off();
    };
  }, []);

  return (
    <section class="inbox">
      <h1>Inbox</h1>
      <p class="muted">Requests pods made to people, oldest first. They leave the list once answered, expired or cancelled.</p>
      {error ? <Refusal error={error} /> : null}
      {list === null ? (
        <p class="loading">Loading…</p>
      ) : list.length === 0 ? (
        <p class="empty">Nothing is waiting for an answer.</p>
      ) : (
        <ul class="requests">
          {list.map((r) => (
            <li key={r.id} class="request" data-kind={r.kind}>
              <div>
                <span class="badge">{r.kind}</span> <Link href={taskHref(r.task.id)}>{r.task.title}</Link>
                <span class="muted"> · asked {new Date(r.createdAt).toLocaleString()}</span>
                {r.expiresAt ? <span class="muted"> · expires {new Date(r.expiresAt).toLocaleString()}</span> : null}
              </div>
              <p class="prompt">{r.prompt}</p>
              {canWrite(props.viewer) ? <AnswerControls request={r} onDone={refresh} /> : null}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

type Message = { id: string; text: string; sentBy: string; sentAt: string; delivered: boolean };
type Entry = { at: string; kind: 'message'; m: Message } | { at: string; kind: 'request'; r: InputRequest };

/** The task's conversation: messages and requests with their answers, in order, and a send box. */
export function Conversation(props: { taskId: string; version: number; open: boolean; viewer: Viewer }) {
  const [entries, setEntries] = useState<Entry[]>([]);
  const [text, setText] = useState('');
  const [refused, setRefused] = useState<unknown>(null);
  const load = useCallback(async () => {
    try {
      const d = await gql<{
        task: { messages: { edges: { node: Message }[] }; pendingRequests: InputRequest[] } | null;
        inputRequests: { edges: { node: InputRequest }[] };
      }>(
        `query Conversation($id: ID!) { task(id: $id) { messages(last: 100) { edges { node { id text sentBy sentAt delivered } } } } }`,
        { id: props.taskId },
      ).then(async (m) => {
        // Requests of every state come from the task's input_requested events.
        const ev = await gql<{ task: { events: { edges: { node: { data: { requestId: string } } }[] } } | null }>(
          `query Asked($id: ID!) { task(id: $id) { events(last: 100, types: ["input_requested"]) { edges { node { data } } } } }`,
          { id: props.taskId },
        );
        const ids = (ev.task?.events.edges || []).map((e) => e.node.data.requestId);
        const reqs = await Promise.all(
          ids.map((rid) => gql<{ node: InputRequest | null }>(`query R($id: ID!) { node(id: $id) { ... on InputRequest { ${requestFields} } } }`, { id: rid })),
        );
        return { ...m, reqs: reqs.map((x) => x.node).filter((x): x is InputRequest => !!x) };
      });
      const out: Entry[] = [];
      for (const e of d.task?.messages.edges || []) out.push({ at: e.node.sentAt, kind: 'message', m: e.node });
      for (const r of d.reqs) out.push({ at: r.createdAt, kind: 'request', r });
      out.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
      setEntries(out);
    } catch (err) {
      setRefused(err);
    }
  }, [props.taskId]);
  useEffect(() => {
    load();
  }, [load, props.version]);

  const send = async () => {
    setRefused(null);
    try {
      await gql(`mutation Send($id: ID!, $text: String!) { sendMessage(taskId: $id, text: $text) { message { id } } }`, {
        id: props.taskId,
        text,
      });
      setText('');
      load();
    } catch (err) {
      setRefused(err);
    }
  };

  return (
    <section class="conversation" aria-label="Conversation">
      <h2>Conversation</h2>
      {entries.length === 0 ? <p class="empty">No messages or requests yet.</p> : null}
      <ol class="conversation-list">
        {entries.map((e) =>
          e.kind === 'message' ? (
            <li key={e.m.id} class="msg">
              <strong>{e.m.sentBy}</strong> <span class="muted">{new Date(e.m.sentAt).toLocaleTimeString()}</span>
              {e.m.delivered ? <span class="muted"> · delivered</span> : <span class="muted"> · not delivered yet</span>}
              <p>{e.m.text}</p>
            </li>
          ) : (
            <li key={e.r.id} class="req" data-state={e.r.state}>
              <span class="badge">{e.r.kind}</span> <span class="muted">{new Date(e.r.createdAt).toLocaleTimeString()}</span>
              <p class="prompt">{e.r.prompt}</p>
              {e.r.state === 'PENDING' ? (
                canWrite(props.viewer) ? (
                  <AnswerControls request={e.r} onDone={load} />
                ) : (
                  <p class="muted">waiting for an answer</p>
                )
              ) : (
                <p class="answered">
                  {e.r.state === 'ANSWERED'
                    ? `${e.r.approved === null ? e.r.answer ?? '' : e.r.approved ? 'approved' : 'rejected'} by ${e.r.answeredBy}`
                    : e.r.state.toLowerCase()}
                  {e.r.comment ? ` — ${e.r.comment}` : ''}
                </p>
              )}
            </li>
          ),
        )}
      </ol>
      {props.open && canWrite(props.viewer) ? (
        <form
          class="send"
          onSubmit={(e) => {
            e.preventDefault();
            if (text.trim()) send();
          }}
        >
          <label>
            <span class="sr-only">Message to the pod</span>
            <input name="message" value={text} placeholder="Message to the pod" onInput={(e) => setText(e.currentTarget.value)} />
          </label>{' '}
          <button type="submit" disabled={!text.trim()}>
            Send
          </button>
        </form>
      ) : null}
      {refused ? <Refusal error={refused} onDismiss={() => setRefused(null)} /> : null}
    </section>
  );
}
