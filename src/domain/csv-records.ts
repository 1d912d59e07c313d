import Papa from 'papaparse'

/** The CSV text breaks the format (a stray or unterminated quote); `line` is 1-based, physical. */
export class CsvSyntaxError extends Error {
  override readonly name = 'CsvSyntaxError'
  constructor (message: string, readonly line: number) {
    super(message)
  }
}

/** One record is longer than the limit (often an unterminated quote that swallows the rest). */
export class CsvRecordTooLongError extends Error {
  override readonly name = 'CsvRecordTooLongError'
  constructor (readonly line: number, readonly limit: number) {
    super(`the record starting at line ${line} is longer than ${limit} characters (an unterminated quote?)`)
  }
}

interface PapaResult { data: string[][], errors: Array<{ message: string, index?: number }>, meta: { cursor: number } }

/**
 * Splits CSV text, handed over in pieces as a body arrives, into records (RFC 4180: fields
 * separated by commas, optionally quoted with ", a quote inside a quoted field doubled; line
 * breaks inside quotes belong to the field), in constant memory: only the record under way is
 * kept, and one longer than `maxRecordChars` is an error.
 *
 * The tokenizing is Papa Parse's core parser (the fastest kept JavaScript CSV parser we measured:
 * about 5x csv-parse's stream on the same rows). It is handed the text from the start of the
 * first incomplete record onwards, told to leave that last record out, and reports where it
 * stopped; a record cut by a piece boundary is read again, whole, with the next piece.
 *
 * As csv-parse did here: a UTF-8 byte order mark is dropped, the line break is the first one
 * outside quotes (\n, \r\n or \r), and empty lines are skipped (so is a line holding only "",
 * which Papa Parse reads as an empty line: one empty field is never a valid record here). Papa Parse reads a quote only at
 * the start of a field (`a"b` is the three characters a, ", b); a field that opens with a quote
 * and does not close it cleanly is a CsvSyntaxError.
 */
export class CsvRecordReader {
  private pending = ''
  private parser: Papa.Parser | undefined
  private started = false
  /** the character that ends a line: counted to name lines in errors */
  private lineEnd = '\n'
  /** physical lines before `pending` */
  private linesBefore = 0
  /** a syntax error Papa Parse saw in the incomplete record last time */
  private suspect: CsvSyntaxError | undefined

  constructor (private readonly maxRecordChars: number) {}

  /** The records completed by this piece of text. */
  push (text: string): string[][] {
    this.pending = this.pending.length === 0 ? text : this.pending + text
    if (!this.started) {
      if (this.pending.length === 0) return []
      if (this.pending.charCodeAt(0) === 0xfeff) this.pending = this.pending.slice(1)
      this.started = true
    }
    if (this.parser === undefined) {
      const newline = detectNewline(this.pending, false)
      if (newline === undefined) {
        this.checkLength()
        return []
      }
      this.open(newline)
    }
    return this.parse(false)
  }

  /** The records left when the text has ended. */
  end (): string[][] {
    if (this.pending.length === 0) return []
    if (this.parser === undefined) this.open(detectNewline(this.pending, true) ?? '\n')
    return this.parse(true)
  }

  private open (newline: string): void {
    this.lineEnd = newline === '\r' ? '\r' : '\n'
    this.parser = new Papa.Parser({ delimiter: ',', newline: newline as '\n', quoteChar: '"', escapeChar: '"' })
  }

  private parse (final: boolean): string[][] {
    const text = this.pending
    const result = this.parser!.parse(text, 0, !final) as PapaResult
    const consumed = final ? text.length : result.meta.cursor
    this.suspect = undefined
    if (result.errors.length > 0) {
      const e = result.errors[0]
      const error = new CsvSyntaxError(e.message, this.linesBefore + countOf(text, this.lineEnd, e.index ?? 0) + 1)
      // an error in the record left for later may be the cut's doing (a closing quote, then
      // the \r of a \r\n that the next piece completes): that record is read again, whole
      if (final || (e.index ?? 0) < consumed) throw error
      this.suspect = error
    }
    this.linesBefore += countOf(text, this.lineEnd, consumed)
    this.pending = consumed === text.length ? '' : text.slice(consumed)
    if (!final) this.checkLength()
    const rows = result.data
    let empty = 0
    for (let i = 0; i < rows.length; i++) if (rows[i].length === 1 && rows[i][0] === '') empty++
    return empty === 0 ? rows : rows.filter((r) => r.length !== 1 || r[0] !== '')
  }

  private checkLength (): void {
    if (this.pending.length <= this.maxRecordChars) return
    // a record that keeps growing after a syntax error: the error is the better answer
    throw this.suspect ?? new CsvRecordTooLongError(this.linesBefore + 1, this.maxRecordChars)
  }
}

/**
 * The first line break of the text outside quotes: \n, \r\n or \r; undefined while it cannot
 * tell yet (no break so far, or a \r last that a \n may follow, unless the text has ended).
 */
function detectNewline (text: string, ended: boolean): string | undefined {
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 34) quoted = !quoted
    else if (quoted) continue
    else if (c === 10) return '\n'
    else if (c === 13) {
      if (i + 1 === text.length) return ended ? '\r' : undefined
      return text.charCodeAt(i + 1) === 10 ? '\r\n' : '\r'
    }
  }
  return undefined
}

/** How many times `ch` occurs in text[0, end). */
function countOf (text: string, ch: string, end: number): number {
  let n = 0
  for (let i = text.indexOf(ch); i >= 0 && i < end; i = text.indexOf(ch, i + 1)) n++
  return n
}
