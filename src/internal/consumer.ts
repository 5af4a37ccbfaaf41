import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type { ParseError } from "effect/ParseResult"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Consumer from "../Consumer.js"
import { HandlerFailed, UnknownMessageType } from "../Consumer.js"
import { EventoClient, type Message } from "../EventoClient.js"
import { type EventoError, isTransient } from "../EventoError.js"
import { Idempotency } from "../Idempotency.js"
import { type ConsumerKey, PositionStore } from "../PositionStore.js"
import { Singleton } from "../Singleton.js"
import { metrics } from "./consumerMetrics.js"
import * as ConsumerSql from "./consumerSql.js"
import * as IdempotencyStore from "./idempotency.js"
import * as Pokes from "./pokes.js"
import * as PositionStoreInternal from "./positionStore.js"

// --- options ---

interface Settings {
  readonly batchSize: number
  readonly pollInterval: Duration.Duration
  readonly transactional: boolean
  readonly attempts: number
  readonly retryDelay: Duration.Duration
  readonly retryFactor: number
  readonly onFailure: "stop" | "park"
  readonly restartDelay: Duration.Duration
}

const resolve = <E, R>(options: Consumer.Options<E, R>): Settings => {
  const settings: Settings = {
    batchSize: options.batchSize ?? 100,
    pollInterval: Duration.decode(options.pollInterval ?? "1 second"),
    transactional: options.transactional ?? false,
    attempts: options.retry?.attempts ?? 3,
    retryDelay: Duration.decode(options.retry?.delay ?? "100 millis"),
    retryFactor: options.retry?.factor ?? 2,
    onFailure: options.onFailure ?? "stop",
    restartDelay: Duration.decode(options.restartDelay ?? "30 seconds")
  }
  const problems = [
    Number.isInteger(settings.batchSize) && settings.batchSize >= 1 && settings.batchSize <= 10000
      ? undefined
      : "batchSize must be an integer from 1 to 10000",
    Number.isInteger(settings.attempts) && settings.attempts >= 1 ? undefined : "retry.attempts must be at least 1",
    options.group === undefined ||
      (Number.isInteger(options.group.size) && Number.isInteger(options.group.member) && options.group.size >= 1 &&
        options.group.member >= 0 && options.group.member < options.group.size)
      ? undefined
      : "group needs 0 <= member < size",
    options.category.length > 0 && !options.category.includes("-") ? undefined : "category must be a category name",
    options.consumerId.length > 0 ? undefined : "consumerId must not be empty"
  ].filter((problem) => problem !== undefined)
  if (problems.length > 0) throw new Cause.IllegalArgumentException(`Invalid consumer options: ${problems.join("; ")}`)
  return settings
}

// --- failures ---

/** One failed run of the handler, whatever the way it failed (error, defect, self-interruption). */
class Attempt extends Data.TaggedError("Attempt")<{ readonly cause: Cause.Cause<unknown> }> {}

/** The consumer's own SQL failed inside a transactional attempt: waited out, never counted against the message. */
class StoreFailed extends Data.TaggedError("StoreFailed")<{ readonly cause: SqlError }> {}

const noneMarked: ReadonlySet<string> = new Set()

/** The handler's last failure once its attempts ran out. */
interface GaveUp {
  readonly cause: Cause.Cause<unknown>
  readonly attempts: number
}

/**
 * True when a database error says nothing about the statement: no SQLSTATE (the driver lost or never got a
 * connection), or a connection (08), resource (53), shutdown (57) or system (58) class.
 */
const isOutage = (error: SqlError): boolean => {
  const code = (error.cause as { readonly code?: unknown } | undefined)?.code
  return typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code) || /^(08|53|57|58)/.test(code)
}

const isRetriable = (error: EventoError): boolean => isTransient(error) || error._tag === "EventoProtocolError"

// Capped and jittered, so that a fleet of consumers does not return in step after an outage.
const outageBackoff = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("5 seconds")),
  Schedule.jittered
)

