// An honest disconnected state: when the live connection is lost, a banner
// says so and since when, and the page's data is marked stale (main.stale),
// instead of a small dot changing colour while "Running" stays on screen.
import { useEffect, useState } from 'preact/hooks';
import { live } from './api';

// useOffline is the time the connection was lost, or null while it is up
// (or has not come up yet).
export function useOffline(): Date | null {
  const [since, setSince] = useState<Date | null>(null);
  useEffect(() => {
    let wasUp = live.state === 'connected';
    return live.onState(() => {
      if (live.state === 'connected') {
        wasUp = true;
        setSince(null);
      } else if (wasUp && (live.state === 'reconnecting' || live.state === 'closed')) {
        setSince((s) => s ?? new Date());
      }
    });
  }, []);
  return since;
}

export function OfflineBanner(props: { since: Date | null }) {
  if (!props.since) return null;
  return (
    <p class="offline" role="alert" data-testid="offline">
      Connection to the server lost at {props.since.toLocaleTimeString()}: what is shown may be out of date.{' '}
      {live.state === 'closed' ? 'Not reconnecting.' : 'Reconnecting…'}
      {live.state === 'closed' && (
        <button type="button" onClick={() => live.reset()}>
          Retry now
        </button>
      )}
    </p>
  );
}
