import t from 'tap'
import fc from 'fast-check'
import { EntityRowColumns, entityRowColumnsFromObjects, HELPED_SCAN_MIN_BYTES, parseUtcTimestampBytes, rowsSplitPoint, scanRowsFrom, scanTrainingBody, scanTrainingBodyHelped, type HelpedSteps, type RowSchemaError, type RowValidator, type ScannedRows, type ScanResult } from '../../src/domain/training-body.js'
import { parseUtcTimestampFast } from '../../src/domain/training-output.js'

const valid = (): null => null

function snapshot (c: EntityRowColumns): unknown {
  const rows = Array.from({ length: c.count }, (_, i) => [c.entityAt(i), c.timeAt(i), c.extraAt(i)])
  return { rows, extraNames: c.extraNames, badTimes: [...c.badTimes] }
}

/** A JSON text of `value` with random (valid) whitespace between tokens. */
function spaced (value: unknown, pad: () => string): string {
  if (Array.isArray(value)) return `${pad()}[${value.map((v) => spaced(v, pad)).join(`${pad()},`)}${pad()}]${pad()}`
  if (value !== null && typeof value === 'object') {
    return `${pad()}{${Object.entries(value).map(([k, v]) => `${pad()}${JSON.stringify(k)}${pad()}:${spaced(v, pad)}`).join(',')}${pad()}}${pad()}`
  }
  return `${pad()}${JSON.stringify(value)}${pad()}`
}

t.test('the byte timestamp parser agrees with the string one', async (t) => {
  const samples = ['2023-06-01T12:00:00Z', '2023-06-01T12:00:00.123Z', '2024-02-29T00:00:00Z', '2023-02-29T00:00:00Z', '1899-12-31T23:59:59Z',
    '9999-12-31T23:59:59.999Z', '2023-06-01T24:00:00Z', '2023-06-01T12:00:00+00:00', '2023-06-01 12:00:00Z', '2023-06-01T12:00:00.12Z', 'abcdefghijklmnopqrstZ']
  for (const s of samples) t.same(parseUtcTimestampBytes(Buffer.from(s, 'latin1'), 0, s.length), parseUtcTimestampFast(s), s)
  fc.assert(fc.property(fc.date({ min: new Date(Date.UTC(1850, 0, 1)), max: new Date(Date.UTC(9999, 11, 31)), noInvalidDate: true }), fc.boolean(), fc.integer({ min: 0, max: 23 }), fc.constantFrom('0', '1', '9', 'Z', ':', '-', '.', '/', '"', '\\', ' ', 'T'), (d, millis, at, c) => {
    let s = d.toISOString()
    if (!millis) s = `${s.slice(0, 19)}Z`
    if (at < s.length) s = s.slice(0, at) + c + s.slice(at + 1)
    const b = Buffer.from(`xx${s}yy`, 'latin1')
    const a = parseUtcTimestampBytes(b, 2, 2 + s.length)
    const e = parseUtcTimestampFast(s)
    return Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e))
  }), { numRuns: 3000 })
})

