import { Readable } from 'node:stream'
import { sliced } from '../src/services/event-loop-slices.js'

/**
 * An answer streamed from `chunks`, with `release` run exactly once when the stream closes,
 * however it closes: read to the end, failed, or destroyed because the client went away. The
 * generator's own `finally` is not enough: a stream destroyed before its first read (the client
 * hung up while the first block was being computed) ends the generator without running its
 * body, so a `finally` inside it never runs (and a training set's read sessions would stay in
 * their transactions, holding pool connections, until the process ends).
 *
 * Between chunks the event loop gets a turn every few milliseconds (src/services/event-loop-
 * slices.ts), so one large download does not hold up every other request of the instance.
 */
export function streamReleasing (chunks: (release: () => Promise<void>) => AsyncGenerator<string>, release: () => Promise<unknown>): Readable {
  let released: Promise<void> | undefined
  const once = async (): Promise<void> => {
    released ??= release().then(() => {}, () => {})
    return released
  }
  const stream = Readable.from(sliced(chunks(once)))
  stream.once('close', () => { void once() })
  return stream
}
