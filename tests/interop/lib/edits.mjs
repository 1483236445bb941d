// Scripted concurrent edits over Y.Text, Y.Map and Y.Array, and the checks on their outcome.
//
// "Concurrent" is guaranteed, not hoped for: every client is in this one process, and each round
// runs all clients' operations interleaved (op k of client 0, op k of client 1, ...) inside one
// synchronous block. No WebSocket message can be delivered during that block, so no client has
// seen any other client's edit of the round before making its own. Each operation is its own
// transaction, so every operation goes out as its own update message.

import assert from 'node:assert/strict'

import { waitConverged } from './harness.mjs'

const tagOf = (i) => `c${i}`

/** Runs `opsPerClient[i][k]` for k = 0.., interleaving clients, in one synchronous block. */
function interleave (clients, opsPerClient) {
  const steps = Math.max(...opsPerClient.map((ops) => ops.length))
  for (let k = 0; k < steps; k++) {
    clients.forEach((c, i) => {
      const op = opsPerClient[i][k]
      if (op) op(c)
    })
  }
}

/** Round 0, from whatever state: inserts everywhere, a map key all clients set, nested types. */
export function round0 (clients) {
  interleave(clients, clients.map((_, i) => {
    const tag = tagOf(i)
    return [
      (c) => c.text.insert(0, `[${tag}]`),
      (c) => c.map.set(`from-${tag}`, i),
      (c) => c.map.set('conflict', tag),
      (c) => c.array.push([`${tag}-0`, `${tag}-1`]),
      (c) => c.map.set(`nested-${tag}`, new c.Y.Map([['k', tag]])),
      (c) => {
        const inner = new c.Y.Array()
        c.array.insert(0, [inner])
        inner.push([i, tag])
      },
      (c) => c.text.insert(c.text.length, ` ünï😀${tag}`)
    ]
  }))
}

export function check0 (snap, n) {
  const tags = Array.from({ length: n }, (_, i) => tagOf(i))
  const text = snap.text.map((d) => d.insert).join('')
  for (const [i, tag] of tags.entries()) {
    assert.ok(text.includes(`[${tag}]`), `text has [${tag}]: ${text}`)
    assert.ok(text.includes(` ünï😀${tag}`), `text has ünï😀${tag}: ${text}`)
    assert.equal(snap.map[`from-${tag}`], i)
    assert.deepEqual(snap.map[`nested-${tag}`], { k: tag })
    assert.ok(snap.array.includes(`${tag}-0`) && snap.array.includes(`${tag}-1`), `array has ${tag}-0/1: ${JSON.stringify(snap.array)}`)
    assert.ok(snap.array.some((x) => Array.isArray(x) && x[0] === i && x[1] === tag), `array has nested [${i}, ${tag}]`)
  }
  assert.ok(tags.includes(snap.map.conflict), `conflict key resolved to one writer: ${snap.map.conflict}`)
}

/** Round 1, on a converged state: formatting, deletions, delete-vs-set on a map key. */
export function round1 (clients) {
  const n = clients.length
  interleave(clients, clients.map((_, i) => {
    const tag = tagOf(i)
    return [
      (c) => c.text.insert(c.text.length, ` end-${tag}`),
      (c) => c.text.format(i, 3, { bold: true, by: tag }),
      (c) => c.text.delete(0, 1),
      (c) => i === 0 ? c.map.delete(`from-${tagOf(1 % n)}`) : c.map.set(`from-${tag}`, `rewritten-${tag}`),
      (c) => c.array.delete(0, 1),
      (c) => c.array.push([`${tag}-2`])
    ]
  }))
}

export function check1 (snap, n) {
  const text = snap.text.map((d) => d.insert).join('')
  for (let i = 0; i < n; i++) {
    const tag = tagOf(i)
    assert.ok(text.includes(` end-${tag}`), `text has end-${tag}: ${text}`)
    assert.ok(snap.array.includes(`${tag}-2`), `array has ${tag}-2`)
    // A concurrent set wins over a delete of the value the deleter had seen.
    if (i > 0) assert.equal(snap.map[`from-${tag}`], `rewritten-${tag}`)
  }
  assert.ok(snap.text.some((d) => d.attributes && d.attributes.bold === true), `text has bold formatting: ${JSON.stringify(snap.text)}`)
}

/** Round 2: many small interleaved operations (each its own update message). */
export function round2 (clients, count = 25) {
  interleave(clients, clients.map((_, i) => {
    const tag = tagOf(i)
    const ops = []
    for (let j = 0; j < count; j++) {
      ops.push((c) => c.text.insert((j * 7) % (c.text.length + 1), String.fromCharCode(97 + i)))
      ops.push((c) => c.array.push([`${tag}:${j}`]))
      ops.push((c) => c.map.set(`k${j % 5}`, `${tag}:${j}`))
    }
    return ops
  }))
}

export function check2 (snap, before, n, count = 25) {
  // Y.Text lengths are in UTF-16 code units, like String#length.
  const len = (s) => s.text.reduce((a, d) => a + d.insert.length, 0)
  assert.equal(len(snap), len(before) + n * count, 'every concurrent text insert is kept')
  assert.equal(snap.array.length, before.array.length + n * count, 'every concurrent array push is kept')
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < count; j++) assert.ok(snap.array.includes(`${tagOf(i)}:${j}`), `array has ${tagOf(i)}:${j}`)
  }
  for (let k = 0; k < 5; k++) assert.match(snap.map[`k${k}`], /^c\d+:\d+$/)
}

/**
 * Runs rounds 0-2 over `clients` (all connected and synced), waiting for convergence after each
 * round and checking the merged content. Returns the final converged snapshot.
 */
export async function concurrentEditing (clients) {
  const n = clients.length
  round0(clients)
  const s0 = await waitConverged(clients, { what: 'convergence after round 0 (concurrent inserts)' })
  check0(s0, n)
  round1(clients)
  const s1 = await waitConverged(clients, { what: 'convergence after round 1 (format/delete)' })
  check1(s1, n)
  round2(clients)
  const s2 = await waitConverged(clients, { what: 'convergence after round 2 (many small ops)' })
  check2(s2, s1, n)
  return s2
}
