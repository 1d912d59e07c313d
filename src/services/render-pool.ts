import { Worker } from 'node:worker_threads'
import type { AnsweredRows, OutputFormat, OutputLayout } from '../domain/training-output.js'
import type { BlockMessage, RenderReply, RenderRequest } from './render-worker.js'

/**
 * Render threads for training sets. Writing a large training set's text (numbers digit by
 * digit, timestamps, the CSV or JSON around them) is about a third of the service's CPU per
 * request; on the main thread it takes turns with decoding and merging the next block. Here a
 * block's answers are handed to a render thread (its typed arrays transferred, not copied) and
 * the main thread goes on with the next block while the text comes back in chunks, in order.
 *
 * One session per training set, pinned to one thread (a renderer keeps state between blocks:
 * JSON's separators, the entity ids' rendered bytes). A thread that fails takes its sessions'
 * streams down with it (as a failure of the join would) and is replaced on next use; one that
 * fails before it could load (`onUnavailable`) turns the pool off: rows are then written on the
 * main thread, as with TRAINING_RENDER_THREADS=0.
 */
export class RenderPool {
  private readonly workers: Array<Worker | undefined>
  /** Every thread started and not yet exited (a failed one may still be running). */
  private readonly live = new Set<Worker>()
  private readonly sessions = new Map<number, RenderSession>()
  private nextSession = 1
  private closed = false
  private unavailable = false

  constructor (readonly threads: number, private readonly onUnavailable: (err: Error) => void = () => {}) {
    this.workers = new Array<Worker | undefined>(threads).fill(undefined)
  }

  /** A session rendering one training set, or undefined when the pool has no threads. */
  open (format: OutputFormat, layout: OutputLayout): RenderSession | undefined {
    if (this.threads === 0 || this.closed || this.unavailable) return undefined
    const id = this.nextSession++
    const slot = id % this.threads
    const worker = this.worker(slot)
    const session = new RenderSession(id, worker, () => { this.sessions.delete(id) })
    this.sessions.set(id, session)
    session.post({ type: 'open', session: id, format, layout })
    return session
  }

  async close (): Promise<void> {
    this.closed = true
    this.workers.fill(undefined)
    await Promise.all([...this.live].map(async (w) => w.terminate()))
  }

  private worker (slot: number): Worker {
    const existing = this.workers[slot]
    if (existing !== undefined) return existing
    const worker = startRenderThread()
    worker.unref()
    let ready = false
    worker.on('message', (reply: RenderReply) => {
      if (reply.type === 'ready') ready = true
      else this.sessions.get(reply.session)?.receive(reply)
    })
    this.live.add(worker)
    const fail = (err: Error): void => {
      if (this.workers[slot] === worker) this.workers[slot] = undefined
      if (!ready && !this.closed && !this.unavailable) {
        this.unavailable = true
        this.onUnavailable(err)
      }
      for (const s of this.sessions.values()) if (s.worker === worker) s.fail(err)
    }
    // an error may leave the thread running (an 'error' not from an uncaught exception): stop it
    worker.on('error', (err) => { void worker.terminate(); fail(err) })
    worker.on('exit', (code) => {
      this.live.delete(worker)
      fail(new Error(`render thread exited (code ${code})`))
    })
    this.workers[slot] = worker
    return worker
  }
}

/**
 * A render thread. From the TypeScript source (npm start, the tests: a loader that a worker
 * does not inherit), its module is loaded through tsx's loader, registered in the thread first;
 * compiled, the .js file directly.
 */
function startRenderThread (): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./render-worker.js', import.meta.url))
  const tsx = import.meta.resolve('tsx/esm/api')
  const entry = new URL('./render-worker.ts', import.meta.url).href
  return new Worker(`import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry)}) })`, { eval: true })
}

/** One training set's rendering on a render thread. */
export class RenderSession {
  private queue: RenderReply[] = []
  private wake: (() => void) | undefined
  private failure: Error | undefined
  private done = false

  constructor (readonly id: number, readonly worker: Worker, private readonly forget: () => void) {}

  post (m: RenderRequest, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer)
  }

  /**
   * Renders one block; its text, in chunks, in order. The block's answer arrays go to the
   * thread (transferred): the block cannot be read here afterwards. Rows must have no
   * pass-through columns (the thread has no access to them).
   */
  async * render (rows: AnsweredRows): AsyncGenerator<string> {
    const { answers } = rows
    const b = answers.block
    const m: BlockMessage = {
      type: 'block',
      session: this.id,
      features: answers.features.map((f) => ({ dtype: f.dtype, ttl_ms: f.ttl_ms })),
      size: b.size,
      t: b.t,
      rank: b.rank,
      order: b.order,
      entityStart: b.entityStart,
      entityIds: b.entityIds,
      status: answers.status,
      num: answers.num,
      text: answers.text,
      eventTime: answers.eventTime,
    }
    const buffers = [b.t, b.rank, b.order, b.entityStart, answers.status, answers.num, answers.eventTime]
      .map((a) => a.buffer as ArrayBuffer)
    this.post(m, [...new Set(buffers)])
    for (;;) {
      const reply = await this.next()
      if (reply.type === 'done') return
      if (reply.type === 'error') throw new Error(`render thread: ${reply.message}`)
      if (reply.type === 'chunk') yield reply.text
    }
  }

  /** Ends the session (its renderer on the thread is dropped). */
  close (): void {
    if (this.done) return
    this.done = true
    this.forget()
    if (this.failure === undefined) this.post({ type: 'close', session: this.id })
  }

  receive (reply: RenderReply): void {
    this.queue.push(reply)
    this.wakeUp()
  }

  fail (err: Error): void {
    this.failure ??= err
    this.wakeUp()
  }

  private wakeUp (): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  private async next (): Promise<RenderReply> {
    for (;;) {
      if (this.queue.length > 0) return this.queue.shift()!
      if (this.failure !== undefined) throw this.failure
      await new Promise<void>((resolve) => { this.wake = resolve })
    }
  }
}
