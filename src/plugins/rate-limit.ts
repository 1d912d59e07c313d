import { AppError } from '../domain/errors.js'

/** One bucket's fixed window: requests counted since it opened. */
interface Window { count: number, startedMs: number }

/** What a request gets from the limiter: allowed or not, and the figures its headers carry. */
export interface Verdict { allowed: boolean, limit: number, remaining: number, resetSeconds: number }

/**
 * Fixed-window request counting per bucket (an API key or a client address), in this process:
 * a bucket's window opens at its first request and lasts `windowMs`; at most `max` requests are
 * allowed in it. At most `maxBuckets` buckets are kept: the one least recently given a new window
 * is forgotten first (it starts afresh if it comes back), so memory stays bounded whatever
 * clients send. Synchronous: no promise or store round trip on the request path.
 */
export class RateLimiter {
  private readonly windows = new Map<string, Window>()

  constructor (readonly max: number, readonly windowMs: number, private readonly maxBuckets = 10_000) {}

  /** Counts one request of `bucket` at `nowMs`. */
  hit (bucket: string, nowMs = Date.now()): Verdict {
    let w = this.windows.get(bucket)
    if (w === undefined || nowMs - w.startedMs >= this.windowMs) {
      // a new window: (re)inserted last, so the Map's order is the order windows opened
      if (w !== undefined) this.windows.delete(bucket)
      else if (this.windows.size >= this.maxBuckets) this.windows.delete(this.windows.keys().next().value as string)
      w = { count: 0, startedMs: nowMs }
      this.windows.set(bucket, w)
    }
    w.count++
    const resetSeconds = Math.max(1, Math.ceil((w.startedMs + this.windowMs - nowMs) / 1000))
    return { allowed: w.count <= this.max, limit: this.max, remaining: Math.max(0, this.max - w.count), resetSeconds }
  }

  /** Buckets held now (for tests). */
  get size (): number { return this.windows.size }
}

/**
 * Where a request's verdict is kept when it was counted before Fastify's routing (the online
 * fast path counts every request it looks at): the rate limit hook uses it rather than counting
 * the request a second time.
 */
export const RATE_VERDICT = Symbol('rate limit verdict')

/** The refusal of a request over its bucket's limit (429, with Retry-After). */
export function tooManyRequests (v: Verdict, windowMs: number): AppError {
  return new AppError(429, 'Too Many Requests',
    `Rate limit of ${v.limit} requests per ${windowMs / 1000} s exceeded; retry in ${v.resetSeconds} s`,
    { headers: { 'retry-after': String(v.resetSeconds) } })
}
