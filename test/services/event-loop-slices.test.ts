import t from 'tap'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { EventLoopSlices, runInSlices, sliced } from '../../src/services/event-loop-slices.js'
import { STEP_ROWS, runSteps, type Steps } from '../../src/domain/steps.js'
import { buildEntityBlock, entityBlockSteps } from '../../src/domain/training-output.js'
import { entityRowColumnsFromObjects, entityRowColumnsSteps, scanTrainingBody, scanTrainingBodySteps, type EntityRowColumns } from '../../src/domain/training-body.js'

/**
 * Counts turns of the event loop: a setImmediate chain that runs only when the work under test
 * lets the loop run (a chain of promises never does).
 */
function turnCounter (): { turns: () => number, stop: () => void } {
  let turns = 0
  let stopped = false
  const tick = (): void => {
    if (stopped) return
    turns++
    setImmediate(tick)
  }
  setImmediate(tick)
  return { turns: () => turns, stop: () => { stopped = true } }
}

async function * inMemory (n: number): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) yield i
}

t.test('an async iteration over data in memory never lets the event loop run; sliced() does', async (t) => {
  await nextTurn()
  let c = turnCounter()
  let seen = 0
  for await (const i of inMemory(1000)) seen += i
  t.equal(c.turns(), 0, 'a chain of promises: no turn at all')
  c.stop()

  await nextTurn()
  c = turnCounter()
  const items: number[] = []
  for await (const i of sliced(inMemory(1000), 0)) items.push(i)
  c.stop()
  t.same(items, Array.from({ length: 1000 }, (_, i) => i), 'every item, in order')
  t.ok(c.turns() >= 999, `a turn between items when every slice is over (${c.turns()} turns)`)
  t.equal(seen, 499500)

  await nextTurn()
  c = turnCounter()
  let n = 0
  for await (const _ of sliced([1, 2, 3, 4], 60_000)) n++
  c.stop()
  t.equal(n, 4, 'sync iterables too')
  t.equal(c.turns(), 0, 'no turn while the slice lasts')
})

t.test('sliced() ends the source when the consumer stops early', async (t) => {
  let finished = false
  async function * source (): AsyncGenerator<number> {
    try {
      for (let i = 0; ; i++) yield i
    } finally {
      finished = true
    }
  }
  for await (const i of sliced(source(), 0)) if (i === 3) break
  t.ok(finished, "the source's finally ran")
})

t.test('runInSlices gives turns between steps and returns the result', async (t) => {
  function * steps (n: number): Steps<string> {
    for (let i = 0; i < n; i++) yield
    return `done after ${n}`
  }
  await nextTurn()
  const c = turnCounter()
  t.equal(await runInSlices(steps(50), 0), 'done after 50')
  c.stop()
  t.ok(c.turns() >= 49, `${c.turns()} turns`)
  t.equal(runSteps(steps(5)), 'done after 5', 'runSteps runs them at once')
  await t.rejects(runInSlices((function * (): Steps<number> { yield; throw new Error('boom') })(), 0), /boom/, 'a failing step rejects')
})

t.test('EventLoopSlices.pause waits for a turn only once the slice is over', async (t) => {
  await nextTurn()
  const c = turnCounter()
  const long = new EventLoopSlices(60_000)
  for (let i = 0; i < 100; i++) await long.pause()
  t.equal(c.turns(), 0)
  const none = new EventLoopSlices(0)
  for (let i = 0; i < 10; i++) await none.pause()
  c.stop()
  t.ok(c.turns() >= 9)
})

t.test('the stepwise builders give what the one-go ones give, in steps', async (t) => {
  const size = STEP_ROWS * 3 + 17
  const entity = (i: number): string => `e${i % 7}`
  // entity e3's rows out of order: it is sorted in a step of its own
  const time = (i: number): number => (i % 7 === 3 ? 1e12 - i : 1e12 + i)
  const stepsOf = <T>(g: Steps<T>): { result: T, steps: number } => {
    let steps = 0
    for (;;) {
      const s = g.next()
      if (s.done === true) return { result: s.value, steps }
      steps++
    }
  }
  const block = stepsOf(entityBlockSteps(size, entity, time))
  t.same(block.result, buildEntityBlock(size, entity, time), 'the same block')
  t.ok(block.steps >= 3, `${block.steps} steps for ${size} rows`)

  const objects = Array.from({ length: size }, (_, i) => ({ entity_id: entity(i), event_time: new Date(time(i)).toISOString(), ...(i % 5 === 0 ? { label: i } : {}) }))
  const snapshot = (c: EntityRowColumns): unknown => ({ ids: Array.from({ length: c.count }, (_, i) => [c.entityAt(i), c.timeAt(i), c.extraAt(i)]), extra: c.extraNames })
  const cols = stepsOf(entityRowColumnsSteps(objects))
  t.same(snapshot(cols.result), snapshot(entityRowColumnsFromObjects(objects)))
  t.ok(cols.steps >= 3)

  const body = Buffer.from(JSON.stringify({ features: ['f'], entity_rows: objects }))
  const scan = stepsOf(scanTrainingBodySteps(body, () => null))
  const once = scanTrainingBody(body, () => null)
  t.equal(scan.result.kind, 'columns')
  t.equal(once.kind, 'columns')
  if (scan.result.kind === 'columns' && once.kind === 'columns') {
    t.same(snapshot(scan.result.columns), snapshot(once.columns))
    t.same(snapshot(scan.result.columns), snapshot(cols.result), 'the scanner reads the rows JSON.parse would give')
    t.equal(scan.result.rest, once.rest)
  }
  t.ok(scan.steps >= 3, `${scan.steps} steps for ${size} rows`)
  t.same(stepsOf(scanTrainingBodySteps(Buffer.from('{"entity_rows":[{"entity_id":"a","event_time":"2023-01-01T00:00:00Z"},]}'), () => null)).result.kind, 'invalid', 'malformed rows are still found')
})
