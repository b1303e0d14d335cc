// Keyboard shortcuts of the task list: j/k move the selection, Enter opens
// the selected task, / goes to the title filter, ? shows this list. Keys
// typed into a field or with a modifier are left alone.
import { useEffect, useRef, useState } from 'preact/hooks';
import { Dialog } from './ui';

export function useListKeys(rows: number, on: { open: (i: number) => void; search: () => void }) {
  const [selected, setSelected] = useState(-1);
  const [help, setHelp] = useState(false);
  const ref = useRef({ rows, on, selected });
  ref.current = { rows, on, selected };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target as HTMLElement | null;
      if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
      if (document.querySelector('dialog[open]') && e.key !== '?') return;
      const { rows, on, selected } = ref.current;
      switch (e.key) {
        case 'j':
        case 'ArrowDown':
          if (e.key === 'ArrowDown' && selected < 0) return; // leave page scrolling alone until j is used
          setSelected(Math.min(rows - 1, selected + 1));
          break;
        case 'k':
        case 'ArrowUp':
          if (e.key === 'ArrowUp' && selected < 0) return;
          setSelected(Math.max(0, selected - 1));
          break;
        case 'Enter':
          if (selected < 0 || (t && t.closest('a, button'))) return;
          on.open(selected);
          break;
        case '/':
          on.search();
          break;
        case '?':
          setHelp((h) => !h);
          break;
        default:
          return;
      }
      e.preventDefault();
    };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, []);

  // Keep the selection on the page when rows come and go.
  useEffect(() => {
    if (selected >= rows) setSelected(rows - 1);
  }, [rows]);
  useEffect(() => {
    if (selected >= 0) document.querySelector('tr.selected')?.scrollIntoView({ block: 'nearest' });
  }, [selected]);

  return { selected, help, closeHelp: () => setHelp(false) };
}

export function KeysHelp(props: { onClose: () => void }) {
  return (
    <Dialog title="Keyboard shortcuts" onClose={props.onClose} class="keys">
      <dl>
        <dt><kbd>j</kbd> / <kbd>k</kbd></dt>
        <dd>next / previous task</dd>
        <dt><kbd>Enter</kbd></dt>
        <dd>open the selected task</dd>
        <dt><kbd>/</kbd></dt>
        <dd>filter by title</dd>
        <dt><kbd>?</kbd></dt>
        <dd>show or hide this list</dd>
      </dl>
      <div class="buttons">
        <button type="button" onClick={props.onClose}>
          Close
        </button>
      </div>
    </Dialog>
  );
}
