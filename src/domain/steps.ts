/**
 * Stepwise computations: generators that do a bounded unit of work (about a millisecond or
 * less) between yields and return their result. runSteps runs one to its end at once; the
 * services run them with turns of the event loop between steps (src/services/event-loop-slices.ts),
 * so that reading a large body or block does not hold up the other requests of the instance.
 */
export type Steps<T> = Generator<void, T>

/** Rows a step over rows handles: well under a millisecond of work for the row loops here. */
export const STEP_ROWS = 16_384

/** Runs `steps` to its end at once; its result. */
export function runSteps<T> (steps: Steps<T>): T {
  for (;;) {
    const step = steps.next()
    if (step.done === true) return step.value
  }
}
