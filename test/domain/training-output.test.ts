import t from 'tap'
import fc from 'fast-check'
import { seededRandom } from '../lib/random.js'
import {
  BlockAnswers, ByteWriter, PointInTimeMerge, buildEntityBlock, chooseOutputFormat, featureColumnNames, isoMillis,
  outputColumns, rowRenderer, type JoinFeature,
} from '../../src/domain/training-output.js'

t.test('isoMillis is toISOString', async (t) => {
  fc.assert(fc.property(fc.integer({ min: Date.UTC(1000, 0, 1) - 5, max: Date.UTC(10000, 0, 1) + 5 }), (ms) => isoMillis(ms) === new Date(ms).toISOString()), { numRuns: 5000 })
  t.equal(isoMillis(Date.UTC(2000, 1, 29, 23, 59, 59, 999)), '2000-02-29T23:59:59.999Z')
  // every part of a day (its day prefix kept from call to call), before and after 1970
  const wrong: number[] = []
  for (const base of [Date.UTC(2023, 11, 31), Date.UTC(1969, 11, 31), Date.UTC(1000, 0, 1)]) {
    for (let ms = base - 3; ms < base + 86_400_003; ms += 997) if (isoMillis(ms) !== new Date(ms).toISOString()) wrong.push(ms)
  }
  t.same(wrong, [])
})

t.test('Accept negotiation', async (t) => {
  t.equal(chooseOutputFormat(undefined), 'json')
  t.equal(chooseOutputFormat('*/*'), 'json')
  t.equal(chooseOutputFormat('text/csv'), 'csv')
  t.equal(chooseOutputFormat('application/x-ndjson, application/json;q=0.5'), 'ndjson')
  t.equal(chooseOutputFormat('application/json;q=0.2, text/csv;q=0.9'), 'csv')
  t.equal(chooseOutputFormat('application/xml'), undefined)
  t.equal(chooseOutputFormat('text/csv;q=0'), undefined)
})

t.test('column names', async (t) => {
  const cols = featureColumnNames([{ name: 'a', version: 1 }, { name: 'b', version: 3 }, { name: 'a', version: 2 }])
  t.same(cols, ['a@1', 'b', 'a@2'])
  t.same(outputColumns(['label'], cols, true), ['entity_id', 'event_time', 'label', 'a@1', 'b', 'a@2', 'a@1__status', 'a@1__event_time', 'b__status', 'b__event_time', 'a@2__status', 'a@2__event_time'])
})

t.test('the merge answers a block; the renderers write it', async (t) => {
  const features: JoinFeature[] = [{ dtype: 'float64', ttl_ms: 10 }, { dtype: 'string', ttl_ms: null }, { dtype: 'bool', ttl_ms: null }]
  const rows = [{ e: 'x', t: 100 }, { e: 'y', t: 5 }, { e: 'x', t: 50 }, { e: 'x', t: 100 }]
  const block = buildEntityBlock(rows.length, (i) => rows[i].e, (i) => rows[i].t)
  t.same(block.entityIds, ['x', 'y'])
  t.same([...block.order], [2, 0, 3, 1], 'rows grouped by entity, by T')
  t.same([...block.rank], [1, 3, 0, 2], 'each row\'s position in that order')
  t.same([...block.sortedT], [50, 100, 100, 5], 'T by position')
  const answers = new BlockAnswers(block, features)
  const merge = new PointInTimeMerge(answers, 'event')
  merge.push(0, 45, 0, 1.5, null) // x f0
  merge.push(0, 95, 0, null, null) // a null at 95: NULL_VALUE at 100
  merge.push(1, 40, 0, null, 'a,"b"') // x f1
  merge.push(5, 1, 0, 1, null) // y f2
  merge.finish()
  t.same([0, 1, 2, 3].map((r) => answers.statusName(r, 0)), ['NULL_VALUE', 'NOT_FOUND', 'PRESENT', 'NULL_VALUE'])
  t.same([0, 1, 2, 3].map((r) => answers.value(r, 1)), ['a,"b"', null, 'a,"b"', 'a,"b"'])
  t.same([0, 1, 2, 3].map((r) => answers.value(r, 2)), [null, true, null, null])
  t.throws(() => { const m = new PointInTimeMerge(new BlockAnswers(block, features), 'event'); m.push(0, 45, 0, 1, null); m.push(0, 44, 0, 1, null) }, /out of order/)

  const view = { answers, entityAt: (r: number) => rows[r].e, extraAt: () => ({}) }
  const layout = { columns: outputColumns([], ['p', 's', 'b'], false), extraColumns: [], featureColumns: ['p', 's', 'b'], includeMetadata: false }
  const csv = rowRenderer('csv', layout)
  t.equal(csv.start() + csv.rows(view, 0, 4) + csv.end(), [
    'entity_id,event_time,p,s,b',
    `x,${isoMillis(100)},,"a,""b""",`,
    `y,${isoMillis(5)},,,true`,
    `x,${isoMillis(50)},1.5,"a,""b""",`,
    `x,${isoMillis(100)},,"a,""b""",`,
    '',
  ].join('\n'))
  const json = rowRenderer('json', layout)
  const text = json.start() + json.rows(view, 0, 2) + json.rows(view, 2, 4) + json.end()
  t.same(JSON.parse(text).rows[2], { entity_id: 'x', event_time: isoMillis(50), p: 1.5, s: 'a,"b"', b: null })
})