t.test('scanned rows are the rows JSON.parse gives', async (t) => {
  const entity = fc.oneof(fc.constantFrom('BTCUSDT', 'ETH', 'É', 'a"b', 'x\\y', 'tab\there', '😀'), fc.string({ minLength: 1, maxLength: 6 }))
  const time = fc.oneof(
    fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2030, 0, 1) }).map((ms) => new Date(ms).toISOString()),
    fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2030, 0, 1) }).map((ms) => `${new Date(ms).toISOString().slice(0, 19)}Z`),
    fc.constantFrom('2023-01-01T00:00:00+02:00', 'nope', '2023-01-01T00:00:00', '', '1685620800000'),
  )
  const json: fc.Arbitrary<unknown> = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string(), fc.boolean(), fc.constant(null),
    fc.array(fc.integer(), { maxLength: 2 }), fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 2 }))
  const key = fc.oneof(fc.constantFrom('label', 'weight', 'note', 'é', '1', '07', 'a b', 'q"'), fc.string({ minLength: 1, maxLength: 4 }))
    .filter((k) => k !== 'entity_id' && k !== 'event_time' && k !== '__proto__' && k !== 'constructor')
  const row = fc.record({ entity_id: entity, event_time: time, extras: fc.dictionary(key, json, { maxKeys: 3 }), first: fc.boolean() })
    .map(({ entity_id: id, event_time: time, extras, first }) => (first ? { entity_id: id, event_time: time, ...extras } : { ...extras, event_time: time, entity_id: id }))
  fc.assert(fc.property(fc.array(row, { maxLength: 30 }), fc.array(fc.constantFrom('', ' ', '\n', '\t', '\r\n '), { minLength: 1, maxLength: 8 }), (rows, pads) => {
    let i = 0
    const pad = (): string => pads[i++ % pads.length]
    const text = spaced({ features: ['f'], entity_rows: rows, include_metadata: true }, pad)
    const scan = scanTrainingBody(Buffer.from(text, 'utf8'), valid)
    if (scan.kind !== 'columns') return false
    t.same(JSON.parse(scan.rest), { features: ['f'], entity_rows: [], include_metadata: true })
    const expected = entityRowColumnsFromObjects(JSON.parse(text).entity_rows)
    t.same(snapshot(scan.columns), snapshot(expected))
    return scan.rowErrors.length === 0
  }), { numRuns: 300 })
})

t.test('rows of the common shape, in any spacing, and near misses of it', async (t) => {
  const texts = [
    '{"entity_id":"BTC","event_time":"2023-06-01T12:00:00Z"}',
    '{"entity_id": "BTC", "event_time": "2023-06-01T12:00:00.250Z"}',
    '{ "entity_id" :\n"BTC" ,\t"event_time"\r\n: "2023-06-01T12:00:00Z" }',
    '{"event_time":"2023-06-01T12:00:00Z","entity_id":"BTC"}',
    '{"entity_id":"BTC","event_time":"2023-06-01T12:00:00+00:00"}',
    '{"entity_id":"BTC","event_time":"2023-06-01T12:00:00Z1234"}',
    '{"entity_id":"BTC","event_time":"2023-06-01T12:00:00.25Z"}',
    '{"entity_id":"BTC","event_time":"2023-02-29T12:00:00Z"}',
    '{"entity_id":"BTC","event_time":"x"}',
    '{"entity_id":"BTC","event_time":"2023-06-01T12:00:00Z","w":1}',
    '{"entity_id":"BTC","event_time":1685620800000}',
    '{"entity_id":"B\\u0054C","event_time":"2023-06-01T12:00:00Z"}',
    '{"entity_id":"BTC","event_tim":"2023-06-01T12:00:00Z","event_time":"2023-06-01T13:00:00Z"}',
    '{"entity_idx":"BTC","entity_id":"ETH","event_time":"2023-06-01T12:00:00Z"}',
  ]
  for (const text of texts) {
    // each alone, then all in one body (a row's scan must not run into the next one)
    for (const rows of [[text], texts]) {
      const body = `{"features":["f"],"entity_rows":[${rows.join(',')}]}`
      const scan = scanTrainingBody(Buffer.from(body, 'utf8'), valid)
      t.equal(scan.kind, 'columns', text)
      if (scan.kind !== 'columns') continue
      t.same(snapshot(scan.columns), snapshot(entityRowColumnsFromObjects(JSON.parse(body).entity_rows)), text)
    }
  }
})

/** Runs a helped scan, awaiting the helper's rows where it waits for them (`used.count`: how often it took some). */
async function runHelped (steps: HelpedSteps<ScanResult>, used = { count: 0 }): Promise<ScanResult> {
  let input: ScannedRows | undefined
  for (;;) {
    const step = steps.next(input)
    input = undefined
    if (step.done === true) return step.value
    if (step.value !== undefined) {
      input = await step.value
      if (input !== undefined && input.count > 0) used.count++
    }
  }
}

