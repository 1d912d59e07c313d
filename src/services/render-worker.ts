import { parentPort } from 'node:worker_threads'
import { BlockAnswers, rowRenderer, type EntityBlock, type JoinFeature, type OutputFormat, type OutputLayout, type RowRenderer } from '../domain/training-output.js'

/**
 * A render thread (src/services/render-pool.ts): renders answered blocks of training sets into
 * text, for the main thread to send. Messages (each tagged with the training set's session):
 * `open` makes a renderer, `block` renders one block and posts its text in chunks, then `done`,
 * `close` drops the renderer. A failure is posted as `error` for the session.
 */

export interface OpenMessage { type: 'open', session: number, format: OutputFormat, layout: OutputLayout }
export interface BlockMessage {
  type: 'block'
  session: number
  features: JoinFeature[]
  size: number
  t: Float64Array
  rank: Int32Array
  order: Int32Array
  entityStart: Int32Array
  entityIds: string[]
  status: Uint8Array
  num: Float64Array
  text: Array<string | null>
  eventTime: Float64Array
}
export interface CloseMessage { type: 'close', session: number }
export type RenderRequest = OpenMessage | BlockMessage | CloseMessage

export type RenderReply =
  | { session: 0, type: 'ready' }
  | { session: number, type: 'chunk', text: string }
  | { session: number, type: 'done' }
  | { session: number, type: 'error', message: string }

/** Rows rendered per chunk posted back. */
export const WORKER_CHUNK_ROWS = 512

const renderers = new Map<number, RowRenderer>()

function renderBlock (m: BlockMessage, post: (reply: RenderReply) => void): void {
  const renderer = renderers.get(m.session)
  if (renderer === undefined) throw new Error(`render thread: no open session ${m.session}`)
  // each row's entity, from the block's grouping (what the main thread's entityAt gives)
  const rowEntity = new Int32Array(m.size)
  for (let e = 0; e + 1 < m.entityStart.length; e++) {
    for (let k = m.entityStart[e]; k < m.entityStart[e + 1]; k++) rowEntity[m.order[k]] = e
  }
  const block: EntityBlock = {
    size: m.size, t: m.t, entityIds: m.entityIds, entityStart: m.entityStart, order: m.order, rank: m.rank,
    sortedT: new Float64Array(0), minT: new Float64Array(0), maxT: new Float64Array(0),
  }
  const answers = new BlockAnswers(block, m.features, { status: m.status, num: m.num, text: m.text, eventTime: m.eventTime })
  const rows = { answers, entityAt: (r: number) => m.entityIds[rowEntity[r]], extraAt: () => ({}) }
  for (let from = 0; from < m.size; from += WORKER_CHUNK_ROWS) {
    post({ session: m.session, type: 'chunk', text: renderer.rows(rows, from, Math.min(m.size, from + WORKER_CHUNK_ROWS)) })
  }
}

/** Handles one request; exported for tests (which run it on the main thread). */
export function handleRenderRequest (m: RenderRequest, post: (reply: RenderReply) => void): void {
  try {
    if (m.type === 'open') renderers.set(m.session, rowRenderer(m.format, m.layout))
    else if (m.type === 'close') renderers.delete(m.session)
    else {
      renderBlock(m, post)
      post({ session: m.session, type: 'done' })
    }
  } catch (err) {
    post({ session: m.session, type: 'error', message: (err as Error).message })
  }
}

if (parentPort !== null) {
  const port = parentPort
  port.on('message', (m: RenderRequest) => { handleRenderRequest(m, (reply) => port.postMessage(reply)) })
  port.postMessage({ session: 0, type: 'ready' } satisfies RenderReply)
}