t.test('the known-mode merge: a candidate is seen once ingested at or before T', async (t) => {
  const block = buildEntityBlock(3, () => 'x', (i) => [10, 11, 12][i])
  const answers = new BlockAnswers(block, [{ dtype: 'int64', ttl_ms: null }])
  const merge = new PointInTimeMerge(answers, 'known')
  merge.push(0, 5, 10_000, 1, null) // ingested exactly at 10 ms
  merge.push(0, 4, 10_001, 2, null) // older event, ingested 1 µs after 10 ms: visible from 11 ms, loses to event 5
  merge.push(0, 6, 11_500, 3, null) // visible from 12 ms
  merge.finish()
  t.same([0, 1, 2].map((r) => answers.value(r, 0)), [1, 1, 3])
})

t.test('ByteWriter writes what the string forms say, in UTF-8, across growth', async (t) => {
  const w = new ByteWriter(16)
  const expected: string[] = []
  fc.assert(fc.property(fc.oneof(
    fc.string({ unit: 'grapheme' }).map((s) => ({ kind: 'text' as const, s })),
    fc.double().map((v) => ({ kind: 'number' as const, v })),
    fc.integer({ min: -8.64e15, max: 8.64e15 }).map((ms) => ({ kind: 'time' as const, ms })),
  ), (item) => {
    if (item.kind === 'text') { w.text(item.s); expected.push(item.s) } else if (item.kind === 'number') { w.number(item.v); expected.push(String(item.v)) } else { w.isoMillis(item.ms); expected.push(isoMillis(item.ms)) }
    w.byte(44)
    expected.push(',')
  }), { numRuns: 2000 })
  t.equal(w.take(), expected.join(''))
  t.equal(w.take(), '', 'take() starts over')
  w.bytes(Buffer.from('é€😀', 'utf8'))
  w.text('x€')
  t.equal(w.take(), 'é€😀x€')
})

t.test('ByteWriter.number writes String(v) for every kind of double', async (t) => {
  // the 15-digit decimal path (shortDecimal) and its way back to String(v), on each side of
  // every edge: decimals of 1 to 17 significant digits, powers of ten and their neighbours,
  // the ends of the positional range (1e-6, 1e15, 1e21), negative values and zeros
  const w = new ByteWriter(8)
  const check = (v: number): boolean => {
    w.number(v)
    return w.take() === String(v)
  }
  const neighbours = (v: number, steps: number): number[] => {
    const view = new DataView(new ArrayBuffer(8))
    view.setFloat64(0, v)
    const bits = view.getBigUint64(0)
    const out: number[] = []
    for (let k = -steps; k <= steps; k++) {
      view.setBigUint64(0, bits + BigInt(k))
      out.push(view.getFloat64(0))
    }
    return out
  }
  const decimal = fc.tuple(fc.integer({ min: 1, max: 17 }), fc.integer({ min: -12, max: 22 }), fc.boolean(), fc.double({ min: 0, max: 1, noNaN: true }))
    .map(([digits, exponent, negative, r]) => {
      const m = Math.floor(r * 10 ** digits)
      const v = Number(`${m}e${exponent - digits}`)
      return negative ? -v : v
    })
  fc.assert(fc.property(fc.oneof(decimal, fc.double(), fc.double({ min: 1e-7, max: 1e16, noNaN: true }), fc.double({ min: -1e16, max: -1e-7, noNaN: true })), check), { numRuns: 20_000 })
  const edges: number[] = [0, -0, 1e-6, 1e-7, 1e15, 1e21, 1e-5 * 3, 0.1 + 0.2, 1 / 3, 2 / 3, 123456789012345, 999999999999999, 0.000001234567890123]
  for (let k = -8; k <= 22; k++) {
    for (const f of [1, 1.5, 2.5, 9.99999999999999, 9.999999999999998, 1.00000000000001]) {
      edges.push(...neighbours(Number(`${f}e${k}`), 3))
      edges.push(...neighbours(-Number(`${f}e${k}`), 1))
    }
  }
  const wrong = edges.filter((v) => !check(v))
  t.same(wrong.map(String), [], 'edges')
  // a price-like series as a training set renders it: 2-decimal prices and their scaled copies
  let bad = 0
  for (let i = 0; i < 20_000; i++) {
    const price = Math.round(Math.sin(i) * 1e6 + 2e6) / 100
    if (!check(price) || !check(price * 1.003) || !check((price - 1) / price)) bad++
  }
  t.equal(bad, 0, 'price-like values')
})

