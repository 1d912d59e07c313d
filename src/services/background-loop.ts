/**
 * A job run over and over in the background: the first run `firstDelayMs` after start(), each
 * next one `everyMs` after the previous one ended (runs never overlap). A failed run is
 * reported to `onError` and the loop goes on. stop() cancels the next run and waits for the one
 * in progress. The timer does not keep the process alive.
 */
export class BackgroundLoop {
  private timer?: NodeJS.Timeout
  private current?: Promise<void>
  private stopped = true

  constructor (private readonly run: () => Promise<void>, private readonly everyMs: () => number, private readonly onError: (err: unknown) => void) {}

  /** True between start() and stop(). */
  get running (): boolean { return !this.stopped }

  start (firstDelayMs: number): void {
    if (!this.stopped) return
    this.stopped = false
    this.schedule(firstDelayMs)
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.current
  }

  private schedule (delayMs: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.current = this.run()
        .catch((err: unknown) => { this.onError(err) })
        .finally(() => { this.current = undefined; this.schedule(this.everyMs()) })
    }, delayMs)
    this.timer.unref()
  }
}
