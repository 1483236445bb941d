// The byte-level fixtures in crates/tandem-core/tests/fixtures/hocuspocus/provider-v{4,3} are
// what the installed providers send: capture.mjs captures them again and they must be identical
// (if a provider upgrade changes its frames, run `npm run capture` and review the diff).

import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import test from 'node:test'
import { FIXTURES, captureProviderFrames } from './capture.mjs'
import { STACKS } from './lib/harness.mjs'

for (const stack of STACKS) {
  test(`${stack.major} (${stack.version}): the checked-in provider frames are what this provider sends`, { timeout: 30_000 }, async () => {
    const dir = path.join(FIXTURES, `provider-${stack.major}`)
    assert.equal(readFileSync(path.join(dir, 'VERSION'), 'utf8').trim(), `@hocuspocus/provider ${stack.version}`)
    const frames = await captureProviderFrames(stack)
    const files = readdirSync(dir).filter((f) => f.endsWith('.hex')).sort()
    assert.deepEqual(files, frames.map((f) => `${f.label}.hex`).sort())
    for (const f of frames) assert.equal(readFileSync(path.join(dir, `${f.label}.hex`), 'utf8').trim(), f.hex, f.label)
  })
}
