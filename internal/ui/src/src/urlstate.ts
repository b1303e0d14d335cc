// The task list's filters live in the page's query string, so a filtered
// view can be shared, bookmarked and reloaded: ?status=ACTIVE&title=export.
import type { Filter } from './model';

const keys: (keyof Filter)[] = ['status', 'phase', 'podState', 'runtime', 'title', 'label'];

export function filterFromURL(empty: Filter): Filter {
  const q = new URLSearchParams(location.search);
  const f = { ...empty };
  for (const k of keys) {
    const v = q.get(k);
    if (v !== null) f[k] = v;
  }
  return f;
}

// filterToURL replaces the query string (no new history entry per
// keystroke) with the filter's non-empty fields.
export function filterToURL(f: Filter) {
  const q = new URLSearchParams(location.search);
  for (const k of keys) {
    if (f[k]) q.set(k, f[k]);
    else q.delete(k);
  }
  const s = q.toString();
  const url = location.pathname + (s ? `?${s}` : '') + location.hash;
  if (url !== location.pathname + location.search + location.hash) history.replaceState(history.state, '', url);
}
