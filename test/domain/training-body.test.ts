import t from 'tap'
import fc from 'fast-check'
import { EntityRowColumns, entityRowColumnsFromObjects, parseTimestampBytes, scanTrainingBody, type RowSchemaError } from '../../src/domain/training-body.js'
import { parseTimestamp } from '../../src/domain/time.js'

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

t.test('the byte timestamp parser reads what parseTimestamp reads, as it reads it', async (t) => {
  /** The byte parser's answer for s, checked against parseTimestamp: the same ms, or NaN (left to it). */
  const agree = (s: string): number => {
    const a = parseTimestampBytes(Buffer.from(`xx${s}yy`, 'latin1'), 2, 2 + Buffer.byteLength(s, 'latin1'))
    const e = parseTimestamp(s)
    if (!Number.isNaN(a) && !(e.ok && e.ms === a)) t.fail(`${s}: ${a}, parseTimestamp: ${JSON.stringify(e)}`)
    return a
  }
  // the forms clients send are read here, not left to parseTimestamp
  const read = ['2023-06-01T12:00:00Z', '2023-06-01T12:00:00.123Z', '2023-06-01T12:00:00.1Z', '2023-06-01T12:00:00.12z', '2023-06-01t12:00:00Z',
    '2023-06-01 12:00:00Z', '2023-06-01T12:00:00+00:00', '2023-06-01T14:30:00+02:30', '2023-06-01T07:00:00-05:00', '2023-06-01T12:00:00.123000+00:00',
    '2023-06-01T12:00:00.000000000Z', '2024-02-29T00:00:00Z', '1900-01-01T00:00:00Z', '9999-12-31T23:59:59.999Z', '1900-01-01T00:30:00+00:30']
  for (const s of read) t.equal(agree(s), parseTimestamp(s).ok ? (parseTimestamp(s) as { ms: number }).ms : Number.NaN, s)
  // refused or unusual: left to parseTimestamp (which refuses most of them)
  const left = ['2023-02-29T00:00:00Z', '1899-12-31T23:59:59Z', '1900-01-01T00:00:00+00:01', '2023-06-01T24:00:00Z', '2023-06-01T12:00:00', '2023-06-01T12:00:00.1234Z',
    '2023-06-01T12:00:00.Z', '2023-06-01T12:00:00.0000000000Z', '2023-06-01T12:00:00+24:00', '2023-06-01T12:00:00+02:60', '2023-06-01T12:00:00+0200', '2023-06-01T12:00:00+02:00Z',
    '2023-06-01T12:00:00ZZ', 'abcdefghijklmnopqrstZ', '2023-06-01X12:00:00Z', '9999-12-31T23:59:59.999-00:01', '+2023-06-01T12:00:00Z', '1685620800000']
  for (const s of left) t.ok(Number.isNaN(agree(s)), s)
  // random timestamps: test/domain/time.test.ts (the byte parser, the string one and the pattern agree)
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
