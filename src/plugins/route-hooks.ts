/**
 * A route's hooks of one kind, plus one more. The plugins attach their per-request work to the
 * routes that need it, in `onRoute`, when each route's facts (scope, URL) are known, instead of
 * app-wide hooks that would look them up on every request. A new array each time: Fastify
 * copies a GET route's options (arrays shared) for its HEAD route, which gets its own hooks.
 */
export function withHook<H> (existing: H | H[] | undefined, hook: H): H[] {
  return existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook]
}