/** What a scan gave, comparable with t.same (columns as rows). */
function outcome (r: ScanResult): unknown {
  return r.kind === 'columns' ? { kind: r.kind, rest: r.rest, columns: snapshot(r.columns), entityIds: r.columns.entityIds, rowErrors: r.rowErrors } : r
}

/**
 * The helped scan with a handoff at `at`, the helper's rows read by scanRowsFrom (through a
 * structured clone, as they come from a thread), against the scan alone.
 */
async function helpedAt (b: Buffer, validate: RowValidator, at: number, used: { count: number }): Promise<ScanResult> {
  return runHelped(scanTrainingBodyHelped(b, validate, () => ({ at, rows: Promise.resolve().then(() => structuredClone(scanRowsFrom(b, at))) })), used)
}

t.test('a scan helped from any point gives what the scan alone gives', async (t) => {
  const entity = fc.oneof(fc.constantFrom('BTCUSDT', 'ETH', 'É', 'a"b', '},{', 'x\\y'), fc.string({ minLength: 1, maxLength: 4 }))
  const time = fc.oneof(
    fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2030, 0, 1) }).map((ms) => new Date(ms).toISOString()),
    fc.constantFrom('2023-01-01T00:00:00+02:00', 'nope', '1685620800000'),
    fc.constant(1685620800000),
  )
  const value = fc.oneof(fc.integer(), fc.string({ maxLength: 4 }), fc.constantFrom('},{"entity_id":"Z","event_time":"2023-01-01T00:00:00Z"}', '{', null, true),
    fc.dictionary(fc.constantFrom('a', 'b'), fc.integer(), { maxKeys: 2 }))
  const row = fc.oneof(
    { weight: 6, arbitrary: fc.record({ entity_id: entity, event_time: time }) },
    { weight: 3, arbitrary: fc.record({ entity_id: entity, event_time: time, extras: fc.dictionary(fc.constantFrom('w', 'note', 'k'), value, { maxKeys: 2 }) }).map(({ extras, ...r }) => ({ ...r, ...extras })) },
    { weight: 1, arbitrary: fc.constantFrom(5, 'x', null, { entity_id: 7, event_time: 'y' }, { event_time: '2023-01-01T00:00:00Z' }) },
  )
  // rows that are not objects of entity_id and event_time fail this validator, as the schema's would
  const validate: RowValidator = (r) => (typeof r === 'object' && r !== null && typeof (r as { entity_id?: unknown }).entity_id === 'string' && (r as { event_time?: unknown }).event_time !== undefined ? null : [{ instancePath: '', message: 'bad row' }])
  let handoffs = 0
  let taken = 0
  await fc.assert(fc.asyncProperty(fc.array(row, { maxLength: 12 }), fc.constantFrom('', ' ', '\n '), fc.constantFrom('ok', 'bad separator', 'bad row', 'trailing'), async (rows, pad, flaw) => {
    let text = `{"features":["f"],${pad}"entity_rows":[${pad}${rows.map((r) => JSON.stringify(r)).join(`${pad},${pad}`)}${pad}],"include_metadata":true}`
    if (flaw === 'bad separator' && rows.length > 1) text = text.replace(/\}(\s*),(\s*)\{"entity_id"/, '}$1;$2{"entity_id"')
    if (flaw === 'bad row' && rows.length > 1) text = text.replace(/,(\s*)\{"entity_id"/, ',$1{"entity_id":}{"entity_id"')
    if (flaw === 'trailing') text = text.replace(/\](,"include_metadata")/, ',]$1')
    const b = Buffer.from(text, 'utf8')
    const alone = outcome(scanTrainingBody(b, validate))
    // every '{' of the body: row starts, and '{' inside strings and nested values
    for (let at = b.indexOf(0x7b); at >= 0; at = b.indexOf(0x7b, at + 1)) {
      const used = { count: 0 }
      const helped = outcome(await helpedAt(b, validate, at, used))
      handoffs++
      taken += used.count
      if (JSON.stringify(helped) !== JSON.stringify(alone)) {
        t.same(helped, alone, `${text} helped at ${at}`)
        return false
      }
    }
    return true
  }), { numRuns: 400 })
  t.ok(taken > handoffs / 8, `the helper's rows were taken in ${taken} of ${handoffs} scans`)
})

