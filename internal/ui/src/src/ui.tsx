// Small shared pieces: links that route without reloading, badges, the
// refusal box, and modal dialogs built on <dialog> (focus trap, Escape and
// focus return come from the browser).
import type { ComponentChildren, TargetedEvent } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, base } from './api';
import { label } from './model';

export function navigate(path: string) {
  history.pushState(null, '', path);
  dispatchEvent(new PopStateEvent('popstate'));
}

export function Link(props: { href: string; children: ComponentChildren; class?: string }) {
  const onClick = (e: MouseEvent) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(props.href);
  };
  return (
    <a href={props.href} class={props.class} onClick={onClick}>
      {props.children}
    </a>
  );
}

export const taskHref = (id: string) => `${base}task/${encodeURIComponent(id)}`;

export function Badge({ kind, value }: { kind: string; value: string }) {
  return <span class={`badge ${kind}-${value.toLowerCase()}`}>{label(value)}</span>;
}

// Refusal shows what the server said: message, code and reason.
export function Refusal({ error, onDismiss }: { error: unknown; onDismiss?: () => void }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : new ApiError(String((error as Error)?.message || error));
  return (
    <div class="refusal" role="alert">
      <strong>{e.message}</strong>
      {(e.code || e.reason) && (
        <span class="code">
          {' '}
          {e.code}
          {e.reason ? ` / ${e.reason}` : ''}
        </span>
      )}
      {onDismiss && (
        <button type="button" class="link" onClick={onDismiss} aria-label="Dismiss">
          ×
        </button>
      )}
    </div>
  );
}

// Dialog is a modal <dialog>; it opens when mounted and calls onClose when
// dismissed (Escape, Cancel button).
export function Dialog(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  class?: string;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current!;
    if (!d.open) d.showModal();
    const onCancel = (e: Event) => {
      e.preventDefault();
      props.onClose();
    };
    d.addEventListener('cancel', onCancel);
    return () => {
      d.removeEventListener('cancel', onCancel);
      if (d.open) d.close();
    };
  }, []);
  return (
    <dialog ref={ref} class={props.class} aria-labelledby="dialog-title">
      <h2 id="dialog-title">{props.title}</h2>
      {props.children}
    </dialog>
  );
}

// Confirm asks before a destructive action; with `reason` it also asks for a
// (required) reason and passes it on.
export function Confirm(props: {
  title: string;
  body: string;
  confirm: string;
  reason?: boolean;
  onConfirm: (reason: string) => Promise<void>;
  onClose: () => void;
}) {
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: TargetedEvent<HTMLFormElement>) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm(reason.trim());
      props.onClose();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <Dialog title={props.title} onClose={props.onClose}>
      <form onSubmit={submit}>
        <p>{props.body}</p>
        {props.reason && (
          <label class="field">
            Reason
            <input
              name="reason"
              required
              value={reason}
              onInput={(e) => setReason(e.currentTarget.value)}
              autoFocus
            />
          </label>
        )}
        <Refusal error={error} />
        <div class="buttons">
          <button type="button" onClick={props.onClose}>
            Back
          </button>
          <button type="submit" class="danger" disabled={busy || (props.reason && !reason.trim())}>
            {props.confirm}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

// useNow ticks every second, for ages and uptimes.
export function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

export function Json({ value }: { value: unknown }) {
  if (value === null || value === undefined) return <span class="muted">none</span>;
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}
