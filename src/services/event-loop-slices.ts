import { setImmediate as nextTurn } from 'node:timers/promises'
import type { Steps } from '../domain/steps.js'

/**
 * How long long-running work (rendering a training set, digesting a dataset) may keep the event
 * loop before it lets I/O run. A download or a background build runs through promise chains
 * that never return to the event loop on their own when the data is already in memory and the
 * socket takes every write (a fast client on the same host): without a turn now and then, the
 * instance answers nothing else (cached online reads included) for the whole block.
 */
export const SLICE_MS = 5

/**
 * Lets the event loop run (I/O callbacks, timers, other requests) once `sliceMs` have passed
 * since the last turn it gave. Call pause() between units of work of a few milliseconds or less.
 */
export class EventLoopSlices {
  private since = performance.now()

  constructor (private readonly sliceMs = SLICE_MS) {}

  async pause (): Promise<void> {
    if (!this.due()) return
    await nextTurn()
    this.taken()
  }

  /** True once the slice is over: the caller should let the event loop run, then call taken(). */
  due (): boolean {
    return performance.now() - this.since >= this.sliceMs
  }

  /** The event loop had its turn: a new slice starts. */
  taken (): void {
    this.since = performance.now()
  }
}

/** `chunks`, with a turn of the event loop between them when they keep it longer than SLICE_MS. */
export async function * sliced<T> (chunks: AsyncIterable<T> | Iterable<T>, sliceMs = SLICE_MS): AsyncGenerator<T> {
  const slices = new EventLoopSlices(sliceMs)
  for await (const chunk of chunks) {
    yield chunk
    await slices.pause()
  }
}

/** Runs `steps` to its end, giving the event loop a turn between steps every SLICE_MS; its result. */
export async function runInSlices<T> (steps: Steps<T>, sliceMs = SLICE_MS): Promise<T> {
  const slices = new EventLoopSlices(sliceMs)
  for (;;) {
    const step = steps.next()
    if (step.done === true) return step.value
    await slices.pause()
  }
}