/**
 * Logs a failed bookkeeping statement: at warning level for an outage, at error level for a refusal (a missing
 * table, a revoked grant), which needs an operator.
 */
const logStoreFailure = (error: SqlError) =>
  isOutage(error)
    ? Effect.logWarning("Consumer database statement failed; retrying", error)
    : Effect.logError("Consumer database statement refused; retrying", error)

/**
 * Retries a failed bookkeeping statement until it passes, whatever the failure: the state it protects (a handled
 * batch, say) is in memory, and failing instead would run those handlers again after a restart.
 */
const waitOutDatabase = <A, R>(self: Effect.Effect<A, SqlError, R>): Effect.Effect<A, never, R> =>
  self.pipe(
    Effect.tapError(logStoreFailure),
    Effect.retry(outageBackoff),
    Effect.catchAll((error) => Effect.die(error))
  )

// --- the consumer ---

export const run = <E, R>(
  options: Consumer.Options<E, R>
): Effect.Effect<never, HandlerFailed | EventoError, R | Consumer.Requirements> =>
  Effect.gen(function*() {
    const settings = resolve(options)
    const client = yield* EventoClient
    // The key is checked with the options and positions come from decoded messages, so the stores' input
    // refusals cannot happen here; `assumeValidInput` keeps the retry paths on SqlError alone.
    const positions = PositionStoreInternal.assumeValidInput(yield* PositionStore)
    const idempotency = IdempotencyStore.assumeValidInput(yield* Idempotency)
    const sql = yield* SqlClient
    const store = ConsumerSql.make(sql)
    const key: ConsumerKey = { namespace: client.namespace, category: options.category, consumerId: options.consumerId }

    const labels = [
      MetricLabel.make("namespace", key.namespace),
      MetricLabel.make("category", key.category),
      MetricLabel.make("consumer_id", key.consumerId)
    ]
    const lag = Metric.taggedWithLabels(metrics.lag, labels)
    const handled = Metric.taggedWithLabels(metrics.handled, labels)
    const parked = Metric.taggedWithLabels(metrics.parked, labels)
    const duplicates = Metric.taggedWithLabels(metrics.duplicatesSkipped, labels)
    const duration = Metric.taggedWithLabels(metrics.handlerDuration, labels)

    const saved = yield* waitOutDatabase(positions.load(key))
    // A fresh consumer reads from the start; one that saved N resumes at N + 1 (the server's read is inclusive).
    // `next` moves as soon as a batch is handled, so that the next fetch can run beside the batch's commit.
    let next = Option.match(saved, { onNone: () => 0, onSome: (position) => position + 1 })
    // Newest global position known to exist, and a head a short fetch proved this consumer has nothing before.
    let head = next - 1
    let caughtUp = next - 1
    const updateLag = Effect.suspend(() => Metric.set(lag, Math.max(0, head - Math.max(next - 1, caughtUp))))

    // Marks ahead of the position exist only after a `reset` (or a version 1 database); this consumer writes marks
    // only for messages it has just handled, behind its position, and `layer` lets one process run it at a time.
    // So a batch starting above every mark found here cannot hold a marked message, and the check is skipped.
    const markedThrough = yield* waitOutDatabase(store.markedBeyond(key, next - 1))

    // Pokes keep the head (and so the lag) current even while a handler is busy, and wake the loop when one is for
    // a message past `next`. `wake` holds at most one signal: many pokes make one fetch. The subscription starts
    // when the consumer first catches up, from its position then: while full batches follow each other it needs no
    // wake-ups, and a subscription from far behind would make the server replay up to 1000 pokes for nothing. A
    // write landing between the last fetch and the subscription is replayed by it.
    const wake = yield* Queue.sliding<void>(1)
    let subscribed = false
    const subscribe = Effect.suspend(() => {
      if (subscribed) return Effect.void
      subscribed = true
      return Pokes.subscribe(client, options.category, next).pipe(
        Effect.flatMap((pokes) =>
          Queue.takeBetween(pokes, 1, Number.MAX_SAFE_INTEGER).pipe(
            Effect.flatMap((positions) => {
              let news = false
              for (const position of positions) {
                head = Math.max(head, position)
                if (position >= next) news = true
              }
              return news ? Effect.zipRight(Queue.offer(wake, void 0), updateLag) : updateLag
            }),
            Effect.forever,
            Effect.forkScoped
          )
        )
      )
    })

    const fetch = Effect.suspend(() =>
      client.categoryGet(options.category, {
        position: next,
        batchSize: settings.batchSize,
        consumerGroup: options.group,
        correlation: options.correlation
      })
    ).pipe(
      Effect.tapError((error) =>
        isRetriable(error) ? Effect.logWarning("EventoDB read failed; backing off", error) : Effect.void
      ),
      Effect.retry({ schedule: outageBackoff, while: isRetriable })
    )

    // No span per message: one costs more than a bare read of the message. The batch has one (`Consumer.batch`),
    // and a handler that wants its own makes it.
    const attempt = (message: Message) =>
      Effect.clockWith((clock) => {
        const start = clock.unsafeCurrentTimeNanos()
        return Effect.suspend(() => options.handler(message)).pipe(
          Effect.ensuring(
            Effect.suspend(() => Metric.update(duration, Number(clock.unsafeCurrentTimeNanos() - start) / 1e6))
          ),
          // Every way a handler can end badly is a failed attempt, a defect or a self-interruption included. An
          // interruption of the consumer itself never reaches here: recovery does not run on an interrupted fiber.
          Effect.catchAllCause((cause) => Effect.fail(new Attempt({ cause })))
        )
      })

    /**
     * Runs `once` until it succeeds or the attempts run out, logging each failure and waiting `retry.delay` (times
     * `retry.factor` each time) in between. Yields `undefined` on success, else the last failure. A `StoreFailed`
     * is not the handler's doing: it ends the attempts and is passed on. The first run is kept cheap: it is the
     * one nearly every message takes.
     */
    const withRetries = <EE extends Attempt | StoreFailed, RR>(
      message: Message,
      once: Effect.Effect<unknown, EE, RR>
    ): Effect.Effect<GaveUp | undefined, Exclude<EE, Attempt>, RR> =>
      Effect.flatMap(Effect.either(once), (first) =>
        Either.isRight(first) ? Effect.succeed(undefined) : Effect.gen(function*() {
          let error = first.left
          let delay = settings.retryDelay
          for (let attempts = 1;; attempts++) {
            if (error._tag !== "Attempt") {
              return yield* Effect.fail(error as Exclude<EE, Attempt>)
            }
            yield* Effect.logWarning("Consumer handler failed", error.cause).pipe(
              Effect.annotateLogs({ messageId: message.id, globalPosition: message.globalPosition, attempts })
            )
            if (attempts >= settings.attempts) {
              return { cause: error.cause, attempts }
            }

            yield* Effect.sleep(delay)
            delay = Duration.times(delay, settings.retryFactor)
            const result = yield* Effect.either(once)
            if (Either.isRight(result)) {
              return undefined
            }
            error = result.left
          }
        }))

    const failure = (message: Message, cause: Cause.Cause<unknown>, attempts: number) =>
      new HandlerFailed({
        message:
          `Handler of consumer ${key.consumerId} failed ${attempts} times on message ${message.id} (stream ${message.streamName}, global position ${message.globalPosition})`,
        category: key.category,
        consumerId: key.consumerId,
        messageId: message.id,
        stream: message.streamName,
        type: message.type,
        globalPosition: message.globalPosition,
        position: message.position,
        attempts,
        cause: Cause.squash(cause)
      })

    const giveUp = (message: Message, cause: Cause.Cause<unknown>, attempts: number) =>
      Effect.logError(
        settings.onFailure === "park" ? "Consumer handler gave up; parking the message" : "Consumer handler gave up",
        cause
      ).pipe(Effect.annotateLogs({ messageId: message.id, globalPosition: message.globalPosition, attempts }))

    const moved = (position: number) => {
      next = Math.max(next, position + 1)
      head = Math.max(head, position)
    }

    // Finalizers run uninterruptibly; the timeout must be able to cut a hanging statement, hence `interruptible`.
    const bestEffort = (self: Effect.Effect<void, SqlError>) =>
      self.pipe(
        Effect.interruptible,
        Effect.timeout("5 seconds"),
        Effect.catchAllCause((cause) =>
          Effect.logWarning("Consumer could not save progress on interrupt", cause)
        )
      )

    /**
     * Default mode: runs the handlers, then yields the commit of the marks and the position (one statement) for the
     * caller to run, beside the next fetch if it likes. Stopping commits what came before the failed message first.
     */
    const batchDefault = (batch: ReadonlyArray<Message>, marked: ReadonlySet<string>) => {
      const done: Array<Message> = []
      const toPark: Array<ConsumerSql.Parked> = []
      let through = -1
      let succeeded = 0
      // Clears only what it committed, so that a retry after a failed commit sends the same marks again.
      const flush = Effect.suspend(() => {
        if (through < 0) return Effect.void
        const position = through
        const messages = done.slice()
        const parking = toPark.slice()
        const count = succeeded
        return store.commit(key, messages, parking, position).pipe(
          Effect.zipRight(Effect.suspend(() => {
            done.splice(0, messages.length)
            toPark.splice(0, parking.length)
            succeeded -= count
            if (through === position) through = -1
            moved(position)
            return Metric.incrementBy(handled, count)
          }))
        )
      })
      const commit = waitOutDatabase(flush).pipe(Effect.onInterrupt(() => bestEffort(flush)))

      const handleAll = Effect.gen(function*() {
        for (const message of batch) {
          if (marked.has(message.id.toLowerCase())) {
            yield* Metric.increment(duplicates)
            through = message.globalPosition
            continue
          }

          const outcome = yield* withRetries(message, attempt(message))
          if (outcome === undefined) {
            succeeded += 1
            done.push(message)
            through = message.globalPosition
            continue
          }

          const { attempts, cause } = outcome
          yield* giveUp(message, cause, attempts)
          if (settings.onFailure === "park") {
            yield* Metric.increment(parked)
            toPark.push({ message, error: Cause.pretty(cause), attempts })
            done.push(message)
            through = message.globalPosition
            continue
          }
          // The messages before it are done: their position is saved, this one's is not.
          yield* commit
          return yield* failure(message, cause, attempts)
        }
        if (through >= 0) next = Math.max(next, through + 1)
        return commit
      })

      // Interrupted mid-batch (shutdown, lost leadership): record what was handled, so a restart re-runs only the
      // rest. Best effort: if it does not make it, the whole batch runs again.
      return handleAll.pipe(Effect.onInterrupt(() => bestEffort(flush)))
    }

    /** Transactional mode: each message's handler SQL, mark and position in one transaction. */
    const batchTransactional = (batch: ReadonlyArray<Message>, marked: ReadonlySet<string>) =>
      Effect.gen(function*() {
        let skippedThrough = -1
        const saveSkipped = Effect.suspend(() => {
          if (skippedThrough < 0) return Effect.void
          const position = skippedThrough
          return waitOutDatabase(positions.save(key, position)).pipe(
            Effect.zipRight(Effect.sync(() => {
              skippedThrough = -1
              moved(position)
            }))
          )
        })
        const bookkeeping = <X>(self: Effect.Effect<X, SqlError>) =>
          Effect.mapError(self, (cause) => new StoreFailed({ cause }))
        // The handler's failures are `Attempt`s and the bookkeeping's `StoreFailed`, so a bare `SqlError` here is
        // the transaction's own BEGIN; `withTransaction` turns a failed COMMIT or ROLLBACK into a defect. A COMMIT
        // the server refuses (a deferred constraint the handler's SQL broke) is the handler's failure, counted like
        // any other, so that such a message is stopped or parked instead of retried for ever; a lost connection is
        // an outage, waited out.
        const classify = (error: SqlError) =>
          isOutage(error) ? new StoreFailed({ cause: error }) : new Attempt({ cause: Cause.fail(error) })
        const inTransaction = <X, EE extends Attempt | StoreFailed, RR>(self: Effect.Effect<X, EE, RR>) =>
          ConsumerSql.inTransaction(sql, self).pipe(
            Effect.catchTag("SqlError", (error) => Effect.fail(classify(error)))
          )
        const inStoreTransaction = <X, RR>(self: Effect.Effect<X, StoreFailed, RR>) =>
          ConsumerSql.inTransaction(sql, self).pipe(
            Effect.catchTag("SqlError", (cause) => Effect.fail(new StoreFailed({ cause })))
          )
        const storeRetry = <X, RR>(self: Effect.Effect<X, StoreFailed, RR>) =>
          self.pipe(
            Effect.tapError((error) => logStoreFailure(error.cause)),
            Effect.retry(outageBackoff),
            Effect.catchAll((error) => Effect.die(error.cause))
          )

        for (const message of batch) {
          if (marked.has(message.id.toLowerCase())) {
            yield* Metric.increment(duplicates)
            skippedThrough = message.globalPosition
            continue
          }

          const once = inTransaction(
            attempt(message).pipe(
              Effect.zipRight(bookkeeping(idempotency.markProcessed(key, message))),
              Effect.zipRight(bookkeeping(positions.save(key, message.globalPosition)))
            )
          )
          const outcome = yield* storeRetry(withRetries(message, once))
          if (outcome === undefined) {
            yield* Metric.increment(handled)
            skippedThrough = -1
            moved(message.globalPosition)
            continue
          }

          yield* giveUp(message, outcome.cause, outcome.attempts)
          if (settings.onFailure === "park") {
            const entry = { message, error: Cause.pretty(outcome.cause), attempts: outcome.attempts }
            yield* storeRetry(inStoreTransaction(
              bookkeeping(store.park(key, entry)).pipe(
                Effect.zipRight(bookkeeping(idempotency.markProcessed(key, message))),
                Effect.zipRight(bookkeeping(positions.save(key, message.globalPosition)))
              )
            ))
            yield* Metric.increment(parked)
            skippedThrough = -1
            moved(message.globalPosition)
            continue
          }
          yield* saveSkipped
          return yield* failure(message, outcome.cause, outcome.attempts)
        }
        yield* saveSkipped
        return Effect.void
      })

    // Wakes on a poke for a message this consumer has not read yet, or when the poll interval ends.
    const waitForWork = Effect.zipRight(subscribe, Effect.race(Queue.take(wake), Effect.sleep(settings.pollInterval)))

    /** The next batch from `next`, with the ids among it already marked as processed. */
    const fetchBatch = Effect.gen(function*() {
      // A signal from before this fetch is answered by it; one arriving from now on wakes the next wait.
      yield* Queue.takeAll(wake)
      const headBefore = head
      const messages = yield* fetch
      const last = messages[messages.length - 1]
      if (last !== undefined) head = Math.max(head, last.globalPosition)
      const first = messages[0]
      const marked = first === undefined || first.globalPosition > markedThrough
        ? noneMarked
        : yield* waitOutDatabase(store.processedAmong(key, messages.map((message) => message.id)))
      return { messages, marked, headBefore }
    })

    const handleBatch = (batch: ReadonlyArray<Message>, marked: ReadonlySet<string>) =>
      (settings.transactional ? batchTransactional(batch, marked) : batchDefault(batch, marked)).pipe(
        Effect.withSpan("Consumer.batch", {
          attributes: {
            "messaging.consumer.id": key.consumerId,
            "messaging.destination.name": key.category,
            "messaging.batch.message_count": batch.length
          }
        })
      )

    // One batch in hand at a time: fetched, handled, committed. The commit runs beside whatever comes next (the
    // next fetch at once after a full batch, else the wait for a poke or the poll and then the fetch), and the next
    // batch is handled only once the commit is done: a crash re-runs at most one batch.
    const loop = Effect.gen(function*() {
      let batch = yield* fetchBatch
      while (true) {
        const commit = batch.messages.length === 0 ? Effect.void : yield* handleBatch(batch.messages, batch.marked)
        const full = batch.messages.length >= settings.batchSize
        // A short batch means nothing more was there when the fetch started.
        if (!full) caughtUp = Math.max(caughtUp, batch.headBefore)

        const [, following] = yield* Effect.all([
          Effect.zipRight(commit, updateLag),
          full ? fetchBatch : Effect.zipRight(waitForWork, fetchBatch)
        ], { concurrency: 2 })
        batch = following
      }
    })

    yield* Effect.logDebug("Consumer started").pipe(Effect.annotateLogs({ next }))
    return yield* loop
  }).pipe(
    Effect.scoped,
    Effect.annotateLogs({
      package: "eventodb-kit",
      module: "Consumer",
      category: options.category,
      consumerId: options.consumerId
    })
  )

