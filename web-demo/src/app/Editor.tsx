import { defaultKeymap, indentWithTab } from '@codemirror/commands'
import { markdown } from '@codemirror/lang-markdown'
import { HighlightStyle, syntaxHighlighting } from '@codemirror/language'
import { EditorState } from '@codemirror/state'
import {
  drawSelection, dropCursor, EditorView, highlightActiveLine, highlightActiveLineGutter, keymap, lineNumbers, placeholder
} from '@codemirror/view'
import { tags } from '@lezer/highlight'
import { useEffect, useRef, useState } from 'react'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
import * as Y from 'yjs'

import type { ConnectionStatus, Peer, SyncState, TandemDocument } from '../tandem'
import { typingLine } from './PresenceBar'

/** Markdown, quietly: headings stand out, markup characters step back. */
const markdownStyle = HighlightStyle.define([
  { tag: tags.heading1, fontWeight: '700', fontSize: '1.3em', color: '#0f172a' },
  { tag: tags.heading2, fontWeight: '700', fontSize: '1.12em', color: '#0f172a' },
  { tag: [tags.heading3, tags.heading4, tags.heading5, tags.heading6], fontWeight: '700', color: '#0f172a' },
  { tag: tags.strong, fontWeight: '700' },
  { tag: tags.emphasis, fontStyle: 'italic' },
  { tag: tags.strikethrough, textDecoration: 'line-through' },
  { tag: [tags.link, tags.url], color: '#2563eb' },
  { tag: tags.monospace, color: '#be185d' },
  { tag: tags.quote, color: '#475569', fontStyle: 'italic' },
  { tag: [tags.processingInstruction, tags.meta, tags.contentSeparator], color: '#94a3b8' }
])

/** Remote carets always show their owner's name (y-codemirror shows it on hover only). */
const theme = EditorView.theme({
  '&': { height: '100%', fontSize: '15px' },
  '.cm-scroller': { fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace', lineHeight: '1.6' },
  '.cm-content': { padding: '24px 0 48px' },
  '.cm-line': { padding: '0 24px 0 12px' },
  '.cm-gutters': { background: 'transparent', border: 'none', color: '#94a3b8' },
  '.cm-activeLine': { background: 'rgba(148, 163, 184, 0.08)' },
  '.cm-activeLineGutter': { background: 'transparent', color: '#475569' },
  '.cm-ySelectionInfo': {
    opacity: '1',
    fontFamily: 'system-ui, sans-serif',
    fontSize: '11px',
    fontWeight: '600',
    padding: '1px 5px',
    borderRadius: '4px 4px 4px 0',
    top: '-1.35em'
  },
  '.cm-ySelectionCaretDot': { display: 'none' }
})

/** The collaborative editor: CodeMirror 6 bound to the document's `text` by y-codemirror. */
export function Editor ({ live, peers, sync, status }: {
  live: TandemDocument
  peers: Peer[]
  sync: SyncState
  status: ConnectionStatus
}) {
  const parent = useRef<HTMLDivElement>(null)
  const [undo, setUndo] = useState<Y.UndoManager | null>(null)
  const [stack, setStack] = useState({ undo: 0, redo: 0 })
  const [length, setLength] = useState(0)

  useEffect(() => {
    if (parent.current === null) return
    const ytext = live.doc.getText('text')
    // Tracks only this page's own edits: y-codemirror registers its own origin.
    const undoManager = new Y.UndoManager(ytext)
    const view = new EditorView({
      parent: parent.current,
      state: EditorState.create({
        doc: ytext.toString(),
        extensions: [
          lineNumbers(),
          highlightActiveLineGutter(),
          highlightActiveLine(),
          drawSelection(),
          dropCursor(),
          EditorView.lineWrapping,
          markdown(),
          syntaxHighlighting(markdownStyle),
          placeholder('Start typing. Everyone here sees it as you type.'),
          keymap.of([...yUndoManagerKeymap, ...defaultKeymap, indentWithTab]),
          yCollab(ytext, live.awareness, { undoManager }),
          theme,
          EditorView.contentAttributes.of({ 'aria-label': 'Document text', 'data-testid': 'editor' }),
          // Moving the cursor by hand starts a new undo step, as in CodeMirror's own history:
          // edits in two places are two steps even when made within the capture timeout.
          EditorView.updateListener.of((update) => {
            if (update.transactions.some((tr) => tr.isUserEvent('select'))) undoManager.stopCapturing()
          })
        ]
      })
    })
    const onStack = (): void => { setStack({ undo: undoManager.undoStack.length, redo: undoManager.redoStack.length }) }
    const onText = (): void => { setLength(ytext.length) }
    undoManager.on('stack-item-added', onStack)
    undoManager.on('stack-item-popped', onStack)
    undoManager.on('stack-cleared', onStack)
    ytext.observe(onText)
    onText()
    setUndo(undoManager)
    return () => {
      ytext.unobserve(onText)
      undoManager.destroy()
      view.destroy()
      setUndo(null)
    }
  }, [live])

  const typing = typingLine(peers)
  const saved = status.state !== 'connected'
    ? 'Offline edits are kept'
    : sync.unsyncedChanges > 0 ? 'Saving…' : 'All changes on the server'
  return (
    <div className='editor'>
      <div className='editor-toolbar'>
        <button type='button' className='ghost small' disabled={stack.undo === 0} onClick={() => undo?.undo()} title='Undo your last edit (Ctrl+Z)'>Undo</button>
        <button type='button' className='ghost small' disabled={stack.redo === 0} onClick={() => undo?.redo()} title='Redo (Ctrl+Y, Ctrl+Shift+Z)'>Redo</button>
        <span className='muted small'>Undo and redo change only your own edits.</span>
      </div>
      <div className='editor-host' ref={parent} />
      <footer className='editor-footer'>
        <span className='typing' aria-live='polite' data-testid='typing'>{typing ?? ''}</span>
        <span className='muted small'>{length.toLocaleString()} characters · {saved}</span>
      </footer>
    </div>
  )
}