t.test('a helper that gives nothing, and where a scan splits', async (t) => {
  const rows = Array.from({ length: 30_000 }, (_, i) => ({ entity_id: `e${i % 97}`, event_time: new Date(Date.UTC(2023, 0, 1) + i * 60_000).toISOString(), ...(i % 1000 === 999 ? { note: `n${i}` } : {}) }))
  const b = Buffer.from(JSON.stringify({ features: ['f'], entity_rows: rows }))
  t.ok(b.length >= HELPED_SCAN_MIN_BYTES)
  const alone = outcome(scanTrainingBody(b, valid))
  const rowsFrom = b.indexOf('[{')
  const at = rowsSplitPoint(b, rowsFrom)
  t.ok(at > rowsFrom + (b.length - rowsFrom) / 2 && at < rowsFrom + (b.length - rowsFrom) / 2 + 100, 'just past the middle')
  t.same(b.toString('latin1', at - 2, at + 13), '},{"entity_id":', 'at a row start')
  t.same(outcome(await runHelped(scanTrainingBodyHelped(b, valid, () => ({ at, rows: Promise.resolve(undefined) })))), alone, 'no rows from the helper')
  t.same(outcome(await runHelped(scanTrainingBodyHelped(b, valid, () => undefined))), alone, 'no helper')
  const used = { count: 0 }
  t.same(outcome(await helpedAt(b, valid, at, used)), alone, 'the helper read the second half')
  t.equal(used.count, 1)
  t.equal(rowsSplitPoint(b.subarray(0, HELPED_SCAN_MIN_BYTES - 1), rowsFrom), -1, 'a small body is read alone')
  t.equal(rowsSplitPoint(Buffer.from(`{"entity_rows":[${'1,'.repeat(HELPED_SCAN_MIN_BYTES)}1]}`), 15), -1, 'no row start near the middle')
})

t.test('rows taken from a helper keep the first-seen order of entity ids and pass-through names', async (t) => {
  const rows = [
    '{"entity_id":"A","event_time":"2023-01-01T00:00:00Z","a":1}',
    '{"entity_id":"B","event_time":"bad time"}',
    '{"entity_id":"C","event_time":"2023-01-01T00:00:00Z","c":"x","b":null}',
    '{"entity_id":"A","event_time":"2023-01-02T00:00:00Z","d":true,"a":2}',
    '{"entity_id":"D","event_time":"also bad","e":-1.5}',
    '{"entity_id":"B","event_time":"2023-01-03T00:00:00.500Z"}',
  ]
  const b = Buffer.from(`{"entity_rows":[${rows.join(',')}],"features":["f"]}`)
  const alone = scanTrainingBody(b, valid)
  if (alone.kind !== 'columns') throw new Error(alone.kind)
  t.same(alone.columns.extraNames, ['a', 'c', 'b', 'd', 'e'])
  t.same(alone.columns.entityIds, ['A', 'B', 'C', 'D'])
  for (let k = 1; k < rows.length; k++) {
    const at = b.indexOf(rows[k])
    const used = { count: 0 }
    const helped = await helpedAt(b, valid, at, used)
    t.equal(used.count, 1, `handed off at row ${k}`)
    t.same(outcome(helped), outcome(alone), `handed off at row ${k}`)
    if (helped.kind === 'columns') t.same([...helped.columns.badTimes], [...alone.columns.badTimes])
  }
})