export const layer = <E, R>(
  options: Consumer.Options<E, R>
): Layer.Layer<never, never, R | Consumer.Requirements | Singleton> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const settings = resolve(options)
    const client = yield* EventoClient
    const singleton = yield* Singleton
    const name = `consumer:${client.namespace}:${options.category}:${options.consumerId}`

    yield* singleton.run(name, run(options)).pipe(
      Effect.catchAllCause((cause) => Effect.logError("Consumer stopped; restarting after the delay", cause)),
      Effect.zipRight(Effect.sleep(settings.restartDelay)),
      Effect.forever,
      Effect.annotateLogs({
        package: "eventodb-kit",
        module: "Consumer",
        fiber: "consumer",
        category: options.category,
        consumerId: options.consumerId,
        singleton: name
      }),
      Effect.interruptible,
      Effect.forkScoped
    )
  }))

// --- typed dispatch ---

export const dispatch = <H extends Consumer.DispatchHandlers>(options: Consumer.DispatchOptions<H>) => {
  const unknown = options.unknown ?? "skip"
  const handlers = options.handlers as Consumer.DispatchHandlers
  const decoders = new Map(
    Object.entries(handlers).map(([type, [schema, handler]]) => [
      type,
      {
        decode: Schema.decodeUnknown(schema as Schema.Schema<unknown, unknown, unknown>),
        handler: handler as (data: unknown, message: Message) => Effect.Effect<unknown, unknown, unknown>
      }
    ])
  )
  type HandlerEffect = ReturnType<H[keyof H][1]>
  type Result = Effect.Effect<
    void,
    Effect.Effect.Error<HandlerEffect> | ParseError | UnknownMessageType,
    Effect.Effect.Context<HandlerEffect> | Schema.Schema.Context<H[keyof H][0]>
  >
  return (message: Message): Result => {
    const entry = Object.hasOwn(handlers, message.type) ? decoders.get(message.type) : undefined
    if (entry === undefined) {
      if (unknown === "fail") {
        return Effect.fail(
          new UnknownMessageType({
            message: `No handler for message type ${message.type}`,
            type: message.type,
            messageId: message.id
          })
        )
      }
      return Metric.update(
        Metric.tagged(metrics.unknownTypes, "category", message.streamName.split("-", 1)[0] ?? ""),
        1
      ).pipe(
        Effect.zipRight(
          Effect.logDebug("Consumer skipped a message of an unknown type").pipe(
            Effect.annotateLogs({ type: message.type, messageId: message.id })
          )
        )
      )
    }
    return entry.decode(message.data).pipe(
      Effect.flatMap((data) => entry.handler(data, message)),
      Effect.asVoid
    ) as Result
  }
}
