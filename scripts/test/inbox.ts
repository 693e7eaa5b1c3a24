/** The message queue behind the test WebSocket clients: collect what arrives, wait for a match. */
export class Inbox<M> {
  readonly messages: M[] = [];
  #waiters: Array<{ pred: (m: M) => boolean; done: (m: M) => void }> = [];

  /** Queues `m`, handing it to the oldest waiter it matches instead. */
  protected deliver(m: M): void {
    this.messages.push(m);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.pred(m)) return true;
      w.done(m);
      return false;
    });
  }

  /** Takes the first queued message matching `pred`, or waits for one. */
  next(pred: (m: M) => boolean = () => true, timeoutMs = 5000): Promise<M> {
    const found = this.messages.find(pred);
    if (found) {
      this.messages.splice(this.messages.indexOf(found), 1);
      return Promise.resolve(found);
    }
    return new Promise((done, fail) => {
      const timer = setTimeout(
        () => fail(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(this.messages).slice(0, 500)}`)),
        timeoutMs,
      );
      this.#waiters.push({
        pred,
        done: (m) => {
          clearTimeout(timer);
          this.messages.splice(this.messages.indexOf(m), 1);
          done(m);
        },
      });
    });
  }
}
