// The web demo end to end: the real `tandem` binary (with the demo built in) on an ephemeral
// port and a temporary data dir, and real Chromium (Debian's, driven by playwright-core) with
// one browser context per person. Every wait is a condition with a deadline; screenshots of
// every step go to target/e2e/.

import assert from 'node:assert/strict'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'

import { chromium } from 'playwright-core'

import { makeTempDir, removeDir, REPO_ROOT, TandemServer, waitFor } from '../../tests/interop/lib/server.mjs'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = path.join(REPO_ROOT, 'target', 'e2e')
const DOC = 'e2e/shared notes'
const DOC_PATH = '/d/e2e/shared%20notes'
/** Longest wait for anything the pages should show. */
const TIMEOUT = 15_000
/** No sandbox (root in a container); no traffic to anything but the test server. */
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'
]
/** What Chromium logs, unavoidably, for every failed connection attempt while the server is down. */
const REFUSED = /WebSocket connection to '.*' failed/

let server
/** Every server process the test started, for the log check at the end. */
const servers = []
let dataDir
let browser
/** name → { context, page, errors } */
const people = new Map()
/** Whether the server is down on purpose (WebSocket failures are expected then). */
let outage = false

/** A distinct colour for each person, so their carets and avatars tell them apart. */
const COLORS = { Alice: '#e11d48', Bob: '#2563eb', Carol: '#059669', Dana: '#d97706', Erin: '#9333ea' }

async function person (name, { viewport = { width: 1280, height: 800 }, path: at = DOC_PATH } = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 })
  const page = await context.newPage()
  const errors = []
  page.on('console', (message) => {
    if (message.type() !== 'error') return
    if (outage && REFUSED.test(message.text())) return
    errors.push(message.text())
  })
  page.on('pageerror', (error) => { errors.push(`uncaught: ${error.message}`) })
  await page.goto(`${server.httpUrl}${at}?name=${encodeURIComponent(name)}&color=${encodeURIComponent(COLORS[name])}`)
  const who = { context, page, errors }
  people.set(name, who)
  return who
}

async function shot (name) {
  await Promise.all([...people.entries()].map(([who, { page }]) =>
    page.screenshot({ path: path.join(SHOTS, `${name}-${who.toLowerCase()}.png`) })))
}

/** The editor's text as the page shows it, without remote carets and their name labels. */
function editorText (page) {
  return page.evaluate(() => {
    const content = document.querySelector('.cm-content')
    if (content === null) return null
    const lines = [...content.querySelectorAll('.cm-line')].map((line) => {
      const copy = line.cloneNode(true)
      copy.querySelectorAll('.cm-ySelectionCaret, .cm-widgetBuffer, .cm-placeholder').forEach((node) => node.remove())
      return copy.textContent
    })
    return lines.join('\n')
  })
}

async function connectionState (page) {
  return page.locator('[data-testid=connection]').getAttribute('data-state')
}

async function waitState (page, state, what) {
  await waitFor(async () => (await connectionState(page)) === state, {
    timeout: TIMEOUT,
    what: `${what} to show ${state}`,
    detail: async () => `state: ${await connectionState(page)}`
  })
}

/** The document as the server has it (HTTP API). */
async function serverText () {
  const response = await fetch(`${server.httpUrl}/docs/${encodeURIComponent(DOC)}/json`)
  if (!response.ok) return null
  return (await response.json()).text ?? null
}

/** Waits until every page and the server hold the same text, and returns it. */
async function converged (pages, mustContain) {
  let texts = []
  await waitFor(async () => {
    texts = [...await Promise.all(pages.map(editorText)), await serverText()]
    return texts.every((text) => text === texts[0]) && mustContain.every((part) => texts[0].includes(part))
  }, { timeout: TIMEOUT, what: 'the pages and the server to hold the same text', detail: () => texts })
  return texts[0]
}

async function type (page, text) {
  await page.locator('.cm-content').click()
  await page.keyboard.press('Control+End')
  await page.keyboard.type(text, { delay: 15 })
}

