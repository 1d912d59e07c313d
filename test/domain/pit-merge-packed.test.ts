import t from 'tap'
import fc from 'fast-check'
import { BlockAnswers, PACKED_NULL_HI, PACKED_NULL_LO, PointInTimeMerge, buildEntityBlock, type JoinFeature } from '../../src/domain/training-output.js'

/**
 * PointInTimeMerge.pushPacked (a pair's series-pack values as they came from the database)
 * answers exactly as pushing each value that counts, one by one: random blocks of rows, an
 * optional anchor, packed runs with ties, nulls, NaN, -0 and values outside the range or
 * stamped after the cutoff, then values from the rows, under a ttl or not.
 */

interface Packed { us: number, ingUs: number, value: number | null }

function encode (runs: Packed[]): { dv: DataView, ev: number, ing: number, val: number } {
  const n = runs.length
  const buf = Buffer.alloc(3 + 24 * n) // an odd offset: the decoder's views start anywhere
  const ev = 3
  const ing = ev + 8 * n
  const val = ing + 8 * n
  runs.forEach((r, k) => {
    buf.writeBigInt64BE(BigInt(r.us), ev + 8 * k)
    buf.writeBigInt64BE(BigInt(r.ingUs), ing + 8 * k)
    if (r.value === null) { buf.writeInt32BE(PACKED_NULL_HI, val + 8 * k); buf.writeInt32BE(PACKED_NULL_LO, val + 8 * k + 4) } else buf.writeDoubleBE(r.value, val + 8 * k)
  })
  return { dv: new DataView(buf.buffer, buf.byteOffset, buf.length), ev, ing, val }
}

const valueArb = fc.oneof(fc.double({ noNaN: false }), fc.constant(null), fc.constant(-0), fc.constant(Number.NaN), fc.integer({ min: -5, max: 5 }))

t.test('pushPacked answers as pushing each value that counts', async (t) => {
  const scenario = fc.record({
    rows: fc.array(fc.record({ e: fc.constantFrom('a', 'b'), t: fc.integer({ min: 0, max: 60 }) }), { minLength: 1, maxLength: 25 }),
    ttl: fc.option(fc.integer({ min: 0, max: 20 }), { nil: null }),
    anchor: fc.option(fc.record({ t: fc.integer({ min: -10, max: 0 }), value: valueArb }), { nil: undefined }),
    // event times in ms, some with microseconds; sorted below, ties kept
    packed: fc.array(fc.record({ ms: fc.integer({ min: -5, max: 70 }), sub: fc.constantFrom(0, 0, 0, 1, 999), ing: fc.integer({ min: 0, max: 10 }), value: valueArb }), { maxLength: 40 }),
    withIngested: fc.boolean(),
    cutoffUs: fc.integer({ min: 0, max: 10 }),
    later: fc.array(fc.record({ ms: fc.integer({ min: 0, max: 80 }), value: valueArb }), { maxLength: 5 }),
  })
  fc.assert(fc.property(scenario, (sc) => {
    const features: JoinFeature[] = [{ dtype: 'float64', ttl_ms: sc.ttl }]
    const block = buildEntityBlock(sc.rows.length, (i) => sc.rows[i].e, (i) => sc.rows[i].t)
    const packed = sc.packed.map((p) => ({ us: p.ms * 1000 + p.sub, ingUs: p.ing, value: p.value }))
      .sort((x, y) => x.us - y.us || x.ingUs - y.ingUs)
    const run = encode(packed)
    const answer = (fast: boolean): BlockAnswers => {
      const answers = new BlockAnswers(block, features)
      const merge = new PointInTimeMerge(answers, 'event')
      for (let e = 0; e < block.entityIds.length; e++) {
        const minT = block.minT[e]
        const maxT = block.maxT[e]
        if (sc.anchor) merge.push(e, minT + sc.anchor.t, 0, sc.anchor.value, null)
        if (fast) merge.pushPacked(e, run.dv, run.ev, sc.withIngested ? run.ing : -1, run.val, packed.length, minT, maxT, sc.cutoffUs)
        else {
          for (const p of packed) {
            const ms = Math.floor(p.us / 1000)
            if (ms <= minT || ms > maxT) continue
            if (sc.withIngested && p.ingUs > sc.cutoffUs) continue
            merge.push(e, ms, 0, p.value, null)
          }
        }
        // then values from the rows (after every packed one)
        const last = packed.length > 0 ? Math.floor(packed[packed.length - 1].us / 1000) : minT
        for (const l of [...sc.later].sort((x, y) => x.ms - y.ms)) merge.push(e, Math.max(last, minT) + 1 + l.ms, 0, l.value, null)
      }
      merge.finish()
      return answers
    }
    const slow = answer(false)
    const fast = answer(true)
    for (let r = 0; r < sc.rows.length; r++) {
      const a = [slow.statusName(r, 0), slow.value(r, 0), slow.answerTime(r, 0)]
      const b = [fast.statusName(r, 0), fast.value(r, 0), fast.answerTime(r, 0)]
      if (!Object.is(a[1], b[1]) || a[0] !== b[0] || a[2] !== b[2]) throw new Error(`row ${r}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`)
    }
  }), { numRuns: 3000 })
  t.pass('3000 random blocks agree')
})

t.test('pushPacked refuses values out of order and "known" mode', async (t) => {
  const block = buildEntityBlock(1, () => 'a', () => 10)
  const features: JoinFeature[] = [{ dtype: 'float64', ttl_ms: null }]
  const run = encode([{ us: 5000, ingUs: 0, value: 1 }, { us: 4000, ingUs: 0, value: 2 }])
  t.throws(() => new PointInTimeMerge(new BlockAnswers(block, features), 'event').pushPacked(0, run.dv, run.ev, -1, run.val, 2, 0, 10, 0), /out of order/)
  const ok = encode([{ us: 5000, ingUs: 0, value: 1 }])
  t.throws(() => new PointInTimeMerge(new BlockAnswers(block, features), 'known').pushPacked(0, ok.dv, ok.ev, -1, ok.val, 1, 0, 10, 0), /known/)
  // a value from the rows older than the packed ones is out of order too
  const m = new PointInTimeMerge(new BlockAnswers(block, features), 'event')
  m.pushPacked(0, ok.dv, ok.ev, -1, ok.val, 1, 0, 10, 0)
  t.throws(() => m.push(0, 4, 0, 1, null), /out of order/)
})