t.test('ByteWriter.number writes 16- and 17-digit doubles as String(v) (longDecimal)', async (t) => {
  // every double whose binary exponent falls in [1e-6, 1e15), uniformly over its bits: 90 % of
  // them need 16 or 17 digits; then each side of every power of two (where the gap below is
  // half the gap above) and of every power of ten in the range
  const w = new ByteWriter(8)
  const view = new DataView(new ArrayBuffer(8))
  const rnd = seededRandom(11)
  const wrong: string[] = []
  const check = (v: number): void => {
    w.number(v)
    const s = w.take()
    if (s !== String(v) && wrong.length < 10) wrong.push(`${String(v)} written as ${s}`)
  }
  let long = 0
  for (let i = 0; i < 200_000; i++) {
    const exponent = 1003 + Math.floor(rnd() * 47) // 2^-20 .. 2^26 * 2^23
    view.setUint32(0, ((rnd() < 0.5 ? 0x80000000 : 0) | (exponent << 20) | Math.floor(rnd() * 0x100000)) >>> 0)
    view.setUint32(4, Math.floor(rnd() * 2 ** 32) >>> 0)
    const v = view.getFloat64(0)
    if (String(v).replace(/[-.]/g, '').replace(/^0+/, '').length >= 16) long++
    check(v)
  }
  t.ok(long > 150_000, `${long} of them need 16 or 17 digits`)
  for (let e2 = -20; e2 <= 50; e2++) {
    view.setFloat64(0, 2 ** e2)
    const bits = view.getBigUint64(0)
    for (let k = -40n; k <= 40n; k++) {
      view.setBigUint64(0, bits + k)
      check(view.getFloat64(0))
    }
  }
  for (let e10 = -6; e10 <= 15; e10++) {
    view.setFloat64(0, Number(`1e${e10}`))
    const bits = view.getBigUint64(0)
    for (let k = -40n; k <= 40n; k++) {
      view.setBigUint64(0, bits + k)
      check(view.getFloat64(0))
    }
  }
  // returns and ratios as a feature pipeline makes them
  for (let i = 1; i < 20_000; i++) {
    check(Math.log(1 + i / 1e4))
    check((i * 1.1) / 7)
    check(-i / 3e5)
  }
  t.same(wrong, [])
})

t.test('the renderers escape entity ids and texts, also when an entity repeats', async (t) => {
  const features: JoinFeature[] = [{ dtype: 'string', ttl_ms: null }, { dtype: 'float64', ttl_ms: null }]
  const ids = ['a,b', 'ü"q', 'a,b', 'plain', '']
  const block = buildEntityBlock(ids.length, (i) => ids[i], (i) => i)
  const answers = new BlockAnswers(block, features)
  const merge = new PointInTimeMerge(answers, 'event')
  block.entityIds.forEach((_, e) => { merge.push(e * 2, 0, 0, null, `v,${e}€`); merge.push(e * 2 + 1, 0, 0, -0.1 * e, null) })
  merge.finish()
  const view = { answers, entityAt: (r: number) => ids[r], extraAt: () => ({}) }
  const layout = { columns: outputColumns([], ['s', 'n'], true), extraColumns: [], featureColumns: ['s', 'n'], includeMetadata: true }
  const csv = rowRenderer('csv', layout)
  const lines = (csv.start() + csv.rows(view, 0, 2) + csv.rows(view, 2, 5) + csv.end()).split('\n')
  t.equal(lines[1], `"a,b",${isoMillis(0)},"v,0€",0,PRESENT,${isoMillis(0)},PRESENT,${isoMillis(0)}`)
  t.equal(lines[2], `"ü""q",${isoMillis(1)},"v,1€",-0.1,PRESENT,${isoMillis(0)},PRESENT,${isoMillis(0)}`)
  t.equal(lines[3], lines[1].replace(isoMillis(0), isoMillis(2)))
  t.equal(lines[5].slice(0, 3), '"",')
  for (const ndjson of [true, false]) {
    const r = rowRenderer(ndjson ? 'ndjson' : 'json', layout)
    const text = r.start() + r.rows(view, 0, 3) + r.rows(view, 3, 5) + r.end()
    const rows = ndjson ? text.trim().split('\n').map((l) => JSON.parse(l)) : JSON.parse(text).rows
    t.same(rows.map((x: Record<string, unknown>) => [x.entity_id, x.s, x.n, x.n__status]), [
      ['a,b', 'v,0€', 0, 'PRESENT'], ['ü"q', 'v,1€', -0.1, 'PRESENT'], ['a,b', 'v,0€', 0, 'PRESENT'], ['plain', 'v,2€', -0.2, 'PRESENT'], ['', 'v,3€', -0.30000000000000004, 'PRESENT'],
    ])
  }
})