t.test('rows of other shapes go to the row validator, with their row numbers', async (t) => {
  const seen: unknown[] = []
  const validate = (row: unknown): RowSchemaError[] | null => {
    seen.push(row)
    return typeof row === 'object' && row !== null && !Array.isArray(row) && 'entity_id' in row ? null : [{ instancePath: '', message: 'bad' }]
  }
  const body = '{"entity_rows":[{"entity_id":"A","event_time":"2023-01-01T00:00:00Z"},5,{"entity_id":"B\\u0042","event_time":1},{"event_time":"x"},{"entity_id":"C","event_time":"2023-01-01T00:00:00Z","n":{"a":[1]}}]}'
  const scan = scanTrainingBody(Buffer.from(body), validate)
  if (scan.kind !== 'columns') throw new Error(scan.kind)
  t.same(seen, [5, { entity_id: 'BB', event_time: 1 }, { event_time: 'x' }, { entity_id: 'C', event_time: '2023-01-01T00:00:00Z', n: { a: [1] } }])
  t.same(scan.rowErrors, [{ instancePath: '/entity_rows/1', message: 'bad' }, { instancePath: '/entity_rows/3', message: 'bad' }])
  t.equal(scan.columns.count, 5)
  t.equal(scan.columns.entityAt(2), 'BB')
  t.equal(scan.columns.timeAt(2), 1)
  t.same(scan.columns.extraAt(4), { n: { a: [1] } })
})

t.test('shapes the scanner leaves to JSON.parse, and malformed rows', async (t) => {
  const kind = (s: string): string => scanTrainingBody(Buffer.from(s), valid).kind
  t.equal(kind('[]'), 'fallback')
  t.equal(kind(''), 'fallback')
  t.equal(kind('{"features":["a"]}'), 'fallback', 'no entity_rows')
  t.equal(kind('{"entity_rows":{}}'), 'fallback', 'entity_rows not an array')
  t.equal(kind('{"entity_rows":[],"entity_rows":[]}'), 'fallback', 'entity_rows twice')
  t.equal(kind('{"entity\\u005frows":[]}'), 'fallback', 'an escaped key')
  t.equal(kind('{"entity_rows":[{"entity_id":"A","event_time":"x","__proto__":{}}]}'), 'fallback')
  t.equal(kind('{"entity_rows":[]} x'), 'fallback', 'text after the body')
  t.equal(kind('{"entity_rows":[] "a":1}'), 'fallback')
  t.equal(kind('{"entity_rows":[]}'), 'columns')
  t.equal(kind(' {"a":{"b":[1,"]"]},"entity_rows":[],"c":"\\""} '), 'columns')
  t.equal(kind('{"entity_rows":[{"entity_id":"A","event_time":"x"},]}'), 'invalid', 'trailing comma')
  t.equal(kind('{"entity_rows":[{"entity_id":"A","event_time":"x"} {}]}'), 'invalid', 'missing comma')
  t.equal(kind('{"entity_rows":[{"entity_id":"A","event_time":"x","y":[1}]}'), 'invalid', 'bad nesting')
  t.equal(kind('{"entity_rows":[{"entity_id":"A","event_time":"x","y":01}]}'), 'invalid', 'bad number')
  t.equal(kind('{"entity_rows":[{"entity_id":"A","event_time":"x"}'), 'invalid', 'unclosed')
})

t.test('columns from objects keep JavaScript member order and skip nothing', async (t) => {
  const c = entityRowColumnsFromObjects([
    { entity_id: 'A', event_time: '2023-01-01T00:00:00Z', b: 1, 2: 'two' } as never,
    { entity_id: 'B', event_time: 1000, a: null } as never,
    { entity_id: 'A', event_time: 'nope' },
  ])
  t.same(c.extraNames, ['2', 'b', 'a'])
  t.same(c.entityIds, ['A', 'B'])
  t.same([c.timeAt(0), c.timeAt(1)], [Date.UTC(2023, 0, 1), 1000])
  t.ok(Number.isNaN(c.timeAt(2)))
  t.same([...c.badTimes], [[2, 'nope']])
  t.same(c.extraAt(1), { a: null })
  t.same(c.extraAt(2), {})
})