describe('web demo in Chromium', () => {
  before(async () => {
    await mkdir(SHOTS, { recursive: true })
    dataDir = await makeTempDir('tandem-e2e-')
    server = await new TandemServer({ dataDir, label: 'e2e' }).start()
    servers.push(server)
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
  })

  after(async () => {
    await browser?.close()
    if (server?.running) await server.stop()
    await removeDir(dataDir)
  })

  it('serves the demo from the binary, next to its API', async () => {
    const page = await fetch(`${server.httpUrl}/`)
    assert.equal(page.status, 200)
    assert.match(await page.text(), /<div id="root">/)
    const route = await fetch(`${server.httpUrl}${DOC_PATH}`)
    assert.equal(route.status, 200)
    assert.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200)
    assert.equal((await fetch(`${server.httpUrl}/nope`)).status, 404)
  })

  it('two people typing at the same time end with the same text', async () => {
    const alice = await person('Alice')
    const bob = await person('Bob')
    await waitState(alice.page, 'connected', 'Alice')
    await waitState(bob.page, 'connected', 'Bob')
    await Promise.all([
      type(alice.page, 'Alice writes the introduction. '),
      type(bob.page, 'Bob adds the numbers. ')
    ])
    await converged([alice.page, bob.page], ['Alice writes the introduction. ', 'Bob adds the numbers. '])
    await shot('01-typing')
  })

  it("shows Alice's cursor, name and avatar in Bob's page", async () => {
    const { page } = people.get('Bob')
    await people.get('Alice').page.keyboard.press('Control+Home')
    const label = page.locator('.cm-ySelectionInfo', { hasText: 'Alice' })
    await waitFor(() => label.isVisible(), { timeout: TIMEOUT, what: "Alice's caret label in Bob's editor" })
    await waitFor(() => page.locator('[data-testid=presence] [data-name=Alice]').isVisible(), {
      timeout: TIMEOUT, what: "Alice's avatar in Bob's presence bar"
    })
    await shot('02-cursors')
  })

  it('undoes only your own edits', async () => {
    const alice = people.get('Alice').page
    const bob = people.get('Bob').page
    await type(alice, 'Alice: undo me. ')
    await converged([alice, bob], ['Alice: undo me. '])
    await type(bob, 'Bob stays. ')
    await converged([alice, bob], ['Alice: undo me. Bob stays. '])
    await alice.locator('.cm-content').press('Control+z')
    const text = await converged([alice, bob], ['Bob stays. '])
    assert.ok(!text.includes('Alice: undo me.'), `Alice's edit is still there: ${JSON.stringify(text)}`)
    assert.ok(text.includes('Alice writes the introduction. '), `Alice's earlier edit went too: ${JSON.stringify(text)}`)
  })

  it("delivers Alice's chat message to Bob", async () => {
    const alice = people.get('Alice').page
    const bob = people.get('Bob').page
    await alice.locator('#chat-input').fill('Hello Bob, the intro is done')
    await alice.locator('#chat-input').press('Enter')
    await waitFor(() => bob.locator('[data-testid=chat-message]', { hasText: 'Hello Bob, the intro is done' }).isVisible(), {
      timeout: TIMEOUT, what: "Alice's message in Bob's chat"
    })
    await waitFor(async () => !(await alice.locator('[data-testid=chat-message]', { hasText: 'sending…' }).count()), {
      timeout: TIMEOUT, what: "Alice's message to be acknowledged"
    })
    await shot('03-chat')
  })

  it('keeps editing while the server is down, and says so', async () => {
    const alice = people.get('Alice').page
    const bob = people.get('Bob').page
    outage = true
    await server.stop()
    await waitState(alice, 'reconnecting', 'Alice')
    await waitState(bob, 'reconnecting', 'Bob')
    await type(bob, 'Bob keeps writing offline. ')
    const banner = bob.locator('[data-testid=offline-banner]')
    await waitFor(async () => Number(await banner.getAttribute('data-unsynced')) > 0, {
      timeout: TIMEOUT, what: "Bob's banner to count his local changes"
    })
    assert.match(await banner.innerText(), /local changes are not on the server yet/)
    await shot('04-offline')
  })

  it('reconnects both when the server is back, and they converge', async () => {
    const alice = people.get('Alice').page
    const bob = people.get('Bob').page
    server = await new TandemServer({ dataDir, label: 'e2e-restarted', listen: server.addr }).start()
    servers.push(server)
    await waitState(alice, 'connected', 'Alice')
    await waitState(bob, 'connected', 'Bob')
    outage = false
    await waitFor(async () => (await bob.locator('[data-testid=offline-banner]').count()) === 0, {
      timeout: TIMEOUT, what: "Bob's banner to go once his changes are on the server"
    })
    await converged([alice, bob], ['Alice writes the introduction. ', 'Bob adds the numbers. ', 'Bob keeps writing offline. '])
    await shot('05-reconnected')
  })

  it('gives a newcomer the whole document and the chat history', async () => {
    const carol = await person('Carol')
    await waitState(carol.page, 'connected', 'Carol')
    const text = await converged([...people.values()].map((who) => who.page), ['Bob keeps writing offline. '])
    assert.ok(text.length > 0)
    await waitFor(() => carol.page.locator('[data-testid=chat-message]', { hasText: 'Hello Bob, the intro is done' }).isVisible(), {
      timeout: TIMEOUT, what: 'the chat history in the newcomer\'s page'
    })
    await waitFor(async () => (await carol.page.locator('[data-testid=presence] li.avatar').count()) === 3, {
      timeout: TIMEOUT, what: 'three people in the presence bar'
    })
    await carol.page.getByRole('tab', { name: 'Inspector' }).click()
    await waitFor(async () => (await carol.page.locator('[data-testid=json]').innerText()).includes('Bob keeps writing offline.'), {
      timeout: TIMEOUT, what: 'the document as JSON in the inspector'
    })
    await shot('06-newcomer')
  })

  it('lists the document on the home page and opens it from there', async () => {
    const erin = await person('Erin', { path: '/' })
    const link = erin.page.locator('.doc-list a', { hasText: DOC }).first()
    await waitFor(() => link.isVisible(), { timeout: TIMEOUT, what: 'the document in the home page lists' })
    await link.click()
    await waitState(erin.page, 'connected', 'Erin')
    assert.equal(new URL(erin.page.url()).pathname, DOC_PATH)
    await converged([erin.page, people.get('Alice').page], ['Bob keeps writing offline. '])
    await erin.context.close()
    people.delete('Erin')
  })

  it('fits a phone screen', async () => {
    const dana = await person('Dana', { viewport: { width: 390, height: 844 } })
    await waitState(dana.page, 'connected', 'Dana')
    const overflow = await dana.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone`)
    await dana.page.screenshot({ path: path.join(SHOTS, '07-phone.png') })
  })

  it('logged no warning or error in the server', () => {
    for (const each of servers) {
      const bad = [...each.recordsAt('WARN'), ...each.recordsAt('ERROR')]
        .filter((record) => !JSON.stringify(record).includes('no authentication configured'))
      assert.deepEqual(bad, [], `${each.label} logged:\n${each.diagnostics()}`)
    }
  })

  it('logged no errors in any page', () => {
    for (const [name, { errors }] of people) assert.deepEqual(errors, [], `console errors in ${name}'s page`)
  })
})
