import t from 'tap'
import fc from 'fast-check'
import { parse } from 'csv-parse/sync'
import { CsvRecordReader, CsvRecordTooLongError, CsvSyntaxError } from '../../src/domain/csv-records.js'

// fixed by default so that every run checks the same cases; CSV_SEED=<n> explores others
const SEED = Number(process.env.CSV_SEED ?? 20261206)

/** Reads `text` handed over in the given pieces. */
function read (pieces: string[], max = 1 << 20): string[][] {
  const reader = new CsvRecordReader(max)
  const out: string[][] = []
  for (const p of pieces) out.push(...reader.push(p))
  out.push(...reader.end())
  return out
}

/** `text` cut at the given offsets. */
function cut (text: string, at: number[]): string[] {
  const points = [...new Set(at.map((a) => a % (text.length + 1)))].sort((a, b) => a - b)
  const pieces: string[] = []
  let from = 0
  for (const p of points) { pieces.push(text.slice(from, p)); from = p }
  pieces.push(text.slice(from))
  return pieces
}

const quote = (f: string): string => `"${f.replaceAll('"', '""')}"`

t.test('any CSV, cut anywhere, reads as one independent parser reads it whole', async (t) => {
  // fields drawn from the characters that matter (separator, quote, both line breaks); a field
  // that holds one of them is quoted, any other field maybe
  const field = fc.tuple(fc.array(fc.constantFrom('a', 'b', '1', ' ', ',', '"', '\n', '\r', 'é', '😀'), { maxLength: 6 }).map((cs) => cs.join('')), fc.boolean())
    .map(([f, q]) => (q || /[",\n\r]/.test(f) ? quote(f) : f))
  // a record of one empty field is an empty line (skipped; csv-parse keeps a quoted one)
  const record = fc.array(field, { minLength: 1, maxLength: 5 }).filter((fs) => fs.length > 1 || (fs[0] !== '' && fs[0] !== '""'))
  const doc = fc.record({
    records: fc.array(record, { minLength: 1, maxLength: 12 }),
    newline: fc.constantFrom('\n', '\r\n', '\r'),
    bom: fc.boolean(),
    trailing: fc.boolean(),
    emptyLines: fc.array(fc.nat(), { maxLength: 3 }),
  }).map(({ records, newline, bom, trailing, emptyLines }) => {
    const lines = records.map((r) => r.join(','))
    for (const e of emptyLines) lines.splice(1 + (e % lines.length), 0, '')
    return (bom ? '\ufeff' : '') + lines.join(newline) + (trailing ? newline : '')
  })
  fc.assert(fc.property(doc, fc.array(fc.nat(), { maxLength: 8 }), (text, at) => {
    const expected = parse(text, { bom: true, relax_column_count: true, skip_empty_lines: true }) as string[][]
    t.same(read(cut(text, at)), expected, JSON.stringify({ text, at }))
    return true
  }), { numRuns: 400, seed: SEED })
  const text = '\ufeffa,"b\r\n""c"""\r\n"1,2",3\r\n\r\n4,"5\n"\r\n'
  const expected = parse(text, { bom: true, relax_column_count: true, skip_empty_lines: true }) as string[][]
  t.same(read([...text]), expected, 'one character a piece')
  t.same(expected, [['a', 'b\r\n"c"'], ['1,2', '3'], ['4', '5\n']])
})

t.test('records come out as soon as they are complete', async (t) => {
  const reader = new CsvRecordReader(1000)
  t.same(reader.push('a,b'), [], 'no line break yet')
  t.same(reader.push('\n1,"x'), [['a', 'b']])
  t.same(reader.push('\ny",2\n3'), [['1', 'x\ny', '2']])
  t.same(reader.end(), [['3']])
  const crlf = new CsvRecordReader(1000)
  t.same(crlf.push('a,b\r'), [], 'a \\r at the end may be the start of \\r\\n')
  t.same(crlf.push('\n1,2\r'), [['a', 'b']])
  t.same(crlf.push('\n'), [['1', '2']])
  t.same(crlf.end(), [])
  t.same(new CsvRecordReader(10).end(), [], 'an empty body has no records')
})

t.test('broken quoting is a syntax error naming its line, however the text is cut', async (t) => {
  const cases: Array<[string, number, RegExp]> = [
    ['a,b\n1,2\n"x"y,3\n', 3, /malformed/],
    ['a,b\n1,"2\nstill 2\n3,4', 2, /unterminated/],
    ['a,b\r\n1,2\r\n3,"x"  y\r\n', 3, /malformed/],
  ]
  for (const [text, line, message] of cases) {
    for (const pieces of [[text], [...text], cut(text, [5, 9])]) {
      const err = (() => { try { read(pieces); return undefined } catch (e) { return e } })()
      t.ok(err instanceof CsvSyntaxError, JSON.stringify(pieces))
      t.equal((err as CsvSyntaxError).line, line, JSON.stringify(pieces))
      t.match((err as CsvSyntaxError).message, message)
    }
  }
  t.same(read(['a,b\nx"y,"z"\n']), [['a', 'b'], ['x"y', 'z']], 'a quote inside an unquoted field is a character')
  // a stray quote that swallows the rest of the body: the syntax error, not the size limit
  const swallowing = new CsvRecordReader(100)
  swallowing.push('a,b\n"x"y,1\n')
  t.throws(() => { for (let i = 0; i < 40; i++) swallowing.push('2,3\n') }, { name: 'CsvSyntaxError', line: 2 })
})

t.test('a record longer than the limit fails early, naming the line it starts on', async (t) => {
  const reader = new CsvRecordReader(100)
  t.same(reader.push('a,b\n1,2\n'), [['a', 'b'], ['1', '2']])
  t.same(reader.push('3,"' + 'x'.repeat(50)), [])
  const err = (() => { try { reader.push('y'.repeat(60)); return undefined } catch (e) { return e } })()
  t.ok(err instanceof CsvRecordTooLongError)
  t.equal((err as CsvRecordTooLongError).line, 3)
  const header = new CsvRecordReader(100)
  t.throws(() => header.push('h'.repeat(101)), { name: 'CsvRecordTooLongError', line: 1 }, 'a header with no line break in sight')
  t.same(read(['a,b\n', 'x'.repeat(99) + '\n'], 100), [['a', 'b'], ['x'.repeat(99)]], 'a record up to the limit is read')
})
